"""A fitted calibrated RBF SVM as plain arrays (safetensors) and its inference in numpy: what a saved LBP+SVM model
runs, without scikit-learn (importing it cost every analysis 1 s of start-up). The training side is svm.py."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    def from_sklearn(cls, pipe, calib=None) -> SvmArrays:
        """From a fitted scikit-learn Pipeline (scale[, pca], svm) and its LogisticRegression calibration."""
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
