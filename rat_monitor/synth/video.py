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


HIDDEN_SHARE = 0.3  # a face with more than this share of its box behind a nearer rat's head is not visible


def _hidden_share(box, nearer: list) -> float:
    """The share of a face box covered by the heads in front of it (their face boxes grown by a quarter on
    each side: the head is larger than the face)."""
    x0, y0, x1, y1 = box
    area = max(1e-6, (x1 - x0) * (y1 - y0))
    covered = 0.0
    for a0, b0, a1, b1 in nearer:
        gx, gy = 0.25 * (a1 - a0), 0.25 * (b1 - b0)
        ix = max(0.0, min(x1, a1 + gx) - max(x0, a0 - gx)) * max(0.0, min(y1, b1 + gy) - max(y0, b0 - gy))
        covered += ix / area
    return min(1.0, covered)


def render_cage(spec: VideoSpec):
    """Yields (frame image, [truth of each rat]) for every frame of the video, in order. Rats are drawn from
    the back (rat 1) to the front; a face mostly behind a nearer rat's head is not visible."""
    scripts = [Script(spec, animal) for animal in range(spec.rats)]
    scene = Scene(spec.width, spec.height, spec.seed, noise_sigma=7.0 if spec.low_light else 3.0, bars=spec.bars)
    for i in range(spec.n_frames):
        states = [s.state(i) for s in scripts]
        effects = states[0][1]  # the camera's light and focus follow rat 1's script; each rat blurs by its own motion
        img, boxes = scene.render([(pose, s.look) for s, (pose, _, _) in zip(scripts, states)], effects, i,
                                  motions=[e.motion_px for _, e, _ in states])
        truths = []
        for k, ((_, _, truth), box) in enumerate(zip(states, boxes)):
            if face_visible(box, truth.yaw_deg, spec.width, spec.height) and \
                    _hidden_share(box, boxes[k + 1:]) <= HIDDEN_SHARE:
                truth = replace(truth, visible=True, box=clip_box(box, spec.width, spec.height))
            truths.append(truth)
        yield img, truths


def render_frames(spec: VideoSpec):
    """Yields (frame image, truth) for every frame of a one-rat video, in order."""
    for img, (truth,) in render_cage(replace(spec, rats=1)):
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
    per_rat: list[list[FrameTruth]] = [[] for _ in range(spec.rats)]
    try:
        for img, truths in render_cage(spec):
            writer.write(img)
            for rows, truth in zip(per_rat, truths):
                rows.append(truth)
            if progress:
                progress(len(per_rat[0]), spec.n_frames)
    finally:
        writer.close()
    # One rat: the files as they always were. Several: an `animal` column (1, 2, ...) first, a row per animal.
    several = spec.rats > 1
    animal = (lambda k: [k + 1]) if several else (lambda k: [])
    with open(truth_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["animal"] * several + TRUTH_COLUMNS)
        for i in range(spec.n_frames):
            w.writerows(animal(k) + truth_row(rows[i]) for k, rows in enumerate(per_rat))
    with open(minutes_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["animal"] * several + MINUTE_COLUMNS)
        by_rat = [minute_rows(rows, spec.fps) for rows in per_rat]
        for m in range(len(by_rat[0])):
            w.writerows(animal(k) + rows[m] for k, rows in enumerate(by_rat))
    return {"video": out, "truth": truth_path, "minutes": minutes_path}
