"""Drawing on frames for people to look at (annotated.mp4, the live page's snapshots): face boxes with a short
label each, and captions that stay readable on any background."""

from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
GREEN, AMBER = (0, 200, 0), (0, 220, 255)


def draw_boxes(img: np.ndarray, boxes: list[tuple[np.ndarray, str]], highlight: bool = False) -> None:
    """Each (box in IMG's pixels, label) as a rectangle with its label above it; amber and thick when
    highlighted (a frame that was scored)."""
    colour = AMBER if highlight else GREEN
    for box, label in boxes:
        x0, y0, x1, y1 = (int(v) for v in box)
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, 3 if highlight else 1, cv2.LINE_AA)
        cv2.putText(img, label, (x0, max(10, y0 - 4)), FONT, 0.4, colour, 1, cv2.LINE_AA)


def caption(img: np.ndarray, text: str, y: int) -> None:
    """White text on a dark band, from the left edge at baseline Y. (A thick dark outline under thin text read
    as doubled glyphs once scaled and compressed: "frame 8" looked like "frame 88".)"""
    (w, h), base = cv2.getTextSize(text, FONT, 0.45, 1)
    x0, y0, x1, y1 = 3, max(0, y - h - 3), min(img.shape[1], 6 + w + 3), min(img.shape[0], y + base + 1)
    band = img[y0:y1, x0:x1]
    band[:] = (band * 0.25).astype(img.dtype)  # darkened, not blacked out: what lies under it stays visible
    cv2.putText(img, text, (6, y), FONT, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
