"""Scoring face images directly (crops a lab already has, e.g. the RatsPain crops): one result per image, in
the order given; or the faces in whole frames, found by a detector or cut from YOLO labels: one result per face,
with its box. An unreadable file, or a frame without a face, is reported with why and does not stop the others."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .classify.base import PainClassifier
from .detect.centernet import FaceDetector
from .imaging import as_stored, images_in, read_image, square_crop
from .types import Prediction

BATCH = 32
NO_FACE = ("no face found", "no labelled face")  # the error of a frame with nothing to score (not a bad file)


def expand_images(items: list[str | Path]) -> list[Path]:
    """Files as given (whatever their extension: a bad one is reported when read); folders to the images inside
    them, recursively, sorted."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += images_in(p)
        else:
            out.append(p)
    return out


# One face to score: the image it comes from, its box in that image (None for a crop given as is), the crop (None
# when there is nothing to score) and why not.
Face = tuple[Path, np.ndarray | None, np.ndarray | None, str]


def given_crops(paths: list[Path]) -> Iterator[Face]:
    """Each image as a face crop."""
    for path in paths:
        img, error = read_image(path)
        yield path, None, img, error


def _cut(path: Path, image: np.ndarray, box) -> Face:
    """The face in BOX cut as the pipeline cuts and stores it (the JPEG a run folder would keep)."""
    return path, np.asarray(box, np.float64), as_stored(square_crop(image, box))[0], ""


def found_faces(paths: list[Path], detector: FaceDetector) -> Iterator[Face]:
    """Each face the detector finds in each whole frame, cut as the pipeline cuts it; a frame with none gets one
    row saying so."""
    for path in paths:
        img, error = read_image(path)
        if img is None:
            yield path, None, None, error
            continue
        found = detector.detect(img)
        if not len(found.boxes):
            yield path, None, None, NO_FACE[0]
        for box in found.boxes:
            yield _cut(path, img, box)


def labelled_faces(root: Path) -> Iterator[Face]:
    """Each face labelled in a YOLO folder (images/ + labels/), cut from its box; a frame without a box gets one
    row saying so."""
    from .detect.train import yolo_samples

    for sample in yolo_samples(root):
        if not len(sample.boxes):
            yield sample.path, None, None, NO_FACE[1]
        for box in sample.boxes:
            yield _cut(sample.path, sample.image, box)


def predict_faces(faces: Iterable[Face], classifier: PainClassifier) -> Iterator[tuple[Path, np.ndarray | None,
                                                                                      Prediction | None, str]]:
    """(path, box, prediction or None, error) per face, in the order given; the classifier runs in batches."""
    pending: list[Face] = []

    def flush():
        preds = iter(classifier.predict([crop for _, _, crop, _ in pending if crop is not None]))
        for path, box, crop, error in pending:
            yield path, box, (next(preds) if crop is not None else None), error
        pending.clear()

    for face in faces:
        pending.append(face)
        if len(pending) >= BATCH:
            yield from flush()
    yield from flush()


def predict_images(paths: list[Path], classifier: PainClassifier) -> Iterator[tuple[Path, Prediction | None, str]]:
    """(path, prediction or None, error) per image taken as a face crop, in the order given."""
    for path, _, pred, error in predict_faces(given_crops(paths), classifier):
        yield path, pred, error
