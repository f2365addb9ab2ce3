"""Face quality (sharpness, motion, confidence, size, pose, exposure) and per-window selection of the few
best frames, as grimace scorers do: a handful of clear, sharp face frames per time window, never every frame.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from .imaging import downscale, square_crop, to_grey
from .types import Candidate, FaceTrack, Quality

POSE_WEIGHT = {"frontal": 1.0, "three-quarter": 0.9, "profile": 0.6, "unknown": 0.7}
SHARPNESS_SIZE = 96  # crops are compared at one size so sharpness does not depend on how big the face is
SHARPNESS_HALF = 0.05  # normalised sharpness at which the sharpness term is 0.5
MOTION_SCALE = 0.04  # mean absolute difference (0..1) at which the motion term falls to 1/e
MIN_FACE_PX = 40.0


def sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian of the crop at a fixed size, divided by the crop's own variance: a focus
    measure that does not change with face size or contrast (lighting)."""
    g = cv2.resize(grey, (SHARPNESS_SIZE, SHARPNESS_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    lap = cv2.Laplacian(g, cv2.CV_32F, ksize=3)
    return float(lap.var() / (g.var() + 25.0))


def exposure(grey: np.ndarray) -> float:
    """1 when the crop's mean brightness is comfortably inside the range, falling to 0 when black or blown out."""
    m = float(grey.mean()) / 255.0
    return float(np.clip(min(m, 1.0 - m) / 0.15, 0.0, 1.0))


class QualityScorer:
    """Scores tracked faces frame by frame (it keeps the previous frame for the motion measure)."""

    def __init__(self, crop_size: int = 112):
        self.crop_size = crop_size
        self._prev: np.ndarray | None = None  # the previous frame, for the motion measure inside each box

    def _motion(self, image: np.ndarray, box: np.ndarray) -> float:
        """Mean absolute grey difference (0..1) inside the box between this frame and the previous one;
        computed on the box only, never on the whole frame."""
        if self._prev is None or self._prev.shape != image.shape:
            return 0.0
        h, w = image.shape[:2]
        x0, y0, x1, y1 = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1]).astype(int)
        if x1 <= x0 or y1 <= y0:
            return 0.0
        # shrunk first, then made grey (both average linearly, so the measure is the same to rounding): the grey
        # conversion of a whole large face box cost more than the shrinking (downscale: 0.025 ms a 1080p face box
        # against 0.17 for INTER_AREA at an uneven ratio)
        a = to_grey(downscale(image[y0:y1, x0:x1], 32, 32))
        b = to_grey(downscale(self._prev[y0:y1, x0:x1], 32, 32))
        return float(cv2.absdiff(a, b).mean() / 255.0)

    def score(self, image: np.ndarray, tracks: list[FaceTrack], frame: int, t_s: float) -> list[Candidate]:
        out = []
        for tr in tracks:
            crop = square_crop(image, tr.box)
            if crop.size == 0:
                continue
            crop = downscale(crop, self.crop_size, self.crop_size)  # 0.13 ms a 1080p face, INTER_AREA alone 0.45
            g = to_grey(crop)
            motion = self._motion(image, tr.box)
            sharp = sharpness(g)
            size = float(np.sqrt(max(tr.box[2] - tr.box[0], 0) * max(tr.box[3] - tr.box[1], 0)))
            q = Quality(sharpness=sharp, motion=motion, confidence=float(tr.score), size_px=size,
                        pose_weight=POSE_WEIGHT.get(tr.pose_hint, 0.7), exposure=exposure(g), score=0.0)
            out.append(Candidate(frame, t_s, tr.track_id, tr.box.copy(), crop, _combine(q)))
        self._prev = image
        return out


def _combine(q: Quality) -> Quality:
    sharp_term = q.sharpness / (q.sharpness + SHARPNESS_HALF)
    motion_term = float(np.exp(-q.motion / MOTION_SCALE))
    size_term = float(np.clip(q.size_px / MIN_FACE_PX, 0.0, 1.0))
    score = sharp_term * motion_term * q.confidence * q.pose_weight * q.exposure * size_term
    return Quality(q.sharpness, q.motion, q.confidence, q.size_px, q.pose_weight, q.exposure, float(score))


