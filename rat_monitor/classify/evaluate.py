"""Training and leave-one-subject-out evaluation of pain classifiers (never by image: always by animal)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score

from ..data import Dataset, loso_splits
from ..errors import ConfigError, DatasetError
from ..types import ACTION_UNITS
from .base import TASKS
from .familiarity import fit_grouped

MODELS = ("lbp-svm", "resnet18")
PAIN_COMPONENTS = 256  # principal components ahead of the pain SVM (128 lost 0.02 macro-F1 on 1,200 crops)


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


def icc_2_1(ratings: np.ndarray) -> float:
    """ICC(2,1) of Shrout & Fleiss: two-way random effects, absolute agreement, one rater. ratings: (targets,
    raters). How well single ratings (here: model and labels) agree in value, not only in rank."""
    y = np.asarray(ratings, np.float64)
    n, k = y.shape
    grand = y.mean()
    ss_rows = k * ((y.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((y.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((y - grand) ** 2).sum() - ss_rows - ss_cols
    ms_rows, ms_cols, ms_err = ss_rows / (n - 1), ss_cols / (k - 1), ss_err / ((n - 1) * (k - 1))
    return float((ms_rows - ms_err) / (ms_rows + (k - 1) * ms_err + k * (ms_cols - ms_err) / n))


def au_metrics(labels: np.ndarray, scores: np.ndarray) -> dict:
    """labels (N, 4) 0/1/2 or NaN (unlabelled, left out); scores (N, 4) the expected AU scores the tool writes.
    Per AU: accuracy and quadratic-weighted kappa of the rounded score, MAE of the score itself. RGS (the mean of
    the four, on images with all four labelled): ICC(2,1) and MAE against the labels' mean."""
    out = {}
    for j, name in enumerate(ACTION_UNITS):
        known = np.isfinite(labels[:, j])
        if not known.any():
            continue
        y, s = labels[known, j].astype(int), scores[known, j]
        pred = np.clip(np.rint(s), 0, 2).astype(int)
        out[name] = {"n": int(known.sum()), "accuracy": float((pred == y).mean()),
                     "qwk": float(cohen_kappa_score(y, pred, labels=[0, 1, 2], weights="quadratic")),
                     "mae": float(np.abs(s - y).mean())}
    full = np.isfinite(labels).all(axis=1)
    if full.sum() >= 2:
        true_rgs, pred_rgs = labels[full].mean(axis=1), scores[full].mean(axis=1)
        out["rgs"] = {"n": int(full.sum()), "icc_2_1": icc_2_1(np.stack([true_rgs, pred_rgs], axis=1)),
                      "mae": float(np.abs(pred_rgs - true_rgs).mean())}
    return out


def _refusal(y_true: np.ndarray, y_pred: np.ndarray, refused: np.ndarray | None, task: str) -> dict:
    """Share of held-out crops the familiarity check refuses, and macro-F1 over the accepted ones (the figures
    over all crops are the plain metrics). Empty when the model has no familiarity statistics."""
    if refused is None:
        return {}
    kept = ~refused
    accepted = metrics(y_true[kept], y_pred[kept], task)["macro_f1"] if kept.any() else None
    return {"refused_share": float(refused.mean()), "macro_f1_accepted": accepted}


@dataclass
class Fitted:
    """What one training produced: the pain estimator and the AU estimator (the same object for a multi-task
    ResNet; None when the data had no AU labels)."""

    pain: object
    aus: object | None = None
    familiarity: tuple | None = None  # (Familiarity or None, how it was calibrated)

    def refused(self, fam_scores: np.ndarray | None) -> np.ndarray | None:
        """Which crops the familiarity check refuses (None: no familiarity statistics)."""
        if fam_scores is None or self.familiarity is None or self.familiarity[0] is None:
            return None
        return self.familiarity[0].refused(fam_scores)


