"""The curation export: the best face frames per time window of each video, as crops (or full frames) with a
manifest whose label columns are left empty for annotators. Once filled in, the folder is a training dataset.

Blind mode renames the files with random ids, shuffles the rows and keeps time, source and box in a separate
key file, so annotators score without knowing time or treatment (as RGS scoring requires).
"""

from __future__ import annotations

import csv
import math
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .errors import ConfigError, DatasetError
from .tables import read_rows
from .pipeline import FaceFinder, Settings
from .sources import CaptureSource
from .types import Candidate

LABEL_COLUMNS = ["label", "orbital", "nose", "ears", "whiskers"]
QUALITY_COLUMNS = ["sharpness", "motion", "confidence", "size_px", "pose_weight", "exposure", "quality"]
KEY_COLUMNS = ["path", "source", "frame", "t_s", "x0", "y0", "x1", "y1"]
MANIFEST_COLUMNS = ["path", "subject", "source", "frame", "t_s", "x0", "y0", "x1", "y1", *QUALITY_COLUMNS,
                    *LABEL_COLUMNS]
BLIND_COLUMNS = ["path", "subject", *LABEL_COLUMNS]


def parse_duration(text: str) -> float:
    """'30s', '2m', '90' (seconds) -> seconds, more than 0 and at most a day ('nans', 'inf' and '-5s' are no
    durations: float() alone would take them)."""
    t = text.strip().lower()
    try:
        seconds = float(t[:-1]) * 60 if t.endswith("m") else float(t[:-1] if t.endswith("s") else t)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= 24 * 3600):
        raise ConfigError(f"bad duration {text!r}: write e.g. 30s, 2m or 45 (more than 0, at most 24 hours)")
    return seconds


def select_from_video(video: Path, detector, settings: Settings,
                      progress: Callable[[int, int | None], None] | None = None) -> list[Candidate]:
    """The selected face candidates of a whole video, window by window. progress(frames read, frames the file
    holds or None when its header does not say)."""
    finder = FaceFinder(detector, settings)
    chosen = []
    with CaptureSource(video=video) as source:
        for frame in source:
            _, closed = finder.step(frame)
            chosen += closed
            if progress and frame.index % 30 == 0:
                progress(frame.index, source.info.frame_count)
        chosen += finder.flush()
    return chosen


def subject_of(video: Path, subject: str | None = None, pattern: str | None = None) -> str:
    """The animal a video shows: SUBJECT for all videos, or the first group (else the whole match) of the regular
    expression PATTERN searched in the video's path (so day1.mp4 and day2.mp4 of rat 7 stay one animal), else
    the file name without its extension."""
    if subject is not None:
        if not subject.strip():
            raise ConfigError("--subject must not be empty")
        return subject.strip()
    if pattern is not None:
        try:
            match = re.search(pattern, str(video))
        except re.error as exc:
            raise ConfigError(f"--subject-from {pattern!r} is not a regular expression: {exc}") from None
        if match is None:
            raise ConfigError(f"--subject-from {pattern!r} does not match {video}")
        found = match.group(1) if match.groups() else match.group(0)
        if not found:
            raise ConfigError(f"--subject-from {pattern!r} matches an empty subject in {video}")
        return found
    return Path(video).stem


