"""LBP + SVM, the RatsPain baseline, as a model kind: uniform LBP histograms over a grid of cells on the aligned
grey face crop and a calibrated RBF SVM for pain (svm.py), one SVM per action unit on its face region
(action_units.py) when the data has AU labels, and the familiarity statistics of the training faces' LBP
features. Training (Backend), saving with its card, and the saved model run in numpy (Model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from ..models import read_card, verified_file, write_card
from ..types import ACTION_UNITS, Prediction
from .action_units import AuScorer, RegionSettings, region_features, scores_from
from .base import (Fitted, TrainOptions, card_binary, card_int, card_record, chunked_features, class_names,
                   load_familiarity, safe_load_tensors, save_familiarity, to_predictions, to_three)
from .familiarity import fit_grouped
from .features import lbp_features
from .svm_arrays import SvmArrays

KIND = "lbp-svm"
AU_FILE = "action_units.safetensors"
PAIN_COMPONENTS = 256  # principal components ahead of the pain SVM (128 lost 0.02 macro-F1 on 1,200 crops)


class Model:
    """A saved LBP+SVM classifier, run in numpy."""

    def __init__(self, folder: Path):
        self.card = read_card(folder)
        self.name = self.card.get("name", Path(folder).name)
        self.binary = card_binary(self.card)
        f = self.card["features"]
        self._lbp = dict(size=card_int(f["size"], 16, 512, "features.size"),
                         grid=card_int(f["grid"], 1, 16, "features.grid"),
                         radii=tuple(card_int(r, 1, 8, "features.radii") for r in f["radii"]))
        self._svm = SvmArrays.from_tensors(safe_load_tensors(verified_file(folder, "svm.safetensors")))
        self.classes = self._svm.classes
        self.familiarity = load_familiarity(folder, self.card)
        self.action_units = bool(self.card.get("action_units"))
        if self.action_units:
            self._regions = RegionSettings.from_card(self.card["action_units"]["features"])
            tensors = safe_load_tensors(verified_file(folder, AU_FILE))
            self._au_svms = [SvmArrays.from_tensors({k.split(".", 1)[1]: v for k, v in tensors.items()
                                                     if k.startswith(f"{name}.")}) for name in ACTION_UNITS]

    def predict(self, crops: list[np.ndarray]) -> list[Prediction]:
        if not crops:
            return []
        feats = lbp_features(crops, **self._lbp)
        probs = to_three(self._svm.predict_proba(feats), self._svm.classes)
        aus = scores_from(region_features(crops, self._regions), self._au_svms) if self.action_units else None
        return to_predictions(self.name, self.binary, probs, aus, self.familiarity, feats)


def save(fitted: Fitted, out_dir: Path, task: str, training: dict, metrics: dict | None = None,
         name: str | None = None) -> dict:
    """Writes svm.safetensors + card.json for a fitted pain SVM, action_units.safetensors when it has AU SVMs and
    familiarity.safetensors when it has familiarity statistics."""
    estimator, au_scorer = fitted.pain, fitted.aus
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(estimator.arrays_.to_tensors(), str(out_dir / "svm.safetensors"))
    files = ["svm.safetensors"]
    action_units = None
    if au_scorer is not None:
        save_file({f"{au}.{k}": v for au, est in zip(ACTION_UNITS, au_scorer.estimators_)
                   for k, v in est.arrays_.to_tensors().items()}, str(out_dir / AU_FILE))
        files.append(AU_FILE)
        action_units = {"names": list(ACTION_UNITS), "features": RegionSettings().to_card(),
                        "estimator": "one calibrated RBF SVM per action unit on its region's features; "
                                     "score = expected value of P(0, 1, 2)",
                        "hyperparameters": {au: {k: float(v) for k, v in est.best_params_.items()}
                                            for au, est in zip(ACTION_UNITS, au_scorer.estimators_)}}
    familiarity_card, familiarity_files = save_familiarity(fitted.familiarity, out_dir)
    files += familiarity_files
    card = {
        "name": name or out_dir.name,
        "kind": "pain-classifier",
        "model": KIND,
        "task": task,
        "classes": class_names(task),
        "input": "square face crop, any size; grey, resized and histogram-equalised",
        "features": {"size": estimator.size, "grid": estimator.grid, "radii": list(estimator.radii),
                     "lbp": "uniform, 8 neighbours, Hellinger-normalised cell histograms"},
        "hyperparameters": {k: float(v) for k, v in estimator.best_params_.items()},
        "action_units": action_units,
        **card_record(training, metrics, familiarity_card),
    }
    return write_card(out_dir, card, files)


class Backend:
    """Training for evaluate/train: LBP features computed once per dataset, then any number of fits (LOSO folds,
    the final model) on index subsets."""

    def __init__(self, options: TrainOptions):
        # scikit-learn only when training: a saved model (Model) scores in numpy, and an analysis starts 1 s sooner
        from .svm import LbpSvmClassifier

        self.options = options
        self.svm_class = LbpSvmClassifier

    def prepare(self, images: list[np.ndarray], aus: np.ndarray | None) -> None:
        self.aus = aus
        extract = (self.svm_class().features, region_features) if aus is not None else (self.svm_class().features,)
        self._features, *regions = chunked_features(images, *extract)
        self._regions = regions[0] if regions else None

    def fit(self, idx: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Fitted:
        n_jobs = self.options.n_jobs
        pain = self.svm_class(n_jobs=n_jobs, components=PAIN_COMPONENTS).fit(self._features[idx], y[idx],
                                                                               groups=groups[idx])
        aus = None
        if self.aus is not None:
            aus = AuScorer(n_jobs=n_jobs).fit(self._regions[idx], self.aus[idx], groups=groups[idx])
        return Fitted(pain, aus, fit_grouped(self._features[idx], groups[idx]))

    def predict(self, fitted: Fitted, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        aus = None if fitted.aus is None else fitted.aus.predict_scores(self._regions[idx])
        fam = fitted.familiarity_model
        return (fitted.pain.predict(self._features[idx]), aus,
                None if fam is None else fam.score(self._features[idx]))

    def save(self, fitted: Fitted, out_dir: Path, training: dict, metrics: dict | None = None) -> dict:
        return save(fitted, out_dir, self.options.task, training, metrics)
