"""Rat face detection: the FaceDetector interface, the bundled CNN detector, its training and evaluation."""

from pathlib import Path

from ..models import resolve
from .centernet import FaceDetector, OnnxFaceDetector


def load_detector(name_or_path: str | Path, threshold: float | None = None) -> OnnxFaceDetector:
    return OnnxFaceDetector(resolve(name_or_path, "face-detector"), threshold=threshold)


__all__ = ["FaceDetector", "OnnxFaceDetector", "load_detector"]
