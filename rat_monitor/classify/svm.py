"""The calibrated RBF SVM used by LBP+SVM for pain and for each action unit: features standardised (optionally
projected on their first principal components), an RBF SVM whose C and gamma are chosen by inner cross-validation
grouped by subject, and a logistic calibration of its decision values.

Saved as plain arrays (safetensors) + JSON; inference re-implements the RBF decision function and the
logistic calibration in numpy, so a loaded model never unpickles anything.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from .features import lbp_features
from .svm_arrays import SvmArrays


class LbpFeatures(TransformerMixin, BaseEstimator):
    """Face crops (a list or array of images) -> LBP feature vectors, as a scikit-learn transformer (for
    pipelines). Stateless."""

    def __init__(self, size: int = 64, grid: int = 4, radii: tuple[int, ...] = (1, 2)):
        self.size = size
        self.grid = grid
        self.radii = radii

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return lbp_features(X, self.size, self.grid, self.radii)


class LbpSvmClassifier(ClassifierMixin, BaseEstimator):
    """fit(crops, labels, groups=subjects) / predict / predict_proba, usable in Pipeline and GridSearchCV.

    C and gamma are chosen by inner cross-validation, grouped by subject when groups are given (no animal
    in both the inner train and validation folds), stratified otherwise. Probabilities come from a logistic
    calibration of the SVM's one-vs-one decision values, fitted on the same inner folds' held-out decisions.
    components: project the standardised features on this many principal components (not whitened) before the
    SVM: a smaller model file and faster kernels when there are many training images."""

    def __init__(self, size: int = 96, grid: int = 4, radii: tuple[int, ...] = (1, 2, 3),
                 C_grid: tuple[float, ...] = (1.0, 10.0), gamma_scale: tuple[float, ...] = (0.25, 1.0),
                 inner_folds: int = 3, n_jobs: int | None = None, random_state: int = 0,
                 components: int | None = None):
        self.components = components
        self.size = size
        self.grid = grid
        self.radii = radii
        self.C_grid = C_grid
        self.gamma_scale = gamma_scale
        self.inner_folds = inner_folds
        self.n_jobs = n_jobs
        self.random_state = random_state

    def features(self, X) -> np.ndarray:
        """Crops -> LBP features; a 2-D float array is taken as features already computed."""
        if isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype != np.uint8:
            return X.astype(np.float32)
        return lbp_features(X, self.size, self.grid, self.radii)

    def _svm(self, C: float, gamma: float) -> Pipeline:
        steps = [("scale", StandardScaler())]
        if self.n_components_:
            steps.append(("pca", PCA(self.n_components_, random_state=self.random_state)))
        return Pipeline([*steps, ("svm", SVC(kernel="rbf", C=C, gamma=gamma, class_weight="balanced"))])

    def _variance(self, feats: np.ndarray) -> float:
        """Total variance the SVM sees: the feature count once standardised, less what the projection drops.
        gamma = scale / variance keeps typical kernel values alike whatever the feature count."""
        if not self.n_components_:
            return float(feats.shape[1])
        standard = StandardScaler().fit_transform(feats)
        return float(PCA(self.n_components_, random_state=self.random_state).fit(standard).explained_variance_.sum())

    def fit(self, X, y, groups=None):
        feats = self.features(X)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if groups is not None and len(np.unique(groups)) >= 2:
            cv = GroupKFold(n_splits=min(self.inner_folds, len(np.unique(groups))))
        else:
            cv = StratifiedKFold(n_splits=self.inner_folds, shuffle=True, random_state=self.random_state)
        splits = list(cv.split(feats, y, groups))
        # No more components than the smallest inner training set can give.
        self.n_components_ = self.components and min(self.components, feats.shape[1],
                                                     *(len(train) - 1 for train, _ in splits))
        n_feat = self._variance(feats)
        grid = {"svm__C": list(self.C_grid), "svm__gamma": [g / n_feat for g in self.gamma_scale]}
        search = GridSearchCV(self._svm(1.0, 1.0), grid, cv=splits, scoring="f1_macro", n_jobs=self.n_jobs)
        search.fit(feats, y)
        self.best_params_ = search.best_params_
        C, gamma = search.best_params_["svm__C"], search.best_params_["svm__gamma"]
        # Held-out decision values of the chosen SVM -> a logistic calibration (Platt, multinomial for 3 classes).
        oof = np.zeros((len(y), len(self.classes_) * (len(self.classes_) - 1) // 2))
        for train, val in splits:
            oof[val] = SvmArrays.from_sklearn(self._svm(C, gamma).fit(feats[train], y[train])).decision_pairs(
                feats[val])
        calib = LogisticRegression(C=100.0, max_iter=2000).fit(oof, y)
        self.arrays_ = SvmArrays.from_sklearn(self._svm(C, gamma).fit(feats, y), calib)
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.arrays_.predict_proba(self.features(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
