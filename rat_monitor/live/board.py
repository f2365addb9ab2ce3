"""What the live page shows of each source, kept up to date by the pipelines (one observer per source) and read by
the server's threads: state, frame rate, dropped frames, the current minute, the timeline so far, the last
scored crops and a snapshot of the latest frame with its face boxes. Snapshots are drawn at most a few times
a second and only while somebody looks (a request in the last few seconds), so the page costs the analysis
next to nothing."""

from __future__ import annotations

import base64
import threading
import time
from collections import deque

import cv2

from ..overlay import caption, draw_boxes
from ..pipeline import MAX_ANIMALS, Observer
from ..sinks.files import timeline_columns, timeline_row
from ..types import FaceTrack, Frame, MinuteSummary, ScoredFrame

SNAPSHOT_EVERY_S = 0.4  # at most 2.5 pictures a second per source
SNAPSHOT_WIDTH = 640
WATCHED_FOR_S = 5.0  # draw only while the page asked within this many seconds
LAST_CROPS = 6


class SourceBoard(Observer):
    """One source's live state; the pipeline's observer for it."""

    def __init__(self, name: str, source, action_units: bool, models: list[str] | None = None):
        self.name = name
        self.models = list(models or [])  # how far each model was checked, one line each (models.validation_status)
        self.source = source  # its state (live, reconnecting, lost, ended) and outages
        self.action_units = action_units
        self._lock = threading.Lock()
        self.frames = 0
        self.dropped = 0
        self.fps = 0.0
        self.t_s = 0.0
        self.rows: list[dict] = []
        self.crops: deque = deque(maxlen=LAST_CROPS)
        self.snapshot: bytes | None = None
        self._snapshot_at = 0.0
        self.watched_at = 0.0  # when the page last asked for a picture

    # -- the pipeline's side ------------------------------------------------------------------------------
    def frame(self, index: int, t_s: float, n_faces: int, stats: dict) -> None:
        with self._lock:
            self.frames, self.fps, self.t_s, self.dropped = stats["frames"], stats["fps"], t_s, stats["dropped"]

    def view(self, frame: Frame, tracks: list[FaceTrack], quality: dict[int, float],
             animals: dict[int, str] | None = None) -> None:
        now = time.monotonic()
        if now - self._snapshot_at < SNAPSHOT_EVERY_S or now - self.watched_at > WATCHED_FOR_S:
            return
        self._snapshot_at = now
        h, w = frame.image.shape[:2]
        scale = min(1.0, SNAPSHOT_WIDTH / w)
        img = cv2.resize(frame.image, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        who = animals or {}  # several animals: whose face each box is ("?" while not sure)
        draw_boxes(img, [(t.box * scale, (f"{who[t.track_id]} " if t.track_id in who else "")
                          + f"face {t.score:.2f}" + (f" q {quality[t.track_id]:.2f}" if t.track_id in quality else ""))
                         for t in tracks])
        caption(img, f"{self.name}  {int(frame.t_s // 60)}:{frame.t_s % 60:04.1f}", img.shape[0] - 8)
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 70])
        if ok:
            self.snapshot = jpeg.tobytes()

    def scored(self, frames: list[ScoredFrame]) -> None:
        for s in frames:
            p = s.prediction
            image = s.jpeg or cv2.imencode(".jpg", s.candidate.crop)[1].tobytes()
            crop = {"t_s": round(s.candidate.t_s, 1), "refused": bool(p.refused),
                    "pain_prob": None if p.refused else round(float(p.pain_prob), 3),
                    "aus": None if p.refused or p.au_values is None else
                    {k: round(v, 2) for k, v in p.au_values.items()},
                    "image": "data:image/jpeg;base64," + base64.b64encode(image).decode()}
            with self._lock:
                self.crops.appendleft(crop)

    def minute(self, row: MinuteSummary) -> None:
        several = bool(row.animal)  # a run of several animals: the row says whose minute it is
        values = dict(zip(timeline_columns(self.action_units, several), timeline_row(row, self.action_units)))
        with self._lock:
            self.rows.append({k: str(v) for k, v in values.items()})

    # -- the server's side --------------------------------------------------------------------------------
    def summary(self) -> dict:
        with self._lock:
            last = self.rows[-1] if self.rows else None
            latest = {r.get("animal", ""): r for r in self.rows[-MAX_ANIMALS:] if r["minute"] == last["minute"]} \
                if last else {}  # each animal's last minute (one animal: the last row)
            alerting = [{k: r.get(k, "") for k in ("animal", "minute", "pain_prob_smoothed")}
                        for r in latest.values() if r.get("alert") == "1"]
            return {"name": self.name, "state": getattr(self.source, "state", "live"), "fps": round(self.fps, 1),
                    "frames": self.frames, "dropped": self.dropped, "minute": int(self.t_s // 60),
                    "seconds_into_minute": round(self.t_s % 60, 1),
                    "alert": bool(alerting), "alerting": alerting,
                    "last_minute": last and {k: last[k] for k in ("minute", "pain_level", "pain_prob",
                                                                  "pain_prob_smoothed", "status", "alert")},
                    "crops": list(self.crops), "models": self.models}

    def timeline(self) -> list[dict]:
        with self._lock:
            return list(self.rows)

    def picture(self) -> bytes | None:
        self.watched_at = time.monotonic()
        return self.snapshot


class LiveBoard:
    """All sources of one watch, by name."""

    def __init__(self, models: list[str] | None = None):
        self.sources: dict[str, SourceBoard] = {}
        self.models = models  # every source of one watch runs the same models

    def add(self, name: str, source, action_units: bool) -> SourceBoard:
        board = SourceBoard(name, source, action_units, self.models)
        self.sources[name] = board
        return board
