"""The PainClassifier interface, what one training produced (Fitted) and the options every training takes, and
the safe loading helpers the model kinds share (safetensors only; familiarity statistics)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ..errors import ModelError
from ..models import verified_file
from ..types import Prediction
from .familiarity import FILE as FAMILIARITY_FILE
from .familiarity import Familiarity

TASKS = ("binary", "3class")


class PainClassifier(Protocol):
    name: str
    binary: bool
    action_units: bool  # predictions carry the four RGS action-unit scores
    card: dict
    familiarity: Familiarity | None  # None: an older model folder, familiarity not checked

    def predict(self, crops: list[np.ndarray]) -> list[Prediction]: ...


@dataclass(frozen=True)
class TrainOptions:
    """What `train` and `evaluate` pass to every model kind's training backend."""

    task: str = "binary"
    n_jobs: int | None = None
    epochs: int | None = None  # ResNet-18: maximum epochs
    weights: Path | None = None  # ResNet-18: ImageNet weights file
    log: Callable[[str], None] = field(default=lambda _msg: None)


FEATURE_CHUNK = 256  # crops read and turned into features at a time: memory holds features, not pixels


def chunked_features(images: Sequence, *extract: Callable[[list[np.ndarray]], np.ndarray]) -> list[np.ndarray]:
    """Each EXTRACT's features of every image, computed FEATURE_CHUNK images at a time (each image read once), so
    that only features are held, never every picture of a large dataset."""
    parts: list[list[np.ndarray]] = [[] for _ in extract]
    for start in range(0, len(images), FEATURE_CHUNK):
        chunk = list(images[start:start + FEATURE_CHUNK])
        for part, fn in zip(parts, extract):
            part.append(fn(chunk))
    return [np.concatenate(part) if part else np.zeros((0,), np.float32) for part in parts]


@dataclass
class Fitted:
    """What one training produced: the pain estimator, the AU estimator (the same object for a multi-task ResNet;
    None when the data had no AU labels) and the familiarity statistics with how they were calibrated."""

    pain: object
    aus: object | None = None
    familiarity: tuple[Familiarity | None, str] | None = None

    @property
    def familiarity_model(self) -> Familiarity | None:
        return self.familiarity[0] if self.familiarity else None


def class_names(task: str) -> list[str]:
    return ["none", "pain"] if task == "binary" else ["none", "moderate", "severe"]


def to_three(probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Class probabilities over the model's classes -> (N, 3) over none/moderate/severe.
    Binary models (classes 0 = no pain, 1 = pain) put P(pain) in 'moderate'."""
    out = np.zeros((len(probs), 3))
    for j, c in enumerate(classes):
        out[:, int(c)] += probs[:, j]
    return out


def card_binary(card: dict) -> bool:
    """Whether a classifier's card says it is binary; a task that is neither known one is refused."""
    if card.get("task") not in TASKS:
        raise ModelError(f"card.json task {card.get('task')!r} is not one of {', '.join(TASKS)}")
    return card["task"] == "binary"


def card_int(value: object, low: int, high: int, what: str) -> int:
    """A whole number from a card within sane bounds: a feature size that would allocate gigabytes is refused
    before anything is allocated."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ModelError(f"card.json {what} {value!r} is not a whole number from {low} to {high}")
    return value


def card_record(training: dict, metrics: dict | None, familiarity_card: dict | None) -> dict:
    """The card fields every classifier kind writes alike: familiarity, training data, figures, the synthetic
    caveat, versions and date."""
    import platform
    import time

    import sklearn

    from ..models import SYNTHETIC_CAVEAT

    return {"familiarity": familiarity_card, "training": training, "metrics": metrics or {},
            "synthetic": bool(training.get("synthetic", False)),
            "caveat": SYNTHETIC_CAVEAT if training.get("synthetic") else "",
            "versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
            "created": time.strftime("%Y-%m-%d")}


def safe_load_tensors(path: Path) -> dict[str, np.ndarray]:
    """Loads a safetensors file as numpy arrays; anything else (a pickle, a truncated file) is refused."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a valid safetensors file ({exc}); refusing to load it") from None


def load_familiarity(folder: Path, card: dict) -> Familiarity | None:
    """The model's familiarity statistics, or None for a model folder made before they existed or trained on too
    few animals to calibrate them (its card then says why)."""
    if not (card.get("familiarity") or {}).get("file"):
        return None
    return Familiarity.from_tensors(safe_load_tensors(verified_file(folder, FAMILIARITY_FILE)))


def save_familiarity(familiarity: tuple[Familiarity | None, str] | None, out_dir: Path) -> tuple[dict | None, list[str]]:
    """Writes the familiarity file; returns its card entry and the files written. Without statistics the entry
    says why, and the model scores every crop."""
    if familiarity is None or familiarity[0] is None:
        return {"why_not": familiarity[1] if familiarity else "not fitted"}, []
    fam, how = familiarity
    save_file(fam.to_tensors(), str(Path(out_dir) / FAMILIARITY_FILE))
    return fam.card(how), [FAMILIARITY_FILE]


def to_predictions(name: str, binary: bool, probs: np.ndarray, aus, familiarity: Familiarity | None,
                   feats: np.ndarray | None) -> list[Prediction]:
    """Predictions with each crop's familiarity (from the features the model saw) and refusal. A crop whose
    outputs are not all finite numbers (a broken or tampered model) is refused: never a score."""
    probs = np.asarray(probs, np.float64)
    finite = np.isfinite(probs).all(axis=1)
    if aus is not None:
        finite &= np.isfinite(np.asarray(aus, np.float64)).all(axis=1)
    aus = [None] * len(probs) if aus is None else aus
    if familiarity is None or feats is None:
        return [Prediction(p, name, binary, a, None if ok else 0.0, not ok) for p, a, ok in zip(probs, aus, finite)]
    fam = familiarity.score(feats)
    refused = familiarity.refused(fam) | ~finite
    fam = np.where(finite, fam, 0.0)
    return [Prediction(p, name, binary, a, float(f), bool(r)) for p, a, f, r in zip(probs, aus, fam, refused)]
