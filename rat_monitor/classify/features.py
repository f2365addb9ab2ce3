"""Face-crop preprocessing, uniform LBP and gradient-orientation histograms, vectorised over the whole batch (no per-pixel Python)."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from ..imaging import to_grey

P = 8  # neighbours per LBP code


@lru_cache(maxsize=1)
def uniform_table() -> np.ndarray:
    """Maps each 8-bit LBP code to one of 59 labels: 58 uniform patterns (at most 2 transitions) + 1 other."""
    table = np.full(256, 58, np.int64)
    label = 0
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(P)]
        transitions = sum(bits[i] != bits[(i + 1) % P] for i in range(P))
        if transitions <= 2:
            table[code] = label
            label += 1
    return table


def align_grey(crops: list[np.ndarray], size: int) -> np.ndarray:
    """Face crops (any size, BGR or grey) -> (N, size, size) uint8, histogram-equalised against lighting."""
    out = np.empty((len(crops), size, size), np.uint8)
    for i, crop in enumerate(crops):
        g = cv2.resize(to_grey(crop), (size, size), interpolation=cv2.INTER_AREA)
        out[i] = cv2.equalizeHist(g)
    return out


def lbp_codes(images: np.ndarray, radius: int) -> np.ndarray:
    """(N, H, W) uint8 -> (N, H - 2r, W - 2r) uniform LBP labels, neighbours at rounded circle positions."""
    n, h, w = images.shape
    r = radius
    centre = images[:, r:h - r, r:w - r].astype(np.int16)
    code = np.zeros(centre.shape, np.uint8)
    for i in range(P):
        a = 2 * np.pi * i / P
        dy, dx = int(round(-r * np.sin(a))), int(round(r * np.cos(a)))
        neighbour = images[:, r + dy:h - r + dy, r + dx:w - r + dx]
        code |= (neighbour >= centre).astype(np.uint8) << i
    return uniform_table()[code]


def lbp_histograms(images: np.ndarray, radii=(1, 2), grid: int = 4) -> np.ndarray:
    """Concatenated per-cell uniform LBP histograms (Hellinger-normalised) for each radius."""
    n = images.shape[0]
    feats = []
    for r in radii:
        labels = lbp_codes(images, r)
        cell = cell_index(*labels.shape[1:], grid)[None]  # (1, hh, ww)
        flat = (np.arange(n)[:, None, None] * grid * grid + cell) * 59 + labels
        hist = np.bincount(flat.ravel(), minlength=n * grid * grid * 59).reshape(n, grid * grid, 59)
        hist = hist / np.maximum(hist.sum(axis=2, keepdims=True), 1)
        feats.append(np.sqrt(hist).reshape(n, -1))
    return np.concatenate(feats, axis=1).astype(np.float32)


def cell_index(height: int, width: int, grid: int) -> np.ndarray:
    """(height, width) -> the grid cell (row-major) each pixel falls in."""
    cell_y = np.minimum(np.arange(height) * grid // height, grid - 1)
    cell_x = np.minimum(np.arange(width) * grid // width, grid - 1)
    return cell_y[:, None] * grid + cell_x[None, :]


def orientation_histograms(images: np.ndarray, grid: int = 6, bins: int = 9) -> np.ndarray:
    """Per-cell histograms of unsigned gradient orientation weighted by magnitude (HOG-like, without block
    overlap), L2- then square-root-normalised: the outline of eyelids, ear rims and whisker pads, which LBP's
    local texture misses."""
    x = images.astype(np.float32)
    gx = np.zeros_like(x)
    gy = np.zeros_like(x)
    gx[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    gy[:, 1:-1] = x[:, 2:] - x[:, :-2]
    magnitude = np.hypot(gx, gy)
    angle_bin = np.minimum(((np.arctan2(gy, gx) % np.pi) / np.pi * bins).astype(np.int64), bins - 1)
    n, h, w = x.shape
    flat = (np.arange(n)[:, None, None] * grid * grid + cell_index(h, w, grid)[None]) * bins + angle_bin
    hist = np.bincount(flat.ravel(), weights=magnitude.ravel(), minlength=n * grid * grid * bins)
    hist = hist.reshape(n, grid * grid, bins)
    hist /= np.maximum(np.linalg.norm(hist, axis=2, keepdims=True), 1e-6)
    return np.sqrt(hist).reshape(n, -1).astype(np.float32)


def lbp_features(crops, size: int, grid: int, radii: tuple[int, ...]) -> np.ndarray:
    """Face crops (a list or array of images) -> LBP feature vectors (aligned grey, uniform LBP histograms over a
    GRID x GRID of cells, one per radius)."""
    return lbp_histograms(align_grey(list(crops), size), radii, grid)
