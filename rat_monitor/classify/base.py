"""The PainClassifier interface, saving models with their cards, and loading any saved classifier safely."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ModelError
from ..models import SYNTHETIC_CAVEAT, read_card, resolve, verified_file, write_card
from ..types import Prediction

TASKS = ("binary", "3class")


class PainClassifier(Protocol):
    name: str
    binary: bool
    card: dict

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

    def predict(self, crops: list[np.ndarray]) -> list[Prediction]:
        if not crops:
            return []
        probs = to_three(self._svm.predict_proba(self._features.transform(crops)), self._svm.classes)
        return [Prediction(p, self.name, self.binary) for p in probs]


def save_lbp_svm(estimator, out_dir: Path, task: str, training: dict, metrics: dict | None = None,
                 name: str | None = None) -> dict:
    """Writes svm.safetensors + card.json for a fitted LbpSvmClassifier."""
    import sklearn
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(estimator.arrays_.to_tensors(), str(out_dir / "svm.safetensors"))
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
        "training": training,
        "metrics": metrics or {},
        "synthetic": bool(training.get("synthetic", False)),
        "caveat": SYNTHETIC_CAVEAT if training.get("synthetic") else "",
        "versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "created": time.strftime("%Y-%m-%d"),
    }
    return write_card(out_dir, card, ["svm.safetensors"])


def load_classifier(name_or_path: str | Path) -> PainClassifier:
    folder = resolve(name_or_path, "pain-classifier")
    model = read_card(folder).get("model")
    if model == "lbp-svm":
        return LbpSvmModel(folder)
    if model == "resnet18":
        from .resnet import ResNetModel

        return ResNetModel(folder)
    raise ModelError(f"{folder}: unknown classifier type {model!r} in card.json")
