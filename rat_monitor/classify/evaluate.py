"""Training and leave-one-subject-out evaluation of pain classifiers (never by image: always by animal)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from ..data import Dataset, loso_splits
from ..errors import ConfigError
from .base import TASKS

MODELS = ("lbp-svm", "resnet18")


def metrics(y_true: np.ndarray, y_pred: np.ndarray, task: str) -> dict:
    labels = [0, 1] if task == "binary" else [0, 1, 2]
    pain_true, pain_pred = (y_true > 0).astype(int), (y_pred > 0).astype(int)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "pain_f1": float(f1_score(pain_true, pain_pred, zero_division=0)),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


class Trainer:
    """Builds, fits and saves one model type; the same object drives LOSO folds and the final fit."""

    def __init__(self, model: str, task: str, n_jobs: int | None = None, epochs: int | None = None,
                 weights: Path | None = None, log: Callable[[str], None] | None = None):
        if model not in MODELS:
            raise ConfigError(f"unknown --model {model!r}; choose one of {', '.join(MODELS)}")
        if task not in TASKS:
            raise ConfigError(f"unknown --task {task!r}; choose one of {', '.join(TASKS)}")
        self.model, self.task, self.n_jobs = model, task, n_jobs
        self.epochs, self.weights, self.log = epochs, weights, log or (lambda _msg: None)
        self._features: np.ndarray | None = None

    def prepare(self, images: list[np.ndarray]) -> None:
        """LBP features are computed once for all folds."""
        if self.model == "lbp-svm":
            from .lbp_svm import LbpSvmClassifier

            self._features = LbpSvmClassifier().features(images)
        self._images = images

    def fit(self, idx: np.ndarray, y: np.ndarray, groups: np.ndarray):
        if self.model == "lbp-svm":
            from .lbp_svm import LbpSvmClassifier

            return LbpSvmClassifier(n_jobs=self.n_jobs).fit(self._features[idx], y[idx], groups=groups[idx])
        from .resnet import ResNetClassifier

        return ResNetClassifier(epochs=self.epochs, weights=self.weights, log=self.log).fit(
            [self._images[i] for i in idx], y[idx], groups=groups[idx])

    def predict(self, est, idx: np.ndarray) -> np.ndarray:
        data = self._features[idx] if self.model == "lbp-svm" else [self._images[i] for i in idx]
        return est.predict(data)


def evaluate_loso(ds: Dataset, model: str, task: str, n_jobs: int | None = None, epochs: int | None = None,
                  weights: Path | None = None, progress: Callable[[str, dict], None] | None = None,
                  trainer: Trainer | None = None) -> dict:
    """Leave-one-subject-out: one fold per animal, the model trained on all the others. A trainer already
    prepared on this dataset's images may be passed in, to reuse its features."""
    t0 = time.time()
    y = ds.targets(task)
    if trainer is None:
        trainer = Trainer(model, task, n_jobs=n_jobs, epochs=epochs, weights=weights)
        trainer.prepare(ds.images())
    preds = np.zeros_like(y)
    folds = []
    for subject, train, test in loso_splits(ds.subjects):
        tf = time.time()
        est = trainer.fit(train, y, ds.subjects)
        ti = time.time()
        preds[test] = trainer.predict(est, test)
        fold = {"subject": subject, **metrics(y[test], preds[test], task), "train_s": round(ti - tf, 2),
                "predict_ms_per_image": round(1000 * (time.time() - ti) / max(1, len(test)), 3)}
        folds.append(fold)
        if progress:
            progress(subject, fold)
    return {"protocol": "loso", "model": model, "task": task, "dataset": ds.summary(),
            "pooled": metrics(y, preds, task), "folds": folds, "seconds": round(time.time() - t0, 1)}
