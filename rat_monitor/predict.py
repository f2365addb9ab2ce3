"""Scoring face images directly (crops a lab already has, e.g. the RatsPain crops): one result per image, in
the order given. An unreadable file is reported with its error and does not stop the others."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .classify.base import PainClassifier
from .imaging import IMAGE_EXTS
from .types import Prediction

BATCH = 32


def expand_images(items: list[str | Path]) -> list[Path]:
    """Files as given (whatever their extension: a bad one is reported when read); folders to the images inside
    them, recursively, sorted."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS and f.is_file())
        else:
            out.append(p)
    return out


def _read(path: Path) -> tuple[np.ndarray | None, str]:
    if not path.is_file():
        return None, "no such file"
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return (img, "") if img is not None and img.size else (None, "not a readable image")


def predict_images(paths: list[Path], classifier: PainClassifier) -> Iterator[tuple[Path, Prediction | None, str]]:
    """(path, prediction or None, error) per image, in the order given; the classifier runs in batches."""
    pending: list[tuple[Path, np.ndarray | None, str]] = []

    def flush():
        readable = [(p, img) for p, img, _ in pending if img is not None]
        preds = iter(classifier.predict([img for _, img in readable]))
        for p, img, error in pending:
            yield p, (next(preds) if img is not None else None), error
        pending.clear()

    for path in paths:
        pending.append((path, *_read(path)))
        if len(pending) >= BATCH:
            yield from flush()
    yield from flush()
