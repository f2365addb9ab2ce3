"""Synthetic face-crop datasets (the trainers' manifest layout) and the contact sheet people look at."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..imaging import square_crop
from .face import Look, Pose, look_for
from .scene import Effects, Scene

LEVEL_P = (0.42, 0.42, 0.16)  # none / moderate / severe share of sampled crops
MANIFEST_COLUMNS = ["path", "subject", "label", "orbital", "nose", "ears", "whiskers", "yaw_deg"]


def sample_face(rng: np.random.Generator, level: int, look: Look, scene: Scene, index: int,
                yaw_range: float = 60.0) -> tuple[np.ndarray, tuple, tuple[int, ...], float]:
    """Renders one random pose at a pain level; returns image, face box, integer AUs and yaw."""
    delta = rng.choice([-1, 0, 1], size=4, p=[0.12, 0.76, 0.12])
    aus = tuple(int(v) for v in np.clip(level + delta, 0, 2))
    wobble = rng.uniform(-0.15, 0.15, 4)
    yaw = float(rng.uniform(-yaw_range, yaw_range))
    scale = scene.height * rng.uniform(0.2, 0.3) * look.size
    pose = Pose(cx=scene.width * rng.uniform(0.35, 0.65), cy=scene.height * rng.uniform(0.45, 0.6), scale=scale,
                yaw_deg=yaw, roll_deg=float(rng.uniform(-12, 12)),
                orbital=max(0.0, aus[0] + wobble[0]), nose=max(0.0, aus[1] + wobble[1]),
                ears=max(0.0, aus[2] + wobble[2]), whiskers=max(0.0, aus[3] + wobble[3]))
    effects = Effects(gain=float(rng.uniform(0.75, 1.15)), defocus_sigma=float(rng.choice([0, 0, 0, 0.6])))
    img, boxes = scene.render([(pose, look)], effects, index)
    return img, boxes[0], aus, yaw


def write_dataset(out: Path, subjects: int, per_subject: int, seed: int = 0, coat: str = "albino",
                  size: int = 112, progress: Callable[[int, int], None] | None = None) -> Path:
    """Face crops of `subjects` animals (rat01, rat02, ...), `per_subject` each, under OUT/images, listed in
    OUT/manifest.csv with path,subject,label,orbital,nose,ears,whiskers. Returns the manifest path."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    total = subjects * per_subject
    for subject in range(1, subjects + 1):
        look = look_for(subject, coat)
        scene = Scene(640, 480, seed * 1000 + subject)  # each animal filmed in its own cage set-up
        for i in range(per_subject):
            rng = np.random.default_rng([seed, subject, 4, i])
            level = int(rng.choice(3, p=LEVEL_P))
            img, box, aus, yaw = sample_face(rng, level, look, scene, i)
            # Realistic jitter in shift and zoom: what a detector's box looks like, not the perfect truth.
            crop = square_crop(img, box, shift=rng.uniform(-0.08, 0.08, 2), zoom=float(rng.uniform(0.92, 1.16)))
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
            name = f"images/rat{subject:02d}_{i:05d}.jpg"
            # JPEG at a random quality: compression artefacts like a camcorder's.
            cv2.imwrite(str(out / name), crop, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 96))])
            rows.append([name, f"rat{subject:02d}", level, *aus, f"{yaw:.1f}"])
            if progress:
                progress(len(rows), total)
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(MANIFEST_COLUMNS)
        w.writerows(rows)
    return manifest


def contact_sheet(path: Path, subject: int = 1, coat: str = "albino", cell: int = 128) -> Path:
    """A grid of faces: rows are pain levels 0, 1, 2; columns are poses from profile to frontal to profile."""
    yaws = (-80, -45, -20, 0, 20, 45, 80)
    look = look_for(subject, coat)
    scene = Scene(480, 360, subject, noise_sigma=2.0)
    label_w = 110
    sheet = np.full((cell * 3 + 30, label_w + cell * len(yaws), 3), 255, np.uint8)
    for c, yaw in enumerate(yaws):
        cv2.putText(sheet, f"yaw {yaw:+d}", (label_w + c * cell + 20, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
    for level in range(3):
        y = 30 + level * cell
        cv2.putText(sheet, ("no pain", "moderate", "severe")[level], (8, y + cell // 2), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for c, yaw in enumerate(yaws):
            pose = Pose(240, 200, 95 * look.size, yaw, 0, level, level, level, level)
            img, (box,) = scene.render([(pose, look)], Effects(), 0)
            sheet[y:y + cell, label_w + c * cell:label_w + (c + 1) * cell] = cv2.resize(
                square_crop(img, box), (cell, cell), interpolation=cv2.INTER_AREA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet)
    return path