class FixtureFilter:
    """A fixed camera sees a face move: a box that has stayed put for a minute with nothing changing inside it
    (a food pellet, a marker, a screw head the detector takes for a face) is a fixture, and its crops are
    never scored. A head-fixed animal still blinks, breathes and whisks, so its box content changes and it is
    kept; a fixture that flickers is kept too (as before this filter: the familiarity check still guards)."""

    def __init__(self, still_s: float = 60.0, max_shift: float = 0.1, max_motion: float = 0.015):
        self.still_s, self.max_shift, self.max_motion = still_s, max_shift, max_motion
        self._first: dict[int, tuple[float, np.ndarray]] = {}
        self._moved: set[int] = set()
        self.fixtures: set[int] = set()  # track ids found to be fixtures

    def keep(self, candidates: list[Candidate]) -> list[Candidate]:
        out = []
        for c in candidates:
            t0, box0 = self._first.setdefault(c.track_id, (c.t_s, c.box.copy()))
            size = max(float(box0[2] - box0[0]), float(box0[3] - box0[1]), 1.0)
            centre_shift = np.hypot(*((c.box[:2] + c.box[2:]) / 2 - (box0[:2] + box0[2:]) / 2)) / size
            if centre_shift > self.max_shift or c.quality.motion > self.max_motion:
                self._moved.add(c.track_id)
            if c.track_id in self._moved or c.t_s - t0 < self.still_s:
                out.append(c)
            else:
                self.fixtures.add(c.track_id)
        return out


@dataclass
class SelectionSettings:
    window_s: float = 10.0
    per_window: int = 3
    floor: float = 0.25  # candidates below this combined quality are never scored
    min_gap_s: float = 1.0  # selected frames at least this far apart: no near-duplicates
    keep: int = 48  # best candidates kept in memory per window
    # A face this much less sharp than the sharp faces of the last HISTORY_S seconds is blurred (motion or
    # focus): not scored, even when it is its window's best. On synthetic video with truth, relative to the 90th
    # percentile: faces blurred by < 1 px lie above 0.72 (their 5th percentile), faces blurred by 1.5-3 px below
    # 0.61 (their 95th), more blurred ones below 0.37.
    blur_ratio: float = 0.65
    history_s: float = 60.0


class WindowSelector:
    """Collects candidates per time window; when a window closes, returns its top-k above the floor."""

    def __init__(self, settings: SelectionSettings | None = None):
        self.settings = settings or SelectionSettings()
        self._window: int | None = None
        self._pool: list[Candidate] = []
        self._recent: deque[tuple[float, float]] = deque()  # (t_s, sharpness) of the recent candidates

    def window_of(self, t_s: float) -> int:
        return int(t_s // self.settings.window_s)

    def add(self, candidates: list[Candidate]) -> None:
        s = self.settings
        for c in candidates:
            if c.quality.score < s.floor:
                continue
            self._pool.append(c)
            self._recent.append((c.t_s, c.quality.sharpness))
        if len(self._pool) > 2 * s.keep:
            self._pool.sort(key=lambda c: -c.quality.score)
            del self._pool[s.keep:]

    def advance(self, t_s: float) -> list[Candidate]:
        """Call before adding a frame at t_s: closes the current window if t_s lies beyond it."""
        w = self.window_of(t_s)
        if self._window is None:
            self._window = w
            return []
        if w == self._window:
            return []
        self._window = w
        return self._take()

    def flush(self) -> list[Candidate]:
        return self._take()

    def _sharp_enough(self) -> float:
        """The sharpness a face needs: BLUR_RATIO of the 90th percentile over the last HISTORY_S seconds. A face
        whose look changes for good (a lamp switched, a turn towards the camera) can fall below it until the
        history has moved on: its windows are then unscored, never scored blurred."""
        s = self.settings
        if not self._recent:
            return 0.0
        newest = self._recent[-1][0]
        while self._recent and self._recent[0][0] < newest - s.history_s:
            self._recent.popleft()
        return s.blur_ratio * float(np.percentile([v for _, v in self._recent], 90))

    def _take(self) -> list[Candidate]:
        s = self.settings
        chosen: list[Candidate] = []
        needed = self._sharp_enough()
        for c in sorted(self._pool, key=lambda c: -c.quality.score):
            if len(chosen) >= s.per_window:
                break
            if c.quality.sharpness < needed:
                continue
            if all(abs(c.t_s - o.t_s) >= s.min_gap_s for o in chosen):
                chosen.append(c)
        self._pool = []
        return sorted(chosen, key=lambda c: c.t_s)
