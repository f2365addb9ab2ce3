"""Training the face detector (PyTorch) on randomised synthetic frames and/or YOLO-format annotations,
then exporting it to ONNX for CPU inference. Fine-tuning starts from an existing detector's weights."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError, ModelError
from ..imaging import IMAGE_EXTS, read_image
from ..models import DETECTOR_CAVEAT, read_card, verified_file, write_card
from ..synth.lab import lab_frame
from .centernet import INPUT_H, INPUT_W, preprocess
from .features import FeatureCache, cache_features

PHOTO_SHARE = 0.3  # of the synthetic training frames drawn on real photographs (synth.photos)


@dataclass
class Sample:
    image: np.ndarray  # BGR
    boxes: np.ndarray  # (N, 4) pixels
    path: Path | None = None  # the file it was read from (YOLO folders)
    negatives: np.ndarray | None = None  # (M, 4) pixels: boxes a person said are not faces (turned-down proposals)


def require_training_packages(fine_tune: bool) -> None:
    """Before any frame is rendered: torch and torchvision (the 'train' extra) and, for a training from
    nothing, the ImageNet weights file.

    Raises:
        ConfigError: a package is missing (named with the extra that brings it).
        ModelError: the weights file is missing or not the published one.
    """
    from ..extras import require

    require(("torch", "torchvision", "onnx"), "training the detector", "train")
    if not fine_tune:
        from ..pretrained import locate

        locate()


# ---------------------------------------------------------------------------------------------- data
def synthetic_samples(n: int, seed: int, progress: Callable[[int, int], None] | None = None,
                      setting: str | None = None) -> list[Sample]:
    """n randomised lab frames at full size (synth.lab): settings (or the one given), coats, scales, clutter and
    camera effects varied; turned-away heads and empty scenes are negatives."""
    out = []
    for i in range(n):
        out.append(Sample(*lab_frame(seed, i, setting)))
        if progress:
            progress(i + 1, n)
    return out


@dataclass
class Prepared:
    """Training frames at the network input: what the trainer keeps in memory (a 720p frame is 2.7 MB,
    its input 110 kB)."""

    images: np.ndarray  # (N, H, W, 3) uint8 RGB
    boxes: list[np.ndarray]  # per image (K, 4), input pixels
    negatives: list[np.ndarray] | None = None  # per image (M, 4), input pixels: "not a face" boxes

    def __len__(self) -> int:
        return len(self.images)

    def negatives_or_none(self) -> list[np.ndarray]:
        return self.negatives if self.negatives is not None else [np.zeros((0, 4), np.float32)] * len(self)

    def __add__(self, other: "Prepared") -> "Prepared":
        negatives = None
        if self.negatives is not None or other.negatives is not None:
            negatives = self.negatives_or_none() + other.negatives_or_none()
        return Prepared(np.concatenate([self.images, other.images]), self.boxes + other.boxes, negatives)


def prepare(samples: list[Sample], width: int = INPUT_W, height: int = INPUT_H) -> Prepared:
    images = np.empty((len(samples), height, width, 3), np.uint8)
    boxes, negatives = [], []
    for k, s in enumerate(samples):
        images[k] = (preprocess([s.image], width, height)[0].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
        h, w = s.image.shape[:2]
        scale = np.array([width / w, height / h, width / w, height / h], np.float32)
        boxes.append(s.boxes * scale)
        negatives.append((s.negatives if s.negatives is not None else np.zeros((0, 4), np.float32)) * scale)
    return Prepared(images, boxes, negatives if any(len(n) for n in negatives) else None)


def _render_prepared(job: tuple) -> Prepared:
    seed, start, stop, photos, (width, height) = job
    return prepare([Sample(*lab_frame(seed, i, photos=photos)) for i in range(start, stop)], width, height)


def render_prepared(n: int, seed: int, workers: int = 1, progress: Callable[[int, int], None] | None = None,
                    photos: float = PHOTO_SHARE, size: tuple[int, int] = (INPUT_W, INPUT_H)) -> Prepared:
    """n randomised lab frames (synth.lab, PHOTOS of them on real photographs), rendered by `workers`
    processes and kept at the network input SIZE only. The frames do not depend on the number of workers."""
    chunk = 50
    jobs = [(seed, a, min(n, a + chunk), photos, tuple(size)) for a in range(0, n, chunk)]
    parts: list[Prepared] = []
    done = 0
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_render_prepared, jobs):
                parts.append(part)
                done += len(part)
                if progress:
                    progress(done, n)
    else:
        for job in jobs:
            parts.append(_render_prepared(job))
            done += len(parts[-1])
            if progress:
                progress(done, n)
    return Prepared(np.concatenate([p.images for p in parts]), [b for p in parts for b in p.boxes])


MAX_LABEL_BYTES = 1 << 20  # a label file of one frame's boxes is a few hundred bytes
EDGE_SLACK = 0.01  # a box may reach 1% past the frame's edge (rounding in annotation tools), no further


def _yolo_boxes(lab: Path, w: int, h: int, root: Path) -> np.ndarray:
    """(N, 4) pixel boxes of one YOLO label file ('0 cx cy w h' per line, normalised); none if absent. A label
    file is untrusted input: anything but a regular file (a FIFO, a folder, a link leading out of ROOT), a class
    other than 0 (face), a number that is not finite, or a box outside the frame is refused with its line;
    nothing is dropped or clipped silently (a figure would change without a word)."""
    if lab.is_symlink() and not lab.resolve().is_relative_to(Path(root).resolve()):
        raise DatasetError(f"{lab} is a link that leads out of {root}")
    if not lab.exists():
        return np.zeros((0, 4), np.float32)
    if not lab.is_file():
        raise DatasetError(f"{lab} is not a regular file")
    size = lab.stat().st_size
    if size > MAX_LABEL_BYTES:
        raise DatasetError(f"{lab} is {size} bytes; a label file holds a few boxes")
    try:
        lines = lab.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {lab}: {type(exc).__name__}") from None
    boxes = []
    for ln, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 5:
                raise ValueError
            cls, cx, cy, bw, bh = (float(v) for v in parts)
        except ValueError:
            raise DatasetError(f"{lab}:{ln}: expected 'class cx cy w h', got {line[:80]!r}") from None
        if cls != 0:
            raise DatasetError(f"{lab}:{ln}: class {parts[0]}; rat-monitor learns one class, the face (0)")
        x0, y0, x1, y1 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
        if not (np.isfinite([cx, cy, bw, bh]).all() and bw > 0 and bh > 0 and min(x0, y0) >= -EDGE_SLACK
                and max(x1, y1) <= 1 + EDGE_SLACK):
            raise DatasetError(f"{lab}:{ln}: the box {line[:80]!r} is not inside the frame (normalised 0-1 centre "
                               "and size, each above 0)")
        boxes.append((max(x0, 0) * w, max(y0, 0) * h, min(x1, 1) * w, min(y1, 1) * h))
    return np.array(boxes, np.float32).reshape(-1, 4)


def yolo_text(boxes, w: int, h: int) -> str:
    """BOXES (pixels of a W x H frame) as a YOLO label file's text: '0 cx cy w h' per box, normalised."""
    return "".join(f"0 {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}\n"
                   for x0, y0, x1, y1 in boxes)


