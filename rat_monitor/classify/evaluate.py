"""Training and leave-one-subject-out evaluation of pain classifiers (never by image: always by animal)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data import Dataset, loso_splits
from ..errors import ConfigError, DatasetError
from ..types import ACTION_UNITS
from .base import TASKS, Fitted, TrainOptions, class_names
from .metrics import au_metrics, metrics
from .registry import training_backend


def _refusal(y_true: np.ndarray, y_pred: np.ndarray, refused: np.ndarray | None, task: str) -> dict:
    """Share of held-out crops the familiarity check refuses, and macro-F1 over the accepted ones (the figures
    over all crops are the plain metrics). Empty when the model has no familiarity statistics."""
    if refused is None:
        return {}
    kept = ~refused
    accepted = metrics(y_true[kept], y_pred[kept], task)["macro_f1"] if kept.any() else None
    return {"refused_share": float(refused.mean()), "macro_f1_accepted": accepted}


class Trainer:
    """Fits one model kind (its backend from the registry); the same object drives LOSO folds and the final fit.
    AU heads are trained whenever the dataset has AU labels."""

    def __init__(self, model: str, task: str, n_jobs: int | None = None, epochs: int | None = None,
                 weights: Path | None = None, log: Callable[[str], None] | None = None):
        if task not in TASKS:
            raise ConfigError(f"unknown --task {task!r}; choose one of {', '.join(TASKS)}")
        self.model, self.task = model, task
        self.backend = training_backend(model, TrainOptions(task, n_jobs, epochs, weights, log or (lambda _m: None)))
        self.aus: np.ndarray | None = None

    @property
    def action_units(self) -> bool:
        return self.aus is not None

    def prepare(self, ds: Dataset) -> None:
        """Reads the images (and computes what the kind precomputes) once, for every fold and the final fit."""
        self.aus = ds.aus if ds.has_aus else None
        if self.aus is not None:
            for j, name in enumerate(ACTION_UNITS):
                seen = np.unique(self.aus[np.isfinite(self.aus[:, j]), j])
                if len(seen) < 2:
                    raise DatasetError(f"{ds.source}: action unit {name!r} has {len(seen)} distinct score(s) among its "
                                       "labels; AU heads need all four AUs labelled on some images (missing cells are "
                                       "fine), or drop the AU columns to train on pain labels only")
        self.backend.prepare(ds.images(), self.aus)

    def fit(self, idx: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Fitted:
        return self.backend.fit(idx, y, groups)

    def predict(self, fitted: Fitted, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Pain classes, (N, 4) expected AU scores (None without AU heads) and which crops the familiarity check
        refuses (None without familiarity statistics) for the images idx."""
        classes, aus, familiarity = self.backend.predict(fitted, idx)
        refused = None if familiarity is None else fitted.familiarity_model.refused(familiarity)
        return classes, aus, refused

    def save(self, fitted: Fitted, out_dir: Path, training: dict, metrics: dict | None = None) -> dict:
        """The model folder with its card (what it was trained on, its figures)."""
        return self.backend.save(fitted, out_dir, training, metrics)


def _check_every_fold_learns(subjects: np.ndarray, y: np.ndarray, names: list[str]) -> None:
    """Each animal left out must leave crops of two classes or more to train on (one class per animal, or one
    animal, cannot be evaluated by animal): DatasetError (exit 5) saying which, before any feature is made."""
    if len(set(subjects.tolist())) < 2:
        raise DatasetError(f"leave-one-animal-out needs crops of 2 animals or more; these are all of one "
                           f"({subjects[0] if len(subjects) else 'none'})")
    for subject in sorted(set(subjects.tolist())):
        left = set(y[subjects != subject].tolist())
        if len(left) < 2:
            raise DatasetError(f"cannot evaluate by animal: without {subject} the other animals' crops are all of "
                               f"one class ({names[left.pop()]!r}); label crops of each class on 2 or more animals")


