"""A labelling project in the formats the trainers read: YOLO folders for `detector train --yolo` (the labelled
frames, and the no-face frames as negatives) and a crop manifest for `train` / `evaluate` (the raters'
consensus per crop, the rat id as subject)."""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

from ..detect.train import yolo_text
from ..errors import ConfigError
from ..models import atomic_write_text
from ..types import ACTION_UNITS
from .project import LEVELS, Project


def export_yolo(project: Project, out: Path, frame_ids: list[str] | None = None) -> dict:
    """OUT/images/<id>.jpg and OUT/labels/<id>.txt ('0 cx cy w h' per box, normalised; empty for a frame
    without a face) for every frame a person has decided (or the FRAME_IDS given), and OUT/negatives/<id>.txt
    (the same format) for the proposals the person turned down on it. A frame whose picture is missing is left
    out (Project.damaged names it). Returns counts."""
    out = Path(out)
    for folder in ("images", "labels", "negatives"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    counts = {"frames": 0, "boxes": 0, "no_face": 0, "turned_down": 0}
    for frame in project.frames():
        if frame["status"] == "unlabelled" or (frame_ids is not None and frame["id"] not in frame_ids):
            continue
        w, h = frame["width"], frame["height"]
        if not project.has_picture(frame["id"]):
            continue
        shutil.copyfile(project.frame_image(frame["id"]), out / "images" / f"{frame['id']}.jpg")
        for folder, boxes in (("labels", frame["boxes"]), ("negatives", frame["rejected"])):
            if boxes or folder == "labels":
                atomic_write_text(out / folder / f"{frame['id']}.txt", yolo_text(boxes, w, h))
        counts["frames"] += 1
        counts["boxes"] += len(frame["boxes"])
        counts["turned_down"] += len(frame["rejected"])
        counts["no_face"] += frame["status"] == "no_face"
    if not counts["frames"]:
        raise ConfigError(f"{project.root}: no frame is labelled yet (label some on the boxes page first)")
    return counts


def import_curated(project: Project, folder: Path) -> int:
    """The crops of a `curate` folder (manifest.csv, with key.csv when it was made blind) into the project's
    scoring queue, each with its animal. Returns how many were new."""
    from ..tables import read_rows

    folder = Path(folder)
    if not (folder / "manifest.csv").is_file():
        raise ConfigError(f"{folder} is not a curate folder (no manifest.csv)")
    rows = read_rows(folder / "manifest.csv", ConfigError)
    key = {r["path"]: r for r in read_rows(folder / "key.csv", ConfigError)} if (folder / "key.csv").exists() else {}
    added = 0
    for row in rows:
        subject = row.get("subject") or key.get(row["path"], {}).get("subject", "")
        if not subject:
            raise ConfigError(f"{folder}: no animal for {row['path']} (neither in manifest.csv nor in key.csv)")
        added += project.add_crop(folder / row["path"], subject, str(folder)) is not None
    return added


def export_manifest(project: Project, out_csv: Path) -> dict:
    """A manifest (path, subject, label, orbital, nose, ears, whiskers) of every crop with a usable consensus
    score, paths relative to the manifest's folder. Returns counts."""
    rows = project.consensus()
    if not rows:
        raise ConfigError(f"{project.root}: no crop is scored yet (score some on the scoring page first)")
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "subject", "label", *ACTION_UNITS, "raters"])
    for r in rows:
        path = os.path.relpath(project.crop_image(r["crop"]).resolve(), out_csv.parent.resolve())
        writer.writerow([path, r["subject"], LEVELS[r["level"]], *(r[au] for au in ACTION_UNITS), r["raters"]])
    atomic_write_text(out_csv, buf.getvalue())
    return {"crops": len(rows), "animals": len({r["subject"] for r in rows})}
