"""Agreement figures for pain classes and action units: accuracy, macro-F1, quadratic-weighted kappa, MAE and the
RGS score's ICC(2,1). Plain functions of labels and predictions, shared by evaluation and early stopping."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score

from ..types import ACTION_UNITS


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