def evaluate_loso(ds: Dataset, model: str, task: str, n_jobs: int | None = None, epochs: int | None = None,
                  weights: Path | None = None, progress: Callable[[str, dict], None] | None = None,
                  trainer: Trainer | None = None, rows: np.ndarray | None = None) -> dict:
    """Leave-one-subject-out: one fold per animal, the model trained on all the others. A trainer already
    prepared on this dataset may be passed in, to reuse its features; rows restricts the evaluation to those
    crops of the dataset (a learning curve's subsets). With AU labels the result also holds per-AU accuracy,
    quadratic-weighted kappa, MAE and the RGS score's ICC(2,1), pooled and per fold."""
    t0 = time.time()
    ds.check_no_repeats()
    rows = np.arange(len(ds)) if rows is None else np.asarray(rows)
    y = ds.targets(task)[rows]
    _check_every_fold_learns(np.asarray(ds.subjects)[rows], y, class_names(task))
    if trainer is None:
        trainer = Trainer(model, task, n_jobs=n_jobs, epochs=epochs, weights=weights)
        trainer.prepare(ds)
    all_y = np.zeros(len(ds), np.int64)
    all_y[rows] = y  # the trainer indexes the whole dataset
    preds = np.zeros_like(y)
    refused = np.zeros(len(y), bool)
    checked = True
    au_scores = np.full((len(y), len(ACTION_UNITS)), np.nan)
    folds = []
    subjects = np.asarray(ds.subjects)
    for subject, train, test in loso_splits(subjects[rows]):
        train_rows, test_rows = rows[train], rows[test]
        tf = time.time()
        fitted = trainer.fit(train_rows, all_y, subjects)
        ti = time.time()
        preds[test], scores, fold_refused = trainer.predict(fitted, test_rows)
        checked = checked and fold_refused is not None
        if fold_refused is not None:
            refused[test] = fold_refused
        fold = {"subject": subject, **metrics(y[test], preds[test], task), "train_s": round(ti - tf, 2),
                "predict_ms_per_image": round(1000 * (time.time() - ti) / max(1, len(test)), 3),
                **_refusal(y[test], preds[test], refused[test] if fold_refused is not None else None, task)}
        if scores is not None:
            au_scores[test] = scores
            fold["action_units"] = au_metrics(trainer.aus[test_rows], scores)
        folds.append(fold)
        if progress:
            progress(subject, fold)
    result = {"protocol": "loso", "model": trainer.model, "task": task, "dataset": ds.summary(), "crops": len(rows),
              "pooled": {**metrics(y, preds, task), **_refusal(y, preds, refused if checked else None, task)},
              "folds": folds, "seconds": round(time.time() - t0, 1)}
    if trainer.action_units:
        result["action_units"] = au_metrics(trainer.aus[rows], au_scores)
    return result


def rounded(tree):
    """Floats rounded to 4 digits, through nested dicts (for model cards)."""
    if isinstance(tree, dict):
        return {k: rounded(v) for k, v in tree.items()}
    return round(tree, 4) if isinstance(tree, float) else tree


def train_and_save(ds: Dataset, trainer: Trainer, out_dir: Path, loso: bool = False, synthetic: bool = False,
                   description: str = "", unvalidated: str | None = None) -> dict:
    """Trains on all of DS and writes the model folder; the card records the training data and, with loso, the
    leave-one-subject-out figures measured first (never on the final model's own training images). unvalidated:
    why it was not validated by animal (a pilot on too few animals), written in the card for every screen."""
    t0 = time.time()
    trainer.prepare(ds)  # once, for the LOSO folds and the final fit
    metrics = {}
    if loso:
        result = evaluate_loso(ds, trainer.model, trainer.task, trainer=trainer)
        kept = {k: v for k, v in result["pooled"].items()
                if k in ("accuracy", "macro_f1", "pain_f1", "refused_share", "macro_f1_accepted")}
        if "action_units" in result:
            kept["action_units"] = result["action_units"]
        metrics = {"protocol": "leave-one-subject-out", **rounded(kept)}
    fitted = trainer.fit(np.arange(len(ds)), ds.targets(trainer.task), ds.subjects)
    training = {"description": description or f"{len(ds)} crops of {len(set(ds.subjects))} animals from {ds.source}",
                "dataset": ds.summary(), "seconds": round(time.time() - t0, 1), "synthetic": synthetic}
    if unvalidated:
        training["not_validated_because"] = unvalidated
    return trainer.save(fitted, out_dir, training, metrics)
