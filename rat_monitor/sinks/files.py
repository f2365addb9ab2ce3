"""The run folder: timeline.csv (a row per minute, flushed as each closes), frames.csv (a row per scored
frame), crops/ (the scored face crops, for audit), alerts.jsonl, and run.json (written atomically)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import cv2

from ..errors import ConfigError
from ..models import atomic_write_text
from ..types import MinuteSummary, ScoredFrame

TIMELINE_COLUMNS = ["minute", "start_s", "end_s", "start_time", "frames", "dropped_frames", "face_frames",
                    "scored_frames", "pain_prob", "pain_score", "pain_prob_smoothed", "pain_level", "alert", "status",
                    "pain_prob_low", "pain_prob_high", "smoothed_low", "smoothed_high", "share_none",
                    "share_moderate", "share_severe"]
FRAME_COLUMNS = ["frame", "t_s", "x0", "y0", "x1", "y1", "sharpness", "quality", "p_none", "p_moderate", "p_severe",
                 "model", "pain_prob", "track_id", "motion", "confidence", "size_px", "pose_weight", "exposure", "crop"]
RUN_FILES = ("timeline.csv", "frames.csv", "run.json", "alerts.jsonl")


def _num(v, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def prepare_run_dir(path: Path, overwrite: bool = False) -> Path:
    """Creates the run folder; refuses to mix with an earlier run unless overwrite is set."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"output folder {path} is not writable")
    existing = [f for f in RUN_FILES if (path / f).exists()]
    if existing and not overwrite:
        raise ConfigError(f"{path} already holds a run ({', '.join(existing)}); choose another --out or add --overwrite")
    for f in existing:
        (path / f).unlink()
    return path


class RunWriter:
    """Appends rows as they are produced and flushes them, so a crash loses at most the current minute."""

    def __init__(self, run_dir: Path, save_crops: bool = True):
        self.dir = Path(run_dir)
        self.save_crops = save_crops
        if save_crops:
            (self.dir / "crops").mkdir(exist_ok=True)
        self._timeline = open(self.dir / "timeline.csv", "w", newline="")
        self._frames = open(self.dir / "frames.csv", "w", newline="")
        self._tw = csv.writer(self._timeline)
        self._fw = csv.writer(self._frames)
        self._tw.writerow(TIMELINE_COLUMNS)
        self._fw.writerow(FRAME_COLUMNS)
        self._sync(self._timeline)
        self._sync(self._frames)
        self._alerts = None

    @staticmethod
    def _sync(f) -> None:
        f.flush()
        os.fsync(f.fileno())

    def minute(self, m: MinuteSummary) -> None:
        self._tw.writerow(timeline_row(m))
        self._sync(self._timeline)
        event = m.extra.get("alert_event")
        if event:
            if self._alerts is None:
                self._alerts = open(self.dir / "alerts.jsonl", "a")
            self._alerts.write(json.dumps(alert_record(m, event)) + "\n")
            self._sync(self._alerts)

    def rewrite_timeline(self, rows: list[MinuteSummary]) -> None:
        """Replaces timeline.csv and alerts.jsonl as a whole (atomically), e.g. after centred smoothing of an
        archive: until then the rows written minute by minute stand."""
        lines = [TIMELINE_COLUMNS] + [timeline_row(m) for m in rows]
        atomic_write_text(self.dir / "timeline.csv", _csv_text(lines))
        events = [json.dumps(alert_record(m, m.extra["alert_event"])) for m in rows if m.extra.get("alert_event")]
        if events or (self.dir / "alerts.jsonl").exists():
            if self._alerts is not None:
                self._alerts.close()
                self._alerts = None
            atomic_write_text(self.dir / "alerts.jsonl", "".join(e + "\n" for e in events))

    def scored(self, frames: list[ScoredFrame]) -> None:
        for s in frames:
            c, p, q = s.candidate, s.prediction, s.candidate.quality
            crop_name = ""
            if self.save_crops:
                crop_name = f"crops/f{c.frame:07d}_r{c.track_id}.jpg"
                cv2.imwrite(str(self.dir / crop_name), c.crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
            probs = [_num(v) for v in p.probs] if not p.binary else [_num(p.probs[0]), "", ""]
            self._fw.writerow([c.frame, f"{c.t_s:.3f}", *(f"{v:.1f}" for v in c.box), _num(q.sharpness),
                               _num(q.score), *probs, p.model, _num(p.pain_prob), c.track_id, _num(q.motion),
                               _num(q.confidence), f"{q.size_px:.1f}", _num(q.pose_weight, 2), _num(q.exposure, 3),
                               crop_name])
        if frames:
            self._frames.flush()

    def close(self, run_info: dict) -> None:
        for f in (self._timeline, self._frames, self._alerts):
            if f is not None and not f.closed:
                self._sync(f)
                f.close()
        atomic_write_text(self.dir / "run.json", json.dumps(run_info, indent=2, default=str) + "\n")


def timeline_row(m: MinuteSummary) -> list:
    return [m.minute, f"{m.start_s:.3f}", f"{m.end_s:.3f}", m.start_time, m.frames, m.dropped_frames, m.face_frames,
            m.scored_frames, _num(m.pain_prob), _num(m.pain_score), _num(m.pain_prob_smoothed), m.pain_level, m.alert,
            m.status, _num(m.pain_prob_low), _num(m.pain_prob_high), _num(m.smoothed_low), _num(m.smoothed_high),
            _num(m.share_none, 3), _num(m.share_moderate, 3), _num(m.share_severe, 3)]


def _csv_text(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def alert_record(m: MinuteSummary, event: str) -> dict:
    return {"event": event, "minute": m.minute, "start_s": m.start_s, "start_time": m.start_time,
            "pain_prob_smoothed": m.pain_prob_smoothed, "pain_prob": m.pain_prob}
