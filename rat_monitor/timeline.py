"""Per-minute aggregation of scored frames, causal smoothing across minutes, and the humane-endpoint alert.

A minute without scored frames is 'unknown': nothing is imputed, and the smoothed value is left empty.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from .types import MinuteSummary, ScoredFrame


@dataclass
class AlertRule:
    threshold: float = 0.7  # smoothed P(pain) at or above this ...
    minutes: int = 3  # ... for this many consecutive known minutes raises an alert
    clear_below: float = 0.5  # hysteresis: the alert clears when the smoothed value drops below this


def iso_time(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).astimezone().isoformat(timespec="seconds")


class Timeline:
    """Feed frames in time order; closed minutes come back as MinuteSummary rows."""

    def __init__(self, start_time: float | None = None, ema_alpha: float = 0.5, rule: AlertRule | None = None):
        self.start_time = start_time  # epoch seconds of t_s = 0, when known
        self.ema_alpha = ema_alpha
        self.rule = rule or AlertRule()
        self._current: MinuteSummary | None = None
        self._probs: dict[int, list[np.ndarray]] = {}  # minute -> P(none, moderate, severe) of its scored frames
        self._smoothed: float | None = None
        self._run = 0  # consecutive known minutes at or above the threshold
        self._alert_on = False
        self.rows: list[MinuteSummary] = []

    def _open(self, minute: int) -> MinuteSummary:
        start = None if self.start_time is None else self.start_time + minute * 60
        return MinuteSummary(minute=minute, start_s=minute * 60.0, end_s=(minute + 1) * 60.0,
                             start_time=iso_time(start))

    def add_frame(self, t_s: float, has_face: bool, dropped_before: int = 0) -> list[MinuteSummary]:
        """Counts one delivered frame (and the frames dropped just before it); returns minutes it closed."""
        minute = int(t_s // 60)
        closed = []
        if self._current is None:
            self._current = self._open(minute)
        while minute > self._current.minute:  # minutes with no frames at all (a gap) are closed too
            next_minute = self._current.minute + 1
            closed.append(self._close())
            self._current = self._open(next_minute)
        m = self._current
        m.frames += 1
        m.dropped_frames += dropped_before
        m.face_frames += int(has_face)
        return closed

    def add_scored(self, scored: list[ScoredFrame]) -> None:
        """Scored frames belong to the minute of their own time; the pipeline adds them before that minute
        closes (selection windows divide minutes)."""
        for s in scored:
            self._probs.setdefault(int(s.candidate.t_s // 60), []).append(s.prediction.probs)

    def finish(self, end_s: float | None = None) -> list[MinuteSummary]:
        """Closes the partial last minute (its end_s becomes the actual end)."""
        if self._current is None:
            return []
        if end_s is not None:
            self._current.end_s = max(self._current.start_s, min(self._current.end_s, end_s))
        return [self._close()]

    def _close(self) -> MinuteSummary:
        m = self._current
        scored = self._probs.pop(m.minute, [])
        m.scored_frames = len(scored)
        if scored:
            probs = np.mean(scored, axis=0)
            m.pain_prob = float(1.0 - probs[0])
            m.pain_score = float(probs[1] + 2 * probs[2])
            if m.pain_prob < 0.5:
                m.pain_level = "none"
            else:
                m.pain_level = "severe" if probs[2] > probs[1] else "moderate"
            self._smoothed = m.pain_prob if self._smoothed is None else (
                self.ema_alpha * m.pain_prob + (1 - self.ema_alpha) * self._smoothed)
            m.pain_prob_smoothed = self._smoothed
            self._run = self._run + 1 if self._smoothed >= self.rule.threshold else 0
            if not self._alert_on and self._run >= self.rule.minutes:
                self._alert_on = True
                m.extra["alert_event"] = "raised"
            elif self._alert_on and self._smoothed < self.rule.clear_below:
                self._alert_on = False
                m.extra["alert_event"] = "cleared"
        m.alert = int(self._alert_on)
        self.rows.append(m)
        return m
