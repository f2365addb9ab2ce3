"""Rat face detection: the FaceDetector interface, the bundled CNN detector, its training and evaluation."""

from pathlib import Path

from ..models import resolve
from .centernet import FaceDetector, OnnxFaceDetector


def load_detector(name_or_path: str | Path, threshold: float | None = None) -> OnnxFaceDetector:
    """A bundled detector name or a folder -> the detector, tried on a test frame before it is used."""
    import numpy as np

    from ..errors import ModelError, RatMonitorError

    folder = resolve(name_or_path, "face-detector")
    try:  # a card field of the wrong type or a broken network fails here, not in the middle of a run
        detector = OnnxFaceDetector(folder, threshold=threshold)
        found = detector.detect(np.full((240, 320, 3), 128, np.uint8))
    except RatMonitorError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a damaged folder makes ONNX Runtime or the card raise
        raise ModelError(f"{folder} does not load or run ({type(exc).__name__}: {exc})") from None
    if not (np.isfinite(found.boxes).all() and np.isfinite(found.scores).all()):
        raise ModelError(f"{folder} gives non-finite boxes on a test frame: a damaged or tampered detector")
    return detector


__all__ = ["FaceDetector", "OnnxFaceDetector", "load_detector"]
