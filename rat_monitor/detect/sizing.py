"""Which network input suits a camera: the frame's shape kept (a square reach box squeezed into 288x160 drew its
faces half as tall as wide) and the labelled faces brought to about the size the detector learnt faces at
(a 50-px head in a 960-px frame is 15 px at 288x160, too small for a stride-8 heatmap to place)."""

from __future__ import annotations

import numpy as np

from .centernet import INPUT_H, INPUT_W

FACE_TARGET_PX = 48  # the median labelled face's longer side at the network input
MIN_SIDE, MAX_SIDE, MULTIPLE = 128, 768, 32  # multiples of 32: both feature grids (stride 8 and 16) stay whole
BUNDLED_PIXELS = INPUT_W * INPUT_H


def input_size_for(frame_sizes: list[tuple[int, int]], face_sides: list[float]) -> tuple[int, int]:
    """(width, height) of the network input for frames of FRAME_SIZES (width, height) whose labelled faces have
    longer sides FACE_SIDES (frame pixels): the median frame's aspect, scaled so that the median face is about
    FACE_TARGET_PX, each side a multiple of 32 within [128, 768]. Without faces, the bundled input's area at the
    frames' aspect."""
    if not frame_sizes:
        return INPUT_W, INPUT_H
    w, h = (float(np.median([s[k] for s in frame_sizes])) for k in (0, 1))
    if face_sides:
        scale = FACE_TARGET_PX / max(float(np.median(face_sides)), 1.0)
    else:
        scale = (BUNDLED_PIXELS / (w * h)) ** 0.5
    width, height = w * scale, h * scale
    longest = max(width, height)
    if longest > MAX_SIDE:  # cost grows with the pixels: a tiny face in a huge frame is capped, and tiles are not
        width, height = width * MAX_SIDE / longest, height * MAX_SIDE / longest
    shortest = min(width, height)
    if shortest < MIN_SIDE:
        width, height = width * MIN_SIDE / shortest, height * MIN_SIDE / shortest
    snap = lambda v: int(np.clip(round(v / MULTIPLE) * MULTIPLE, MIN_SIDE, MAX_SIDE))  # noqa: E731
    return snap(width), snap(height)


def relative_cost(size: tuple[int, int]) -> float:
    """The detector's cost per call against the bundled 288x160 input (it grows with the input's pixels)."""
    return size[0] * size[1] / BUNDLED_PIXELS
