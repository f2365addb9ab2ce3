"""Training the face detector (PyTorch) on randomised synthetic frames and/or YOLO-format annotations,
then exporting it to ONNX for CPU inference. Fine-tuning starts from an existing detector's weights."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import DatasetError
from ..imaging import IMAGE_EXTS
from ..models import DETECTOR_CAVEAT, verified_file, write_card
from ..synth.lab import lab_frame
from .centernet import INPUT_H, INPUT_W, STRIDE, preprocess



@dataclass
class Sample:
    image: np.ndarray  # BGR
    boxes: np.ndarray  # (N, 4) pixels


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

    def __len__(self) -> int:
        return len(self.images)

    def __add__(self, other: "Prepared") -> "Prepared":
        return Prepared(np.concatenate([self.images, other.images]), self.boxes + other.boxes)


def prepare(samples: list[Sample], width: int = INPUT_W, height: int = INPUT_H) -> Prepared:
    images = np.empty((len(samples), height, width, 3), np.uint8)
    boxes = []
    for k, s in enumerate(samples):
        images[k] = (preprocess([s.image], width, height)[0].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
        h, w = s.image.shape[:2]
        boxes.append(s.boxes * np.array([width / w, height / h, width / w, height / h], np.float32))
    return Prepared(images, boxes)


def _render_prepared(job: tuple[int, int, int]) -> Prepared:
    seed, start, stop = job
    return prepare([Sample(*lab_frame(seed, i)) for i in range(start, stop)])


def render_prepared(n: int, seed: int, workers: int = 1,
                    progress: Callable[[int, int], None] | None = None) -> Prepared:
    """synthetic_samples(n, seed), rendered by `workers` processes and kept at the network input only.
    The frames do not depend on the number of workers."""
    chunk = 50
    jobs = [(seed, a, min(n, a + chunk)) for a in range(0, n, chunk)]
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


def yolo_samples(root: Path) -> list[Sample]:
    """images/ + labels/ (one 'class cx cy w h' line per box, normalised), as CVAT, Label Studio and
    DeepLabCut-to-YOLO converters export. Images without a label file are negatives."""
    root = Path(root)
    img_dir, lab_dir = root / "images", root / "labels"
    if not img_dir.is_dir():
        raise DatasetError(f"{root} has no images/ folder (YOLO layout: images/ and labels/)")
    out = []
    for img_path in sorted(p for p in img_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTS):
        img = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"cannot read image {img_path}")
        h, w = img.shape[:2]
        lab = lab_dir / img_path.relative_to(img_dir).with_suffix(".txt")
        boxes = []
        if lab.exists():
            for ln, line in enumerate(lab.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    _, cx, cy, bw, bh = (float(v) for v in parts[:5])
                except ValueError:
                    raise DatasetError(f"{lab}:{ln}: expected 'class cx cy w h', got {line!r}") from None
                boxes.append(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
        out.append(Sample(img, np.array(boxes, np.float32).reshape(-1, 4)))
    if not out:
        raise DatasetError(f"no images found under {img_dir}")
    return out


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


# --------------------------------------------------------------------------------------------- model
def build_net():
    import torch
    import torch.nn as nn

    def conv(cin, cout, stride=1):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class DetectorNet(nn.Module):
        """~0.2 M parameters; stride 8 output with one skip from stride 8 features."""

        def __init__(self):
            super().__init__()
            self.s2 = nn.Sequential(conv(3, 16, 2), conv(16, 16))
            self.s4 = nn.Sequential(conv(16, 32, 2), conv(32, 32))
            self.s8 = nn.Sequential(conv(32, 48, 2), conv(48, 48))
            self.s16 = nn.Sequential(conv(48, 96, 2), conv(96, 96), conv(96, 96))
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.fuse = conv(96 + 48, 64)
            self.heat = nn.Sequential(conv(64, 32), nn.Conv2d(32, 1, 1))
            self.size = nn.Sequential(conv(64, 32), nn.Conv2d(32, 2, 1))
            self.offset = nn.Sequential(conv(64, 32), nn.Conv2d(32, 2, 1))
            self.heat[-1].bias.data.fill_(-2.2)  # start from "few faces" (CenterNet's prior)

        def forward(self, x):
            f8 = self.s8(self.s4(self.s2(x)))
            f = self.fuse(torch.cat([self.up(self.s16(f8)), f8], dim=1))
            return self.heat(f), self.size(f), self.offset(f)

    return DetectorNet()


def _targets(data: Prepared, flipped: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heatmap (N, 1, gh, gw), regression (N, 4, gh, gw) and mask (N, 1, gh, gw) of every frame, as drawn
    or mirrored left-right (flip augmentation without recomputing per batch)."""
    gw, gh = INPUT_W // STRIDE, INPUT_H // STRIDE
    n = len(data)
    heat = np.zeros((n, 1, gh, gw), np.float32)
    reg = np.zeros((n, 4, gh, gw), np.float32)
    mask = np.zeros((n, 1, gh, gw), np.float32)
    for k, boxes in enumerate(data.boxes):
        if flipped:
            boxes = boxes.copy()
            boxes[:, [0, 2]] = INPUT_W - boxes[:, [2, 0]]
        heat[k, 0], reg[k], mask[k, 0] = make_targets(boxes, INPUT_W, INPUT_H, gw, gh)
    return heat, reg, mask


