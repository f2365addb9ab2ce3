"""Training views of the detector's frames and their trunk features: each frame is augmented a few times
(mirror, zoom out or in, exposure, colour, greyscale, blur) and passed once through the frozen ImageNet trunk
with ONNX Runtime; the head then trains on the cached features for as many epochs as it needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .centernet import STRIDE
from .targets import make_targets, negative_weights


def _zoom(img: np.ndarray, b: np.ndarray, rng: np.random.Generator,
          zoom_in: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zoom out: the frame shrunk onto a plain canvas (faces smaller than the renders draw). Zoom in: a part
    of the frame enlarged (faces cut by the frame's edge, as close-up cameras show them); a face less than
    half inside the part is no longer labelled, the others are clipped to it. Returns the image, the boxes
    and which of the given boxes are still in it."""
    h, w = img.shape[:2]
    s = rng.uniform(0.35, 0.85) if not zoom_in else rng.uniform(0.5, 0.85)
    sw, sh = max(8, int(w * s)), max(8, int(h * s))
    x0, y0 = int(rng.integers(0, w - sw + 1)), int(rng.integers(0, h - sh + 1))
    if not zoom_in:
        canvas = np.empty_like(img)
        canvas[:] = rng.integers(0, 256, 3)
        canvas[y0:y0 + sh, x0:x0 + sw] = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
        moved = b * np.array([sw / w, sh / h, sw / w, sh / h], np.float32) + np.float32([x0, y0, x0, y0])
        return canvas, moved, np.ones(len(b), bool)
    out = cv2.resize(img[y0:y0 + sh, x0:x0 + sw], (w, h), interpolation=cv2.INTER_LINEAR)
    area = np.maximum(b[:, 2] - b[:, 0], 1e-3) * np.maximum(b[:, 3] - b[:, 1], 1e-3)
    c = np.stack([np.clip(b[:, 0], x0, x0 + sw), np.clip(b[:, 1], y0, y0 + sh), np.clip(b[:, 2], x0, x0 + sw),
                  np.clip(b[:, 3], y0, y0 + sh)], axis=1)
    kept = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1]) >= 0.5 * area
    c = (c[kept] - np.float32([x0, y0, x0, y0])) * np.array([w / sw, h / sh, w / sw, h / sh], np.float32)
    return out, c.astype(np.float32), kept


