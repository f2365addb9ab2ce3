"""CenterNet training targets: what the head should output for a frame's face boxes."""

from __future__ import annotations

import numpy as np


NEGATIVE_WEIGHT = 4.0  # how much more a "not a face" box weighs than the rest of the background


def negative_weights(negatives: np.ndarray, img_w: int, img_h: int, grid_w: int, grid_h: int) -> np.ndarray:
    """(grid_h, grid_w) weights of the heatmap's negative term: NEGATIVE_WEIGHT on the cells inside the boxes
    a person said are not faces (the proposals they turned down), 1 elsewhere."""
    weights = np.ones((grid_h, grid_w), np.float32)
    sx, sy = grid_w / img_w, grid_h / img_h
    for x0, y0, x1, y1 in np.asarray(negatives, np.float32).reshape(-1, 4):
        c0, r0 = int(np.clip(np.floor(x0 * sx), 0, grid_w - 1)), int(np.clip(np.floor(y0 * sy), 0, grid_h - 1))
        c1, r1 = int(np.clip(np.ceil(x1 * sx), c0 + 1, grid_w)), int(np.clip(np.ceil(y1 * sy), r0 + 1, grid_h))
        weights[r0:r1, c0:c1] = NEGATIVE_WEIGHT
    return weights


def make_targets(boxes: np.ndarray, img_w: int, img_h: int, grid_w: int, grid_h: int):
    """CenterNet targets: Gaussian heatmap at each centre, log size and offset at the centre cell."""
    heat = np.zeros((grid_h, grid_w), np.float32)
    reg = np.zeros((4, grid_h, grid_w), np.float32)  # log w, log h, dx, dy
    mask = np.zeros((grid_h, grid_w), np.float32)
    sx, sy = grid_w / img_w, grid_h / img_h
    yy, xx = np.mgrid[0:grid_h, 0:grid_w]
    for x0, y0, x1, y1 in boxes:
        cx, cy = (x0 + x1) / 2 * sx, (y0 + y1) / 2 * sy
        bw, bh = max((x1 - x0) * sx, 0.5), max((y1 - y0) * sy, 0.5)
        ix, iy = int(np.clip(cx, 0, grid_w - 1)), int(np.clip(cy, 0, grid_h - 1))
        sigma = max(0.5, 0.15 * (bw + bh) / 2 + 0.3)
        heat = np.maximum(heat, np.exp(-((xx - cx + 0.5) ** 2 + (yy - cy + 0.5) ** 2) / (2 * sigma**2)))
        heat[iy, ix] = 1.0
        reg[:, iy, ix] = (np.log(bw), np.log(bh), cx - ix, cy - iy)
        mask[iy, ix] = 1.0
    return heat, reg, mask