def yolo_samples(root: Path) -> list[Sample]:
    """images/ + labels/ (one 'class cx cy w h' line per box, normalised), as CVAT, Label Studio and
    DeepLabCut-to-YOLO converters export. Images without a label file are negatives. An optional negatives/
    folder in the same format holds boxes a person said are not faces (the labelling page's turned-down
    proposals): the fine-tune weighs them as hard negatives."""
    root = Path(root)
    img_dir, lab_dir, neg_dir = root / "images", root / "labels", root / "negatives"
    if not img_dir.is_dir():
        raise DatasetError(f"{root} has no images/ folder (YOLO layout: images/ and labels/)")
    out = []
    for img_path in sorted(p for p in img_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTS):
        img, why = read_image(img_path)
        if img is None:
            raise DatasetError(f"cannot read image {img_path}: {why}")
        h, w = img.shape[:2]
        name = img_path.relative_to(img_dir).with_suffix(".txt")
        negatives = _yolo_boxes(neg_dir / name, w, h, root)
        out.append(Sample(img, _yolo_boxes(lab_dir / name, w, h, root), img_path,
                          negatives if len(negatives) else None))
    if not out:
        raise DatasetError(f"no images found under {img_dir}")
    return out


# ------------------------------------------------------------------------------------------ training
FRAMES_PER_EPOCH = 64  # a few labelled frames are shown several times per epoch