def export(videos: list[Path], out_dir: Path, detector, settings: Settings, blind: bool = False,
           full_frames: bool = False, seed: int | None = None, subject: str | None = None,
           subject_from: str | None = None, progress: Callable[[str, int, int | None], None] | None = None) -> dict:
    """Writes OUT/images/*.jpg and OUT/manifest.csv (plus OUT/key.csv when blind). Returns counts. The subject of
    each video: see subject_of (checked for every video before any work)."""
    subjects = {v: subject_of(v, subject, subject_from) for v in videos}
    out_dir = Path(out_dir)
    if (out_dir / "manifest.csv").exists():
        raise ConfigError(f"{out_dir} already holds a curation (manifest.csv); choose another --out")
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for video in videos:
        for cand, full in _selected_with_frames(video, detector, settings, full_frames, progress):
            q = cand.quality
            rows.append({
                "image": full if full_frames else cand.crop, "subject": subjects[video], "source": str(video),
                "frame": cand.frame, "t_s": f"{cand.t_s:.3f}", **dict(zip(("x0", "y0", "x1", "y1"),
                                                                             (f"{v:.1f}" for v in cand.box))),
                "sharpness": f"{q.sharpness:.4f}", "motion": f"{q.motion:.4f}", "confidence": f"{q.confidence:.4f}",
                "size_px": f"{q.size_px:.1f}", "pose_weight": f"{q.pose_weight:.2f}", "exposure": f"{q.exposure:.3f}",
                "quality": f"{q.score:.4f}", **{c: "" for c in LABEL_COLUMNS},
            })
    rng = np.random.default_rng(seed)
    if blind:
        rng.shuffle(rows)
    for r in rows:
        name = f"{secrets.token_hex(6)}.jpg" if blind else f"{Path(r['source']).stem}_f{r['frame']:07d}.jpg"
        r["path"] = f"images/{name}"
        cv2.imwrite(str(out_dir / r["path"]), r.pop("image"), [cv2.IMWRITE_JPEG_QUALITY, 95])
    contact_sheet([cv2.imread(str(out_dir / r["path"])) for r in rows],
                  [r["path"][7:19] if blind else f"{Path(r['source']).stem[:12]} {float(r['t_s']):.0f}s q{float(r['quality']):.2f}"
                   for r in rows], out_dir / "contact_sheet.png")
    if blind:
        # Annotators see only the picture; the subject is restored from the key afterwards.
        _write(out_dir / "manifest.csv", BLIND_COLUMNS, [{**r, "subject": ""} for r in rows])
        _write(out_dir / "key.csv", KEY_COLUMNS + ["subject"], rows)
    else:
        _write(out_dir / "manifest.csv", MANIFEST_COLUMNS, rows)
    return {"images": len(rows), "videos": len(videos), "blind": blind, "subjects": sorted(set(subjects.values()))}


def _selected_with_frames(video, detector, settings, full_frames, progress):
    """Selected candidates, with their full frames (read back by a second pass) when asked for."""
    selected = select_from_video(video, detector, settings,
                                 progress=(lambda i, n: progress(str(video), i, n)) if progress else None)
    if not full_frames:
        return [(c, None) for c in selected]
    wanted = {c.frame for c in selected}
    frames = {}
    with CaptureSource(video=video) as source:
        for frame in source:
            if frame.index in wanted:
                frames[frame.index] = frame.image
    return [(c, frames[c.frame]) for c in selected]


def contact_sheet(images: list[np.ndarray], captions: list[str], path: Path, cell: int = 128, columns: int = 8,
                  limit: int = 96) -> Path | None:
    """A grid of the selected faces with a caption under each, for a person to look over the selection."""
    images, captions = images[:limit], captions[:limit]
    if not images:
        return None
    rows = (len(images) + columns - 1) // columns
    sheet = np.full((rows * (cell + 18), columns * cell, 3), 255, np.uint8)
    for i, (img, cap) in enumerate(zip(images, captions)):
        y, x = (i // columns) * (cell + 18), (i % columns) * cell
        h, w = img.shape[:2]
        s = cell / max(h, w)
        small = cv2.resize(img, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
        sheet[y:y + small.shape[0], x:x + small.shape[1]] = small
        cv2.putText(sheet, cap, (x + 2, y + cell + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), sheet)
    return path


def _write(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def unblind(folder: Path) -> Path:
    """Joins a blind manifest (with the annotators' labels) to its key: writes manifest_unblinded.csv with
    subject, source, frame, time and box back in place. Returns its path."""
    folder = Path(folder)
    try:
        labelled = read_rows(folder / "manifest.csv")  # labelled in a spreadsheet: BOM, ';', CRLF are fine
        key = {r["path"]: r for r in read_rows(folder / "key.csv")}
    except FileNotFoundError as exc:
        raise DatasetError(f"cannot unblind {folder}: {Path(exc.filename).name} is missing") from None
    missing = [r["path"] for r in labelled if r["path"] not in key]
    if missing:
        raise DatasetError(f"{len(missing)} image(s) of the manifest are not in key.csv, e.g. {missing[0]}")
    rows = [{**key[r["path"]], **{c: r.get(c, "") for c in LABEL_COLUMNS}} for r in labelled]
    rows.sort(key=lambda r: (r["source"], int(r["frame"])))
    out = folder / "manifest_unblinded.csv"
    _write(out, ["path", "subject", "source", "frame", "t_s", "x0", "y0", "x1", "y1", *LABEL_COLUMNS], rows)
    return out