def _window(img: np.ndarray, b: np.ndarray, rng: np.random.Generator, size: tuple[int, int],
            faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A SIZE (width, height) part of a large input, around one of its faces most of the time (so that the few
    labelled faces are all seen), else anywhere (background is what teaches 'not a face'); faces less than half
    inside are no longer labelled, the others are clipped to it. The first FACES boxes are faces (the window is
    placed around one of them), the rest "not a face" boxes. Returns the part, its boxes and which were kept."""
    h, w = img.shape[:2]
    sw, sh = size
    if faces and rng.random() < 0.75:
        x0, y0, x1, y1 = b[rng.integers(faces)]
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)  # the face somewhere in the window, never cut in two
        left, top = int(np.clip(cx - rng.uniform(0.2, 0.8) * sw, 0, w - sw)), int(np.clip(cy - rng.uniform(0.2, 0.8) * sh, 0, h - sh))
    else:
        left, top = int(rng.integers(0, w - sw + 1)), int(rng.integers(0, h - sh + 1))
    area = np.maximum(b[:, 2] - b[:, 0], 1e-3) * np.maximum(b[:, 3] - b[:, 1], 1e-3)
    c = np.stack([np.clip(b[:, 0], left, left + sw), np.clip(b[:, 1], top, top + sh), np.clip(b[:, 2], left, left + sw),
                  np.clip(b[:, 3], top, top + sh)], axis=1)
    kept = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1]) >= 0.5 * area
    return img[top:top + sh, left:left + sw], (c[kept] - np.float32([left, top, left, top])).astype(np.float32), kept


def _augmented(images: np.ndarray, boxes: list[np.ndarray], rng: np.random.Generator, zoom: float,
               window: tuple[int, int] | None = None,
               negatives: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """One random view of each frame (uint8 NHWC RGB, boxes in input pixels) -> float NCHW [0, 1] and boxes:
    a WINDOW (width, height) of it when given (large inputs train on parts: the network is convolutional, and a
    part costs what the bundled input costs), mirrored half of the time, zoomed out or in with probability ZOOM,
    then exposure, contrast, colour cast, greyscale and blur varied. NEGATIVES ("not a face" boxes per frame)
    move with the faces; returns the views, their face boxes and their "not a face" boxes."""
    n, h, w = images.shape[:3]
    if window:
        w, h = window
    out = np.empty((n, 3, h, w), np.float32)
    moved, moved_negatives = [], []
    for k in range(n):
        faces = len(boxes[k])
        neg = negatives[k] if negatives is not None else np.zeros((0, 4), np.float32)
        img, b = np.ascontiguousarray(images[k]), np.concatenate([boxes[k], neg]).astype(np.float32)
        if window:
            img, b, kept = _window(img, b, rng, window, faces)
            faces = int(kept[:faces].sum())
            img = np.ascontiguousarray(img)
        if rng.random() < 0.5:
            img = np.ascontiguousarray(img[:, ::-1])
            b[:, [0, 2]] = w - b[:, [2, 0]]
        if rng.random() < zoom:
            img, b, kept = _zoom(img, b, rng, zoom_in=rng.random() < 0.5)
            faces = int(kept[:faces].sum())
        if rng.random() < 0.15:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
        x = img.astype(np.float32) * (1 / 255)
        x = x * rng.uniform(0.6, 1.4) * rng.uniform(0.85, 1.15, 3).astype(np.float32) + rng.uniform(-0.1, 0.1)
        if rng.random() < 0.15:
            x[:] = x.mean(axis=2, keepdims=True)
        out[k] = np.clip(x, 0, 1).transpose(2, 0, 1)
        moved.append(b[:faces])
        moved_negatives.append(b[faces:])
    return out, moved, moved_negatives


@dataclass
class FeatureCache:
    """The frozen trunk's features of every training view and the head's targets: the head trains on these
    alone, so each view costs one trunk pass however many epochs follow."""

    f8: "object"  # torch float16 (V, 32, gh, gw)
    f16: "object"  # torch float16 (V, 96, gh/2, gw/2)
    heat: "object"  # torch float32 (V, 1, gh, gw)
    reg: "object"  # (V, 4, gh, gw)
    mask: "object"  # (V, 1, gh, gw)
    negative_weight: "object"  # (V, 1, gh, gw): the heatmap's negative term weighs more on "not a face" boxes

    def __len__(self) -> int:
        return len(self.f8)


def cache_features(net, data, views: int, seed: int, zoom: float = 0.3,
                   batch_size: int = 32, window: tuple[int, int] | None = None) -> FeatureCache:
    """VIEWS augmented views of every frame (or of a WINDOW of it) through the frozen trunk (ONNX Runtime on
    every core)."""
    import os
    import tempfile

    import onnxruntime as ort
    import torch

    from .net import export_trunk_onnx

    rng = np.random.default_rng([seed, 5151])
    h, w = data.images.shape[1:3]
    if window and (window[0] >= w and window[1] >= h):
        window = None
    if window:
        w, h = min(window[0], w), min(window[1], h)
        window = (w, h)
    gw, gh = w // STRIDE, h // STRIDE
    with tempfile.TemporaryDirectory() as tmp:
        export_trunk_onnx(net, Path(tmp) / "trunk.onnx", w, h)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
        session = ort.InferenceSession(str(Path(tmp) / "trunk.onnx"), opts, providers=["CPUExecutionProvider"])
    parts: dict[str, list] = {k: [] for k in ("f8", "f16", "heat", "reg", "mask", "negative_weight")}
    negatives = getattr(data, "negatives", None)
    for _ in range(views):
        for a in range(0, len(data), batch_size):
            x, boxes, negs = _augmented(data.images[a:a + batch_size], data.boxes[a:a + batch_size], rng, zoom, window,
                                        negatives[a:a + batch_size] if negatives else None)
            f8, f16 = session.run(None, {"image": x})
            parts["f8"].append(torch.from_numpy(f8.astype(np.float16)))
            parts["f16"].append(torch.from_numpy(f16.astype(np.float16)))
            targets = [make_targets(b, w, h, gw, gh) for b in boxes]
            parts["heat"].append(torch.from_numpy(np.stack([t[0] for t in targets])[:, None]))
            parts["reg"].append(torch.from_numpy(np.stack([t[1] for t in targets])))
            parts["mask"].append(torch.from_numpy(np.stack([t[2] for t in targets])[:, None]))
            parts["negative_weight"].append(torch.from_numpy(np.stack([negative_weights(n, w, h, gw, gh)
                                                                       for n in negs])[:, None]))
    return FeatureCache(**{k: torch.cat(v) for k, v in parts.items()})
