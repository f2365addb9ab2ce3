"""The PainClassifier interface, saving models with their cards, and loading any saved classifier safely."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ModelError
from ..models import SYNTHETIC_CAVEAT, read_card, resolve, verified_file, write_card
from ..types import ACTION_UNITS, Prediction
from .familiarity import FILE as FAMILIARITY_FILE
from .familiarity import Familiarity

TASKS = ("binary", "3class")
AU_FILE = "action_units.safetensors"


class PainClassifier(Protocol):
    name: str
    binary: bool
    action_units: bool  # predictions carry the four RGS action-unit scores
    card: dict
    familiarity: Familiarity | None  # None: an older model folder, familiarity not checked

    def predict(self, crops: list[np.ndarray]) -> list[Prediction]: ...


def to_three(probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Class probabilities over the model's classes -> (N, 3) over none/moderate/severe.
    Binary models (classes 0 = no pain, 1 = pain) put P(pain) in 'moderate'."""
    out = np.zeros((len(probs), 3))
    for j, c in enumerate(classes):
        out[:, int(c)] += probs[:, j]
    return out


def safe_load_tensors(path: Path) -> dict[str, np.ndarray]:
    """Loads a safetensors file as numpy arrays; anything else (a pickle, a truncated file) is refused."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a valid safetensors file ({exc}); refusing to load it") from None


def load_familiarity(folder: Path, card: dict) -> Familiarity | None:
    """The model's familiarity statistics, or None for a model folder made before they existed."""
    if not card.get("familiarity"):
        return None
    return Familiarity.from_tensors(safe_load_tensors(verified_file(folder, FAMILIARITY_FILE)))


def to_predictions(name: str, binary: bool, probs: np.ndarray, aus, familiarity: Familiarity | None,
                   feats: np.ndarray | None) -> list[Prediction]:
    """Predictions with each crop's familiarity (from the features the model saw) and refusal."""
    n = len(probs)
    aus = [None] * n if aus is None else aus
    if familiarity is None or feats is None:
        return [Prediction(p, name, binary, a) for p, a in zip(probs, aus)]
    fam = familiarity.score(feats)
    refused = familiarity.refused(fam)
    return [Prediction(p, name, binary, a, float(f), bool(r)) for p, a, f, r in zip(probs, aus, fam, refused)]


def save_familiarity(familiarity: tuple[Familiarity, str] | None, out_dir: Path) -> tuple[dict | None, list[str]]:
    """Writes the familiarity file; returns its card entry and the files written."""
    from safetensors.numpy import save_file

    if familiarity is None or familiarity[0] is None:
        return None, []
    fam, how = familiarity
    save_file(fam.to_tensors(), str(Path(out_dir) / FAMILIARITY_FILE))
    return fam.card(how), [FAMILIARITY_FILE]


class LbpSvmModel:
    """A saved LBP+SVM classifier, run in numpy."""

    binary: bool

    def __init__(self, folder: Path):
        from .lbp_svm import LbpFeatures, SvmArrays

        self.card = read_card(folder)
        self.name = self.card.get("name", Path(folder).name)
        self.binary = self.card["task"] == "binary"
        f = self.card["features"]
        self._features = LbpFeatures(size=f["size"], grid=f["grid"], radii=tuple(f["radii"]))
        self._svm = SvmArrays.from_tensors(safe_load_tensors(verified_file(folder, "svm.safetensors")))
        self.familiarity = load_familiarity(folder, self.card)
        self.action_units = bool(self.card.get("action_units"))
        if self.action_units:
            from .action_units import RegionSettings

            self._regions = RegionSettings.from_card(self.card["action_units"]["features"])
            tensors = safe_load_tensors(verified_file(folder, AU_FILE))
            self._au_svms = [SvmArrays.from_tensors({k.split(".", 1)[1]: v for k, v in tensors.items()
                                                     if k.startswith(f"{name}.")}) for name in ACTION_UNITS]

    def predict(self, crops: list[np.ndarray]) -> list[Prediction]:
        if not crops:
            return []
        feats = self._features.transform(crops)
        probs = to_three(self._svm.predict_proba(feats), self._svm.classes)
        aus = None
        if self.action_units:
            from .action_units import region_features, scores_from

            aus = scores_from(region_features(crops, self._regions), self._au_svms)
        return to_predictions(self.name, self.binary, probs, aus, self.familiarity, feats)


def save_lbp_svm(estimator, out_dir: Path, task: str, training: dict, metrics: dict | None = None,
                 name: str | None = None, au_scorer=None, familiarity: tuple[Familiarity, str] | None = None) -> dict:
    """Writes svm.safetensors + card.json for a fitted LbpSvmClassifier, action_units.safetensors when an
    AuScorer is given and familiarity.safetensors when familiarity statistics are given."""
    import sklearn
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(estimator.arrays_.to_tensors(), str(out_dir / "svm.safetensors"))
    files = ["svm.safetensors"]
    action_units = None
    if au_scorer is not None:
        from .action_units import RegionSettings

        save_file({f"{au}.{k}": v for au, est in zip(ACTION_UNITS, au_scorer.estimators_)
                   for k, v in est.arrays_.to_tensors().items()}, str(out_dir / AU_FILE))
        files.append(AU_FILE)
        action_units = {"names": list(ACTION_UNITS), "features": RegionSettings().to_card(),
                        "estimator": "one calibrated RBF SVM per action unit on its region's features; "
                                     "score = expected value of P(0, 1, 2)",
                        "hyperparameters": {au: {k: float(v) for k, v in est.best_params_.items()}
                                            for au, est in zip(ACTION_UNITS, au_scorer.estimators_)}}
    familiarity_card, familiarity_files = save_familiarity(familiarity, out_dir)
    files += familiarity_files
    card = {
        "name": name or out_dir.name,
        "kind": "pain-classifier",
        "model": "lbp-svm",
        "task": task,
        "classes": ["none", "pain"] if task == "binary" else ["none", "moderate", "severe"],
        "input": "square face crop, any size; grey, resized and histogram-equalised",
        "features": {"size": estimator.size, "grid": estimator.grid, "radii": list(estimator.radii),
                     "lbp": "uniform, 8 neighbours, Hellinger-normalised cell histograms"},
        "hyperparameters": {k: float(v) for k, v in estimator.best_params_.items()},
        "action_units": action_units,
        "familiarity": familiarity_card,
        "training": training,
        "metrics": metrics or {},
        "synthetic": bool(training.get("synthetic", False)),
        "caveat": SYNTHETIC_CAVEAT if training.get("synthetic") else "",
        "versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%d"),
    }
    return write_card(out_dir, card, files)


def load_classifier(name_or_path: str | Path) -> PainClassifier:
    folder = resolve(name_or_path, "pain-classifier")
    model = read_card(folder).get("model")
    if model == "lbp-svm":
        return LbpSvmModel(folder)
    if model == "resnet18":
        from .resnet import ResNetModel

        return ResNetModel(folder)
    raise ModelError(f"{folder}: unknown classifier type {model!r} in card.json")
