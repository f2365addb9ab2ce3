"""Rat face detection: the FaceDetector interface, the bundled CNN detector, its training and evaluation."""

from functools import lru_cache
from pathlib import Path

from ..models import resolve
from .centernet import FaceDetector, OnnxFaceDetector


@lru_cache(maxsize=1)
def probe_frame():
    """A small rendered frame with one rat face (60 ms, once per process)."""
    import numpy as np

    from ..synth.dataset import sample_face
    from ..synth.face import look_for
    from ..synth.scene import Scene

    return sample_face(np.random.default_rng(0), 1, look_for(1, "albino"), Scene(320, 240, 0), 0)[0]


def load_detector(name_or_path: str | Path, threshold: float | None = None) -> OnnxFaceDetector:
    """A bundled detector name or a folder -> the detector, tried on a test frame before it is used."""
    import numpy as np

    from ..errors import ModelError, RatMonitorError

    from ..errors import first_line

    folder = resolve(name_or_path, "face-detector")
    try:  # a card field of the wrong type or a broken network fails here, not in the middle of a run
        detector = OnnxFaceDetector(folder, threshold=threshold)
        # Probed on a rendered frame with a face, at a low threshold, so that the decoding of found faces (where
        # outputs of the wrong shape fail) runs too.
        kept, detector.threshold = detector.threshold, 0.01
        found = detector.detect(probe_frame())
        detector.threshold = kept
    except RatMonitorError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a damaged folder makes ONNX Runtime or the card raise
        raise ModelError(f"{folder} does not load or run ({type(exc).__name__}: {first_line(exc)})") from None
    if not (np.isfinite(found.boxes).all() and np.isfinite(found.scores).all()):
        raise ModelError(f"{folder} gives non-finite boxes on a test frame: a damaged or tampered detector")
    return detector


__all__ = ["FaceDetector", "OnnxFaceDetector", "load_detector"]