def _photometric(x, gen):
    """Per-frame exposure, contrast, colour cast and (sometimes) greyscale, on the batch's device."""
    import torch

    n = x.shape[0]

    def uniform(lo, hi, *shape):
        return (torch.rand(n, *shape, generator=gen) * (hi - lo) + lo).to(x.device)

    x = x * uniform(0.6, 1.4, 1, 1, 1) * uniform(0.85, 1.15, 3, 1, 1) + uniform(-0.1, 0.1, 1, 1, 1)
    grey = (torch.rand(n, generator=gen) < 0.1).to(x.device)[:, None, None, None]
    x = torch.where(grey, x.mean(dim=1, keepdim=True).expand_as(x), x)
    return x.clamp(0, 1)


def train_detector(samples: list[Sample] | Prepared, out_dir: Path, epochs: int = 20, init: Path | None = None,
                   lr: float = 2e-3, batch_size: int = 32, seed: int = 0, description: str = "",
                   synthetic: bool = False, progress: Callable[[int, int, float], None] | None = None) -> dict:
    """Trains (or fine-tunes from INIT/weights.safetensors) and writes OUT/model.onnx, weights.safetensors,
    card.json. Runs on a GPU when torch sees one. synthetic: every frame it learnt from (its initial
    detector's too) was synthetic, and the card says so. Returns the card."""
    import torch
    from safetensors.torch import load_file, save_file

    data = samples if isinstance(samples, Prepared) else prepare(samples)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = build_net()
    if init is not None:
        net.load_state_dict(load_file(str(verified_file(init, "weights.safetensors"))))
    net.to(device)
    images = torch.from_numpy(data.images).to(device)
    targets = {flip: [torch.from_numpy(t).to(device) for t in _targets(data, flip)] for flip in (False, True)}
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = max(1, int(np.ceil(len(data) / batch_size)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15 if init is None else 0.05)
    t0 = time.time()
    loss_value = float("nan")
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(data), generator=gen)
        total = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size].to(device)
            flip = (torch.rand(len(idx), generator=gen) < 0.5).to(device)
            f4 = flip[:, None, None, None]
            x = images[idx].permute(0, 3, 1, 2).float() * (1.0 / 255)
            x = _photometric(torch.where(f4, x.flip(3), x), gen)
            heat_t, reg_t, mask = (torch.where(f4, a[idx], p[idx]) for p, a in zip(targets[False], targets[True]))
            heat, size, offset = net(x)
            loss = _focal(heat, heat_t) + _masked_l1(torch.cat([size, offset], 1), reg_t, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        loss_value = total / steps_per_epoch
        if progress:
            progress(epoch + 1, epochs, loss_value)
    net.cpu()
    net.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out_dir / "weights.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 3, INPUT_H, INPUT_W), str(out_dir / "model.onnx"), dynamo=False,
                          input_names=["image"], output_names=["heat", "size", "offset"],
                          dynamic_axes={"image": {0: "n"}, "heat": {0: "n"}, "size": {0: "n"}, "offset": {0: "n"}},
                          opset_version=17)
    card = {
        "name": out_dir.name,
        "kind": "face-detector",
        "architecture": f"CenterNet-style CNN, stride 8, {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M "
                        "parameters",
        "input_size": [INPUT_W, INPUT_H],
        "threshold": 0.4,
        "training": {
            "description": description,
            "samples": len(samples),
            "epochs": epochs,
            "fine_tuned_from": str(init) if init else None,
            "final_loss": round(loss_value, 4),
            "seconds": round(time.time() - t0, 1),
            "device": device.type,
            "seed": seed,
        },
        "versions": {"torch": torch.__version__},
        "created": time.strftime("%Y-%m-%d"),
        "synthetic": synthetic,
        "caveat": DETECTOR_CAVEAT if synthetic else "",
        "metrics": {},  # filled by `rat-monitor detector evaluate --record`
    }
    return write_card(out_dir, card, ["model.onnx", "weights.safetensors"])


def _focal(logits, target):
    """CenterNet's penalty-reduced focal loss on the heatmap."""
    import torch

    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = torch.log(1 - p) * p**2 * (1 - target) ** 4 * neg
    n = pos.sum().clamp(min=1)
    return -(pos_loss.sum() + neg_loss.sum()) / n


def _masked_l1(pred, target, mask):
    n = mask.sum().clamp(min=1)
    return (abs(pred - target) * mask).sum() / n
