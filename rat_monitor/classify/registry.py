"""The model kinds a pain classifier can be, and where each one's code lives. A kind's module is imported only
when that kind is used, so the runtime never imports torch (as DeepLabCut-live's runner factory does); a kind
whose training needs an optional extra says which one to install."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import ConfigError, ModelError, RatMonitorError, first_line
from ..models import read_card, resolve
from .base import PainClassifier, TrainOptions


@dataclass(frozen=True)
class Kind:
    module: str  # defines Model (a saved model, loaded for inference) and Backend (training)
    train_needs: tuple[str, ...] = ()  # packages training needs beyond the runtime install
    extra: str = ""  # the pip extra that brings them


KINDS = {
    "lbp-svm": Kind("rat_monitor.classify.lbp_svm"),
    "resnet18": Kind("rat_monitor.classify.resnet", ("torch", "torchvision"), "train"),
    "mobilenet-linear": Kind("rat_monitor.classify.mobilenet", ("torch", "torchvision"), "train"),
}


def kind_module(kind: str) -> ModuleType:
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")
    return importlib.import_module(KINDS[kind].module)


def load_classifier(name_or_path: str | Path) -> PainClassifier:
    """A bundled model name or a model folder -> the loaded classifier (checked against its card)."""
    folder = resolve(name_or_path, "pain-classifier")
    kind = read_card(folder).get("model")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ModelError(f"{folder}: unknown classifier type {kind!r} in card.json")
    try:  # a card field of the wrong type or a tensor of the wrong shape fails here or in the probe, not mid-run
        model = kind_module(kind).Model(folder)
        probe = model.predict([probe_image()])
    except ModelError as exc:
        raise exc if str(folder) in str(exc) else ModelError(f"{folder}: {exc}") from None
    except RatMonitorError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a damaged folder makes the model code raise
        raise ModelError(f"{folder} does not load or run ({type(exc).__name__}: {first_line(exc)})") from None
    if len(model.classes) != (2 if model.binary else 3):
        raise ModelError(f"{folder}: card.json says task {model.card['task']!r} but the weights have "
                         f"{len(model.classes)} pain classes")
    if len(probe) != 1 or np.shape(probe[0].probs) != (3,) or not np.isfinite(probe[0].probs).all():
        raise ModelError(f"{folder} gives no finite probabilities on a test image: a damaged or tampered model")
    return model


def probe_image(size: int = 112) -> np.ndarray:
    """A fixed textured grey image: what a model is tried on at load, before any run folder is made."""
    rng = np.random.default_rng(0)
    return (np.clip(rng.normal(128, 30, (size, size, 3)), 0, 255)).astype(np.uint8)


def missing_packages(kind: str) -> list[str]:
    """The packages training KIND needs that do not import."""
    from ..extras import missing

    return missing(KINDS[kind].train_needs)


def training_backend(kind: str, options: TrainOptions):
    """The training backend of KIND; a missing optional package is named with the extra that brings it."""
    module = kind_module(kind)
    from ..extras import require

    require(KINDS[kind].train_needs, f"training {kind}", KINDS[kind].extra)
    return module.Backend(options)
