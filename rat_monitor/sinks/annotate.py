"""annotated.mp4: the video as the tool saw it, for checking by eye (what DeepLabCut's labelled videos give).

Frames at reduced size and about 10 per second (every k-th frame; what matters for checking is visible at that
rate, and it keeps the cost under a fifth of the analysis) with the tracked face boxes and their detector
confidence; a scored frame is marked with its P(pain) (or 'refused') on the written frame that shows it or
follows it; the last closed minute's level is written along the bottom. A frame is only known to be selected
once its selection window has closed, so frames are held back until then (one window of small frames).
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from ..encode import VideoWriter
from ..overlay import caption, draw_boxes
from ..types import FaceTrack, MinuteSummary, ScoredFrame

MAX_WIDTH = 480  # annotated frames are at most this wide: for looking, not for analysis
TARGET_FPS = 10.0


class Annotator:
    def __init__(self, path: Path, width: int, height: int, fps: float, window_s: float):
        self.scale = min(1.0, MAX_WIDTH / max(1, width))
        self.size = (max(2, int(width * self.scale) // 2 * 2), max(2, int(height * self.scale) // 2 * 2))
        self.window_s = window_s
        self.step = max(1, round(fps / TARGET_FPS))  # write every step-th frame
        self.path = Path(path)
        self._writer = VideoWriter(self.path, *self.size, fps / self.step, crf=30, preset="ultrafast")
        self._pending: deque = deque()  # (frame index, t_s, small image, [(box, confidence)])
        self._marks: dict[int, str] = {}  # frame index -> what its score was
        self._minute = ""
        self._minutes: dict[str, str] = {}  # animal ("" with one) -> its last minute, in words
        self.frames = 0

    def frame(self, index: int, t_s: float, image: np.ndarray, tracks: list[FaceTrack],
              animals: dict[int, str] | None = None) -> None:
        """animals: with several animals, whose face each track is ("?" while not sure), by track id."""
        if index % self.step == 0:
            small = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
            if small.ndim == 2:
                small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
            who = animals or {}
            labelled = [(t.box * self.scale, f"{who[t.track_id]} {t.score:.2f}" if t.track_id in who
                         else f"{t.score:.2f}") for t in tracks]
            self._pending.append((index, t_s, small, labelled))
        closed_before = math.floor(t_s / self.window_s) * self.window_s  # every window ending here is scored
        while self._pending and self._pending[0][1] < closed_before:
            self._write(*self._pending.popleft())

    def scored(self, scored: list[ScoredFrame]) -> None:
        for s in scored:
            p = s.prediction
            self._marks[s.candidate.frame] = "refused" if p.refused else f"P(pain) {p.pain_prob:.2f}"

    def minute(self, row: MinuteSummary) -> None:
        value = f" (P {row.pain_prob:.2f})" if row.pain_prob is not None else ""
        who = f"{row.animal}: " if row.animal else ""
        self._minutes[row.animal] = f"{who}{row.pain_level}{value}{'  ALERT' if row.alert else ''}"
        self._minute = f"last minute ({row.minute}): " + "; ".join(self._minutes.values())

    def close(self) -> int:
        """Writes the frames still held and closes the file; returns the number of frames written."""
        while self._pending:
            self._write(*self._pending.popleft())
        self._writer.close()
        return self.frames

    def _write(self, index: int, t_s: float, img: np.ndarray, boxes: list) -> None:
        shown = sorted(k for k in self._marks if k <= index)  # scored on this frame or on skipped ones before it
        mark = ", ".join(self._marks.pop(k) for k in shown) or None
        draw_boxes(img, boxes, highlight=bool(mark))
        caption(img, f"{int(t_s // 60)}:{t_s % 60:05.2f}  frame {index}" + (f"  SCORED {mark}" if mark else ""), 14)
        if self._minute:
            caption(img, self._minute, img.shape[0] - 6)
        self._writer.write(img)
        self.frames += 1