def fine_tune(samples: list[Sample], out: Path, init: Path, epochs: int, what: str, seed: int = 0,
              synthetic: int = 0, progress: Callable[[int, int, float], None] | None = None,
              extra_card: dict | None = None, camera_size: bool = True) -> dict:
    """The detector of INIT fine-tuned on a camera's SAMPLES (WHAT they are, for the card), plus SYNTHETIC
    randomised lab frames, which keep what it knew; returns its card. camera_size: the network input chosen for
    these frames (their shape, their faces' size: detect.sizing), else INIT's."""
    from .sizing import input_size_for

    size = input_size_of(init)
    if camera_size:
        size = input_size_for([s.image.shape[1::-1] for s in samples],
                              [float(side) for s in samples for side in np.maximum(s.boxes[:, 2] - s.boxes[:, 0],
                                                                                     s.boxes[:, 3] - s.boxes[:, 1])])
    data = prepare(samples * max(1, math.ceil(FRAMES_PER_EPOCH / len(samples))), *size)
    parts = [what]
    if synthetic > 0:
        data = data + render_prepared(synthetic, seed, size=size)
        parts.append(f"{synthetic} randomised synthetic lab frames")
    return train_detector(data, out, epochs=epochs, init=init, seed=seed, description="; ".join(parts),
                          progress=progress, extra_card=extra_card, input_size=size)


def network_of(init: Path | None):
    """The detector network with INIT's weights (checked against its card), or the ImageNet trunk and a new head."""
    from safetensors.torch import load_file

    from .net import ARCHITECTURE, build_net

    if init is None:
        return build_net(pretrained=True)
    layout = read_card(init).get("architecture_id")
    if layout != ARCHITECTURE:
        raise ModelError(f"{init} is a detector of another network layout ({layout or 'the first, synthetic-only'}"
                         f" one); fine-tune from rat-face-detector, or train anew")
    net = build_net(pretrained=False)
    net.load_state_dict(load_file(str(verified_file(init, "weights.safetensors"))))
    return net


def train_detector(samples: list[Sample] | Prepared, out_dir: Path, epochs: int = 20, init: Path | None = None,
                   lr: float = 2e-3, batch_size: int = 64, seed: int = 0, description: str = "",
                   synthetic: bool = False, progress: Callable[[int, int, float], None] | None = None,
                   views: int = 2, zoom: float = 0.3, input_size: tuple[int, int] | None = None,
                   extra_card: dict | None = None, threshold: float = 0.4, caveat: str | None = None) -> dict:
    """Trains the head on the frozen ImageNet trunk (or fine-tunes it from INIT/weights.safetensors) and writes
    OUT/model.onnx, weights.safetensors, card.json. views: augmented views of each frame, whose trunk features
    are computed once. input_size: the network input (width, height); by default INIT's (the network is fully
    convolutional, so a fine-tune may change it for a camera's frames). synthetic: every frame it learnt from
    (its initial detector's too) was synthetic, and the card says so; caveat: the card's caveat when another
    applies. Returns the card."""
    import torch
    from safetensors.torch import save_file

    from ..pretrained import MOBILENET_V2
    from .net import ARCHITECTURE, export_onnx, parameter_count

    torch.manual_seed(seed)
    net = network_of(init)
    width, height = input_size or input_size_of(init)
    data = samples if isinstance(samples, Prepared) else prepare(samples, width, height)
    if data.images.shape[1:3] != (height, width):
        data = prepare([Sample(img[:, :, ::-1], b, negatives=n)
                        for img, b, n in zip(data.images, data.boxes, data.negatives_or_none())], width, height)
    t0 = time.time()
    cache = cache_features(net, data, views, seed, zoom, window=training_window(width, height))
    feature_seconds = time.time() - t0
    loss_value = fit_head(net, cache, epochs, lr, batch_size, seed, fine_tune=init is not None, progress=progress)
    net.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out_dir / "weights.safetensors"))
    export_onnx(net, out_dir / "model.onnx", width, height)
    total_params, trainable = parameter_count(net)
    card = {
        "name": out_dir.name,
        "kind": "face-detector",
        "architecture": f"CenterNet head ({trainable / 1e6:.2f}M parameters, trained) on ImageNet MobileNetV2 "
                        f"blocks 0-13 (frozen), stride 8, {total_params / 1e6:.2f}M parameters in all",
        "architecture_id": ARCHITECTURE,
        "backbone": MOBILENET_V2.card_entry(),
        "input_size": [width, height],
        "threshold": threshold,
        "training": {
            "description": description,
            "samples": len(data),
            "views_per_frame": views,
            "epochs": epochs,
            "fine_tuned_from": str(init) if init else None,
            "final_loss": round(loss_value, 4),
            "seconds": round(time.time() - t0, 1),
            "feature_seconds": round(feature_seconds, 1),
            "device": "cpu",
            "seed": seed,
            **(extra_card or {}),
        },
        "versions": {"torch": torch.__version__},
        "created": time.strftime("%Y-%m-%d"),
        "synthetic": synthetic,
        "caveat": caveat if caveat is not None else DETECTOR_CAVEAT if synthetic else "",
        "metrics": {},  # filled by `rat-monitor detector evaluate --record`
    }
    return write_card(out_dir, card, ["model.onnx", "weights.safetensors"])


