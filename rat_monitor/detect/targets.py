"""CenterNet training targets: what the head should output for a frame's face boxes."""

from __future__ import annotations

import numpy as np


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
