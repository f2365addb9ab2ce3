"""The calibrated RBF SVM used by LBP+SVM for pain and for each action unit: features standardised (optionally
projected on their first principal components), an RBF SVM whose C and gamma are chosen by inner cross-validation
grouped by subject, and a logistic calibration of its decision values.

Saved as plain arrays (safetensors) + JSON; inference re-implements the RBF decision function and the
logistic calibration in numpy, so a loaded model never unpickles anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from .features import LbpFeatures


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
        return LbpFeatures(self.size, self.grid, self.radii).transform(X)

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


@dataclass
class SvmArrays:
    """Everything the fitted scaler, RBF SVC and calibration need at inference, as plain arrays."""

    mean: np.ndarray
    scale: np.ndarray
    support_vectors: np.ndarray
    dual_coef: np.ndarray  # libsvm's own sign convention (sklearn's private _dual_coef_)
    intercept: np.ndarray  # likewise (_intercept_)
    n_support: np.ndarray
    gamma: float
    classes: np.ndarray
    calib_coef: np.ndarray | None = None  # (1 or n_classes, n_pairs)
    calib_intercept: np.ndarray | None = None
    components: np.ndarray | None = None  # (k, n_features) principal axes, when the features are projected
    pca_mean: np.ndarray | None = None

    @classmethod
    def from_sklearn(cls, pipe: Pipeline, calib: LogisticRegression | None = None) -> SvmArrays:
        scaler, svm = pipe.named_steps["scale"], pipe.named_steps["svm"]
        pca = pipe.named_steps.get("pca")
        return cls(components=None if pca is None else pca.components_.astype(np.float32),
                   pca_mean=None if pca is None else pca.mean_.astype(np.float64),
                   mean=scaler.mean_.astype(np.float64), scale=scaler.scale_.astype(np.float64),
                   support_vectors=svm.support_vectors_.astype(np.float32),  # halves the file; kernel in float64
                   dual_coef=svm._dual_coef_.astype(np.float64), intercept=svm._intercept_.astype(np.float64),
                   n_support=svm.n_support_.astype(np.int64), gamma=float(svm._gamma), classes=svm.classes_,
                   calib_coef=None if calib is None else calib.coef_.astype(np.float64),
                   calib_intercept=None if calib is None else calib.intercept_.astype(np.float64))

    def to_tensors(self) -> dict[str, np.ndarray]:
        tensors = {"mean": self.mean, "scale": self.scale, "support_vectors": self.support_vectors,
                   "dual_coef": self.dual_coef, "intercept": self.intercept, "n_support": self.n_support,
                   "gamma": np.array([self.gamma]), "classes": np.asarray(self.classes, np.int64),
                   "calib_coef": self.calib_coef, "calib_intercept": self.calib_intercept}
        if self.components is not None:
            tensors.update(components=self.components, pca_mean=self.pca_mean)
        # safetensors writes raw memory: a Fortran-ordered array (scikit-learn's 3-class calibration) would come
        # back transposed.
        return {k: np.ascontiguousarray(v) for k, v in tensors.items()}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray]) -> SvmArrays:
        return cls(mean=t["mean"], scale=t["scale"], support_vectors=t["support_vectors"], dual_coef=t["dual_coef"],
                   intercept=t["intercept"], n_support=t["n_support"], gamma=float(t["gamma"][0]),
                   classes=t["classes"], calib_coef=t["calib_coef"], calib_intercept=t["calib_intercept"],
                   components=t.get("components"), pca_mean=t.get("pca_mean"))

    def decision_pairs(self, feats: np.ndarray) -> np.ndarray:
        """libsvm's one-vs-one decision values, (N, n_pairs), pairs in libsvm order (0,1), (0,2), (1,2)...;
        positive favours the first class of the pair."""
        x = (np.asarray(feats, np.float64) - self.mean) / self.scale
        if self.components is not None:
            x = (x - self.pca_mean) @ self.components.T.astype(np.float64)
        sv = self.support_vectors.astype(np.float64)
        d2 = (x * x).sum(1)[:, None] + (sv * sv).sum(1)[None, :] - 2.0 * x @ sv.T
        kernel = np.exp(-self.gamma * np.maximum(d2, 0.0))  # (N, n_sv)
        starts = np.concatenate([[0], np.cumsum(self.n_support)])
        k = len(self.n_support)
        out = []
        p = 0
        for i in range(k):
            for j in range(i + 1, k):
                si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
                dec = kernel[:, si] @ self.dual_coef[j - 1, si] + kernel[:, sj] @ self.dual_coef[i, sj]
                out.append(dec + self.intercept[p])
                p += 1
        return np.stack(out, axis=1)

    def predict_proba(self, feats: np.ndarray) -> np.ndarray:
        z = self.decision_pairs(feats) @ self.calib_coef.T + self.calib_intercept
        if z.shape[1] == 1:  # binary logistic: P(second class)
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1 - p1, p1], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
