"""Synthetic faces drawn next to real ones, for people to judge the renderer by eye.

The real frames are read from where the user keeps them and the sheet is written where the user says:
real footage (e.g. ../shared/real/reachbox, GPL-3.0) never goes into the repository, not even in a picture.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..imaging import square_crop
from .lab import lab_frame

CELL = 144


def _label(width: int, text: str) -> np.ndarray:
    strip = np.full((26, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def _row(cells: list[np.ndarray], n: int, size: tuple[int, int]) -> np.ndarray:
    cells = [cv2.resize(c, size, interpolation=cv2.INTER_AREA) for c in cells[:n]]
    cells += [np.full((size[1], size[0], 3), 255, np.uint8)] * (n - len(cells))
    return np.hstack(cells)


def _with_boxes(img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    img = img.copy()
    for x0, y0, x1, y1 in boxes:
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), (0, 255, 0), max(2, img.shape[1] // 200))
    return img


def side_by_side(path: Path, real: list[tuple[np.ndarray, np.ndarray]], seed: int = 0,
                 setting: str | None = "reach_box", per_row: int = 7) -> Path:
    """A PNG: real face crops above synthetic ones, then whole real frames above whole synthetic frames
    (with their face boxes). real: (BGR image, (N, 4) face boxes) pairs."""
    real_faces = [square_crop(img, box, zoom=1.3) for img, boxes in real for box in boxes]
    synth_frames, synth_faces = [], []
    index = 0
    while len(synth_faces) < len(real_faces) or len(synth_frames) < per_row:
        img, boxes = lab_frame(seed, index, setting)
        index += 1
        if len(boxes):
            synth_frames.append((img, boxes))
            synth_faces += [square_crop(img, box, zoom=1.3) for box in boxes]
        if index > 50 * (len(real_faces) + per_row):
            break
    rows_of = max(1, int(np.ceil(len(real_faces) / per_row)))
    width = per_row * CELL
    parts = [_label(width, f"real faces ({len(real_faces)}): not synthetic, not ours, never in the repository")]
    for r in range(rows_of):
        parts.append(_row(real_faces[r * per_row:(r + 1) * per_row], per_row, (CELL, CELL)))
    parts.append(_label(width, f"synthetic faces (synth.lab, setting {setting or 'random'}, seed {seed})"))
    for r in range(rows_of):
        parts.append(_row(synth_faces[r * per_row:(r + 1) * per_row], per_row, (CELL, CELL)))
    parts.append(_label(width, "real frames"))
    parts.append(_row([_with_boxes(i, b) for i, b in real], per_row, (CELL, CELL)))
    parts.append(_label(width, "synthetic frames"))
    parts.append(_row([_with_boxes(i, b) for i, b in synth_frames], per_row, (CELL, CELL)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack(parts))
    return path


def lab_sheet(path: Path, seed: int = 0, columns: int = 5, rows: int = 3) -> Path:
    """A grid of whole randomised lab frames (synthetic only) with their face boxes: docs/ material."""
    from .lab import SETTINGS

    cells = []
    for k in range(columns * rows):
        img, boxes = lab_frame(seed, k, SETTINGS[k % len(SETTINGS)])
        cells.append(_with_boxes(img, boxes))
    size = (256, 192)
    grid = np.vstack([_row(cells[r * columns:(r + 1) * columns], columns, size) for r in range(rows)])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grid)
    return path


def found_sheet(path: Path, frames: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], title: str,
                per_row: int = 4, cell: tuple[int, int] = (320, 240)) -> Path:
    """A PNG of frames with their labelled face boxes (green) and what a detector found (red, with its score).
    frames: (BGR image, (N, 4) labelled boxes, (M, 4) found boxes, (M,) scores). Real frames drawn here stay
    where the user writes the sheet, never in the repository."""
    cells = []
    for img, truth, found, scores in frames:
        img = _with_boxes(img, truth)
        thick = max(2, img.shape[1] // 250)
        for (x0, y0, x1, y1), sc in zip(found, scores):
            cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), (0, 0, 255), thick)
            cv2.putText(img, f"{sc:.2f}", (int(x0), max(12, int(y0) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        max(0.5, img.shape[1] / 900), (0, 0, 255), thick, cv2.LINE_AA)
        cells.append(img)
    rows = [_row(cells[r:r + per_row], per_row, cell) for r in range(0, len(cells), per_row)]
    legend = f"{title}: green = labelled face, red = found (score)"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack([_label(per_row * cell[0], legend), *rows]))
    return path