def fit_head(net, cache: FeatureCache, epochs: int, lr: float, batch_size: int, seed: int, fine_tune: bool,
             progress: Callable[[int, int, float], None] | None = None) -> float:
    """Trains the head on cached features; returns the last epoch's mean loss."""
    import torch

    head = net.head
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = max(1, int(np.ceil(len(cache) / batch_size)))
    total = epochs * steps_per_epoch
    # warm-up of at least two steps: OneCycleLR divides by zero when its warm-up ends on step 0 (20 steps at 5 %)
    warmup = max(2, round(total * (0.05 if fine_tune else 0.15)))
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=warmup / total)
             if total > warmup else torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0))
    gen = torch.Generator().manual_seed(seed)
    loss_value = float("nan")
    for epoch in range(epochs):
        head.train()
        order = torch.randperm(len(cache), generator=gen)
        total = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            heat, size, offset = head(cache.f8[idx].float(), cache.f16[idx].float())
            loss = _focal(heat, cache.heat[idx], cache.negative_weight[idx]) + _masked_l1(torch.cat([size, offset], 1), cache.reg[idx],
                                                              cache.mask[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        loss_value = total / steps_per_epoch
        if progress:
            progress(epoch + 1, epochs, loss_value)
    head.eval()
    return loss_value


TRAINING_WINDOW = 256  # px: a larger input trains on parts this big, so a fine-tune costs the same at any size


def training_window(width: int, height: int) -> tuple[int, int] | None:
    """The part of a large input each training view shows (None: the whole input)."""
    if width * height <= TRAINING_WINDOW * TRAINING_WINDOW:
        return None
    return min(width, TRAINING_WINDOW), min(height, TRAINING_WINDOW)


def input_size_of(init: Path | None) -> tuple[int, int]:
    """The network input (width, height) of a detector folder to fine-tune from; the default for a new one.
    Training frames are prepared at this size once."""
    if init is None:
        return INPUT_W, INPUT_H
    w, h = read_card(init).get("input_size", [INPUT_W, INPUT_H])
    return int(w), int(h)


def _focal(logits, target, negative_weight=None):
    """CenterNet's penalty-reduced focal loss on the heatmap; NEGATIVE_WEIGHT weighs its negative term per cell
    (more on the boxes a person said are not faces)."""
    import torch

    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = torch.log(1 - p) * p**2 * (1 - target) ** 4 * neg
    if negative_weight is not None:
        neg_loss = neg_loss * negative_weight
    n = pos.sum().clamp(min=1)
    return -(pos_loss.sum() + neg_loss.sum()) / n


def _masked_l1(pred, target, mask):
    n = mask.sum().clamp(min=1)
    return (abs(pred - target) * mask).sum() / n
