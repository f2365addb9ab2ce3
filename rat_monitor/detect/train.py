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
from ..synth.face import COATS, Pose, look_for
from ..synth.scene import Effects, Scene
from ..synth.script import clip_box, face_visible
from .centernet import INPUT_H, INPUT_W, STRIDE, preprocess



@dataclass
class Sample:
    image: np.ndarray  # BGR
    boxes: np.ndarray  # (N, 4) pixels


# ---------------------------------------------------------------------------------------------- data
def synthetic_samples(n: int, seed: int, progress: Callable[[int, int], None] | None = None) -> list[Sample]:
    """Heavily randomised frames: coat, animal, cage, lighting, blur, scale, pose (turned-away heads are
    negatives), cage bars, aspect ratio, JPEG artefacts, empty cages and two rats at once."""
    rng = np.random.default_rng([seed, 77])
    sizes = [(640, 360), (640, 480), (480, 360), (720, 405), (512, 384)]
    scenes = {}
    out = []
    for i in range(n):
        w, h = sizes[int(rng.integers(len(sizes)))]
        key = (int(rng.integers(24)), w, h, bool(rng.random() < 0.25))
        if key not in scenes:
            scenes[key] = Scene(w, h, seed * 100000 + key[0] * 7 + w, noise_sigma=float(rng.choice([2, 4, 6, 9])),
                                bars=key[3])
        scene = scenes[key]
        n_rats = int(rng.choice([0, 1, 2], p=[0.08, 0.8, 0.12]))
        effects = Effects(gain=float(rng.uniform(0.4, 1.3)),
                          motion_px=tuple(rng.normal(0, 2.5, 2)) if rng.random() < 0.3 else (0.0, 0.0),
                          defocus_sigma=float(rng.uniform(0, 2.5)) if rng.random() < 0.2 else 0.0)
        poses = []
        for r in range(n_rats):
            look = look_for(int(rng.integers(1, 10000)), COATS[int(rng.choice(4, p=[0.55, 0.15, 0.15, 0.15]))])
            yaw = float(rng.uniform(-180, 180)) if rng.random() < 0.25 else float(rng.uniform(-90, 90))
            scale = h * float(rng.uniform(0.1, 0.34))
            cx = w * (rng.uniform(0.25, 0.75) if n_rats == 1 else (0.25 + 0.5 * r + rng.uniform(-0.1, 0.1)))
            if rng.random() < 0.08:  # partly out of frame
                cx = float(rng.choice([-0.05, 1.05])) * w
            au = rng.uniform(0, 2, 4)
            poses.append((Pose(float(cx), float(h * rng.uniform(0.3, 0.7)), scale, yaw, float(rng.uniform(-20, 20)),
                               *au), look))
        img, raw_boxes = scene.render(poses, effects, i)
        boxes = [clip_box(box, w, h) for box, (pose, _) in zip(raw_boxes, poses)
                 if face_visible(box, pose.yaw_deg, w, h)]
        if rng.random() < 0.6:
            q = int(rng.integers(35, 92))
            img = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR)
        if rng.random() < 0.1:
            img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        out.append(Sample(img, np.array(boxes, np.float32).reshape(-1, 4)))
        if progress:
            progress(i + 1, n)
    return out


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


def _augment(sample: Sample, rng: np.random.Generator) -> Sample:
    img, boxes = sample.image, sample.boxes.copy()
    if rng.random() < 0.5:
        img = img[:, ::-1]
        w = img.shape[1]
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    if rng.random() < 0.5:
        img = cv2.convertScaleAbs(img, alpha=float(rng.uniform(0.6, 1.4)), beta=float(rng.uniform(-25, 25)))
    return Sample(np.ascontiguousarray(img), boxes)


def train_detector(samples: list[Sample], out_dir: Path, epochs: int = 20, init: Path | None = None,
                   lr: float = 2e-3, batch_size: int = 32, seed: int = 0, description: str = "",
                   synthetic: bool = False, progress: Callable[[int, int, float], None] | None = None) -> dict:
    """Trains (or fine-tunes from INIT/weights.safetensors) and writes OUT/model.onnx, weights.safetensors,
    card.json. synthetic: every frame it learnt from (its initial detector's too) was synthetic, and the card
    says so. Returns the card."""
    import torch
    from safetensors.torch import load_file, save_file

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_net()
    if init is not None:
        net.load_state_dict(load_file(str(verified_file(init, "weights.safetensors"))))
    gw, gh = INPUT_W // STRIDE, INPUT_H // STRIDE
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = max(1, int(np.ceil(len(samples) / batch_size)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15 if init is None else 0.05)
    t0 = time.time()
    loss_value = float("nan")
    for epoch in range(epochs):
        net.train()
        order = rng.permutation(len(samples))
        total = 0.0
        for b in range(steps_per_epoch):
            batch = [_augment(samples[j], rng) for j in order[b * batch_size:(b + 1) * batch_size]]
            x = torch.from_numpy(preprocess([s.image for s in batch]))
            tg = [make_targets(s.boxes, s.image.shape[1], s.image.shape[0], gw, gh) for s in batch]
            heat_t = torch.from_numpy(np.stack([t[0] for t in tg]))[:, None]
            reg_t = torch.from_numpy(np.stack([t[1] for t in tg]))
            mask = torch.from_numpy(np.stack([t[2] for t in tg]))[:, None]
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
        "architecture": "CenterNet-style CNN, stride 8, ~0.4M parameters",
        "input_size": [INPUT_W, INPUT_H],
        "threshold": 0.4,
        "training": {
            "description": description,
            "samples": len(samples),
            "epochs": epochs,
            "fine_tuned_from": str(init) if init else None,
            "final_loss": round(loss_value, 4),
            "seconds": round(time.time() - t0, 1),
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