class Trainer:
    """Builds, fits and saves one model type; the same object drives LOSO folds and the final fit. AU heads are
    trained whenever the dataset has AU labels."""

    def __init__(self, model: str, task: str, n_jobs: int | None = None, epochs: int | None = None,
                 weights: Path | None = None, log: Callable[[str], None] | None = None):
        if model not in MODELS:
            raise ConfigError(f"unknown --model {model!r}; choose one of {', '.join(MODELS)}")
        if task not in TASKS:
            raise ConfigError(f"unknown --task {task!r}; choose one of {', '.join(TASKS)}")
        self.model, self.task, self.n_jobs = model, task, n_jobs
        self.epochs, self.weights, self.log = epochs, weights, log or (lambda _msg: None)
        self._features: np.ndarray | None = None
        self._regions: np.ndarray | None = None
        self.aus: np.ndarray | None = None

    @property
    def action_units(self) -> bool:
        return self.aus is not None

    def prepare(self, ds: Dataset) -> None:
        """Reads the images; LBP features (and AU region features) are computed once for all folds."""
        self._images = ds.images()
        self.aus = ds.aus if ds.has_aus else None
        if self.aus is not None:
            for j, name in enumerate(ACTION_UNITS):
                seen = np.unique(self.aus[np.isfinite(self.aus[:, j]), j])
                if len(seen) < 2:
                    raise DatasetError(f"{ds.source}: action unit {name!r} has {len(seen)} distinct score(s) among its "
                                       "labels; AU heads need all four AUs labelled on some images (missing cells are "
                                       "fine), or drop the AU columns to train on pain labels only")
        if self.model == "lbp-svm":
            from .lbp_svm import LbpSvmClassifier

            self._features = LbpSvmClassifier().features(self._images)
            if self.action_units:
                from .action_units import region_features

                self._regions = region_features(self._images)

    def fit(self, idx: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Fitted:
        if self.model == "lbp-svm":
            from .action_units import AuScorer
            from .lbp_svm import LbpSvmClassifier

            pain = LbpSvmClassifier(n_jobs=self.n_jobs, components=PAIN_COMPONENTS).fit(self._features[idx], y[idx], groups=groups[idx])
            aus = None
            if self.action_units:
                aus = AuScorer(n_jobs=self.n_jobs).fit(self._regions[idx], self.aus[idx], groups=groups[idx])
            return Fitted(pain, aus, fit_grouped(self._features[idx], groups[idx]))
        from .resnet import ResNetClassifier

        net = ResNetClassifier(epochs=self.epochs, weights=self.weights, log=self.log).fit(
            [self._images[i] for i in idx], y[idx], groups=groups[idx],
            aus=self.aus[idx] if self.action_units else None)
        return Fitted(net, net if self.action_units else None, net.familiarity_)

    def predict(self, fitted: Fitted, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Pain classes, (N, 4) expected AU scores (None without AU heads) and which crops the familiarity check
        refuses (None without familiarity statistics) for the images idx."""
        fam = fitted.familiarity[0] if fitted.familiarity else None
        if self.model == "lbp-svm":
            aus = None if fitted.aus is None else fitted.aus.predict_scores(self._regions[idx])
            scores = None if fam is None else fam.score(self._features[idx])
            return fitted.pain.predict(self._features[idx]), aus, fitted.refused(scores)
        crops = [self._images[i] for i in idx]
        scores = None if fam is None else fam.score(fitted.pain.embeddings(crops))
        return (fitted.pain.predict(crops), None if fitted.aus is None else fitted.aus.predict_aus(crops),
                fitted.refused(scores))


def evaluate_loso(ds: Dataset, model: str, task: str, n_jobs: int | None = None, epochs: int | None = None,
                  weights: Path | None = None, progress: Callable[[str, dict], None] | None = None,
                  trainer: Trainer | None = None) -> dict:
    """Leave-one-subject-out: one fold per animal, the model trained on all the others. A trainer already
    prepared on this dataset may be passed in, to reuse its features. With AU labels the result also holds
    per-AU accuracy, quadratic-weighted kappa, MAE and the RGS score's ICC(2,1), pooled and per fold."""
    t0 = time.time()
    y = ds.targets(task)
    if trainer is None:
        trainer = Trainer(model, task, n_jobs=n_jobs, epochs=epochs, weights=weights)
        trainer.prepare(ds)
    preds = np.zeros_like(y)
    refused = np.zeros(len(y), bool)
    checked = True
    au_scores = np.full((len(y), len(ACTION_UNITS)), np.nan)
    folds = []
    for subject, train, test in loso_splits(ds.subjects):
        tf = time.time()
        fitted = trainer.fit(train, y, ds.subjects)
        ti = time.time()
        preds[test], scores, fold_refused = trainer.predict(fitted, test)
        checked = checked and fold_refused is not None
        if fold_refused is not None:
            refused[test] = fold_refused
        fold = {"subject": subject, **metrics(y[test], preds[test], task), "train_s": round(ti - tf, 2),
                "predict_ms_per_image": round(1000 * (time.time() - ti) / max(1, len(test)), 3),
                **_refusal(y[test], preds[test], refused[test] if fold_refused is not None else None, task)}
        if scores is not None:
            au_scores[test] = scores
            fold["action_units"] = au_metrics(trainer.aus[test], scores)
        folds.append(fold)
        if progress:
            progress(subject, fold)
    result = {"protocol": "loso", "model": model, "task": task, "dataset": ds.summary(),
              "pooled": {**metrics(y, preds, task), **_refusal(y, preds, refused if checked else None, task)},
              "folds": folds, "seconds": round(time.time() - t0, 1)}
    if trainer.action_units:
        result["action_units"] = au_metrics(trainer.aus, au_scores)
    return result
