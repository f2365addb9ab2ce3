"""Writes a synthetic video with its truth files: NAME.mp4, NAME.truth.csv (per frame), NAME.minutes.csv."""

from __future__ import annotations

import csv
from dataclasses import replace
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..encode import VideoWriter
from .scene import Scene
from .script import FrameTruth, Script, VideoSpec, clip_box, face_visible

TRUTH_COLUMNS = ["frame", "t_s", "visible", "x0", "y0", "x1", "y1", "yaw_deg", "pain_level",
                 "orbital", "nose", "ears", "whiskers", "blur_px"]
MINUTE_COLUMNS = ["minute", "pain_level", "face_fraction", "frames"]
SHARP_BLUR_PX = 1.0  # a face with less blur than this counts as sharp


def truth_row(tr: FrameTruth) -> list:
    box = [f"{v:.1f}" for v in tr.box] if tr.visible else ["", "", "", ""]
    return [tr.frame, f"{tr.t_s:.4f}", int(tr.visible), *box, f"{tr.yaw_deg:.1f}", tr.pain_level, *tr.aus,
            f"{tr.blur_px:.2f}"]


def render_frames(spec: VideoSpec):
    """Yields (frame image, truth) for every frame of the video, in order."""
    script = Script(spec)
    scene = Scene(spec.width, spec.height, spec.seed, noise_sigma=7.0 if spec.low_light else 3.0, bars=spec.bars)
    for i in range(spec.n_frames):
        pose, effects, truth = script.state(i)
        img, (box,) = scene.render([(pose, script.look)], effects, i)
        if face_visible(box, truth.yaw_deg, spec.width, spec.height):
            truth = replace(truth, visible=True, box=clip_box(box, spec.width, spec.height))
        yield img, truth


def minute_rows(truths: list[FrameTruth], fps: float) -> list[list]:
    """One row per minute: the pain level holding most of the minute, and the share of sharp visible faces."""
    per_minute = max(1, int(round(60 * fps)))
    rows = []
    for m, start in enumerate(range(0, len(truths), per_minute)):
        chunk = truths[start:start + per_minute]
        levels = np.bincount([t.pain_level for t in chunk], minlength=3)
        sharp = sum(t.visible and t.blur_px < SHARP_BLUR_PX for t in chunk)
        rows.append([m, int(levels.argmax()), f"{sharp / len(chunk):.4f}", len(chunk)])
    return rows


def write_video(spec: VideoSpec, out: Path, progress: Callable[[int, int], None] | None = None,
                crf: int = 23) -> dict[str, Path]:
    """Renders the whole video to OUT (NAME.mp4) with NAME.truth.csv and NAME.minutes.csv beside it."""
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        out = out.with_suffix(".mp4")
    out.parent.mkdir(parents=True, exist_ok=True)
    truth_path = out.with_name(out.stem + ".truth.csv")
    minutes_path = out.with_name(out.stem + ".minutes.csv")
    writer = VideoWriter(out, spec.width, spec.height, spec.fps, crf=crf)
    truths = []
    try:
        for img, truth in render_frames(spec):
            writer.write(img)
            truths.append(truth)
            if progress:
                progress(len(truths), spec.n_frames)
    finally:
        writer.close()
    with open(truth_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRUTH_COLUMNS)
        w.writerows(truth_row(t) for t in truths)
    with open(minutes_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(MINUTE_COLUMNS)
        w.writerows(minute_rows(truths, spec.fps))
    return {"video": out, "truth": truth_path, "minutes": minutes_path}
