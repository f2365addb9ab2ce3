"""Face tracking: one Kalman-filtered box per face, Hungarian assignment of detections to the tracks' predicted
boxes by IoU, prediction through frames the detector skips (update(None)), track births and deaths, and a pose
hint from the box shape. A track is a face followed while it stays in view; which animal it is, identity.py says."""

from __future__ import annotations

import numpy as np

from .imaging import iou
from .types import Detections, FaceTrack

# Box aspect (width / height) thresholds for the pose hint, measured on synthetic truth: frontal faces are
# narrow (ears above a pointed snout), profiles are wide (snout sideways).
FRONTAL_MAX_ASPECT = 1.0
THREE_QUARTER_MAX_ASPECT = 1.25


def pose_hint(box: np.ndarray) -> str:
    w, h = box[2] - box[0], box[3] - box[1]
    if h <= 0:
        return "unknown"
    a = w / h
    return "frontal" if a < FRONTAL_MAX_ASPECT else "three-quarter" if a < THREE_QUARTER_MAX_ASPECT else "profile"


class _Kalman:
    """Constant-velocity Kalman filter on (cx, cy, w, h)."""

    def __init__(self, box: np.ndarray):
        cx, cy, w, h = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]
        self.x = np.array([cx, cy, w, h, 0, 0, 0, 0], np.float64)
        size = max(w, h)
        self.P = np.diag([size * 0.1] * 4 + [size * 0.5] * 4) ** 2
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)
        self.H = np.eye(4, 8)

    def predict(self) -> None:
        size = max(self.x[2], self.x[3], 1.0)
        q = np.diag([0.02 * size] * 4 + [0.04 * size] * 4) ** 2
        self.x = self.F @ self.x
        self.x[2:4] = np.maximum(self.x[2:4], 1.0)
        self.P = self.F @ self.P @ self.F.T + q

    def update(self, box: np.ndarray) -> None:
        z = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]])
        size = max(z[2], z[3], 1.0)
        r = np.diag([0.05 * size] * 4) ** 2
        s = self.H @ self.P @ self.H.T + r
        k = self.P @ self.H.T @ np.linalg.inv(s)
        self.x = self.x + k @ (z - self.H @ self.x)
        self.P = (np.eye(8) - k @ self.H) @ self.P

    @property
    def box(self) -> np.ndarray:
        cx, cy, w, h = self.x[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    @property
    def speed(self) -> float:
        """Centre speed in box sizes per frame."""
        return float(np.hypot(self.x[4], self.x[5]) / max(self.x[2], self.x[3], 1.0))


def _most_overlap(overlap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Hungarian assignment of tracks (rows) to detections (columns) with the most overlap in total. One track
    and one detection (most frames of one rat) need no solver: SciPy's, whose import costs every run's start half a
    second, is loaded only when there is a choice to make."""
    if overlap.shape == (1, 1):
        return np.zeros(1, int), np.zeros(1, int)
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(overlap, maximize=True)


class _Track:
    def __init__(self, track_id: int, box: np.ndarray, score: float):
        self.id = track_id
        self.kf = _Kalman(box)
        self.score = score
        self.hits = 1
        self.age = 0
        self.misses = 0  # consecutive detector runs without a match
        self.detected = True


class Tracker:
    """Call update(detections) on frames where the detector ran, update(None) on frames it skipped."""

    def __init__(self, iou_threshold: float = 0.25, max_misses: int = 2, min_hits: int = 1, min_score: float = 0.4):
        self.iou_threshold = iou_threshold
        self.max_misses = max_misses
        self.min_hits = min_hits
        self.min_score = min_score
        self._tracks: list[_Track] = []
        self._next_id = 1

    def update(self, dets: Detections | None) -> list[FaceTrack]:
        for t in self._tracks:
            t.kf.predict()
            t.age += 1
            t.detected = False
        if dets is not None:
            self._associate(dets)
        return [FaceTrack(t.id, t.kf.box.astype(np.float32), t.score, pose_hint(t.kf.box), t.detected, t.age)
                for t in self._tracks if t.hits >= self.min_hits and t.misses == 0]

    def _associate(self, dets: Detections) -> None:
        boxes = dets.boxes
        matched_t, matched_d = set(), set()
        if self._tracks and len(dets):
            overlap = iou(np.stack([t.kf.box for t in self._tracks]), boxes)
            # Hungarian: the assignment with the most overlap in total. Where two faces pass close, the greedy
            # best-pair-first choice can hand one face's detection to the other's track.
            gated = np.where(overlap >= self.iou_threshold, overlap, 0.0)
            for ti, di in zip(*_most_overlap(gated)):
                if overlap[ti, di] < self.iou_threshold:
                    continue
                matched_t.add(ti)
                matched_d.add(di)
                t = self._tracks[ti]
                t.kf.update(boxes[di])
                t.score = float(dets.scores[di])
                t.hits += 1
                t.misses = 0
                t.detected = True
        for ti, t in enumerate(self._tracks):
            if ti not in matched_t:
                t.misses += 1
        self._tracks = [t for t in self._tracks if t.misses <= self.max_misses]
        for di in range(len(dets)):
            if di not in matched_d and dets.scores[di] >= self.min_score:
                self._tracks.append(_Track(self._next_id, boxes[di].astype(np.float64), float(dets.scores[di])))
                self._next_id += 1

    @property
    def max_speed(self) -> float:
        """The fastest track's speed in box sizes per frame (0 when nothing is tracked)."""
        return max((t.kf.speed for t in self._tracks), default=0.0)

    @property
    def boxes(self) -> list[np.ndarray]:
        """Every live track's box, matched or not (where the faces are to be looked for again)."""
        return [t.kf.box for t in self._tracks]

    @property
    def settled(self) -> bool:
        """Every track confirmed and matched at the detector's last run (and at least one): the faces are known."""
        return bool(self._tracks) and all(t.misses == 0 and t.hits >= self.min_hits for t in self._tracks)

    @property
    def lost(self) -> bool:
        """No confirmed, currently matched track: the detector should run on the next frame."""
        return not any(t.misses == 0 and t.hits >= self.min_hits for t in self._tracks)


class DetectionSchedule:
    """Runs the detector on every frame while something moves fast or nothing is tracked, and at least every
    STILL_EVERY_S seconds while the faces are still (the tracker carries them between runs). Seconds, not
    frames: a 10-fps and a 30-fps camera get the same check rate on a still face. A run searches the whole frame
    at least every WHOLE_EVERY_S seconds (new faces) and whenever a face was missed or nothing is tracked; in
    between, the regions around the tracked faces are enough (whole_due)."""

    def __init__(self, still_every_s: float, whole_every_s: float = 1.0, fast: float = 0.02):  # pipeline.Settings says
        self.still_every_s = still_every_s
        self.whole_every_s = whole_every_s
        self.fast = fast
        self._last_t: float | None = None
        self._last_whole_t: float | None = None

    def due(self, tracker: Tracker, t_s: float) -> bool:
        moving = tracker.lost or tracker.max_speed > self.fast
        # a millisecond of slack: frame times such as 6/30 s fall a hair below 0.2 in floating point
        if moving or self._last_t is None or t_s - self._last_t >= self.still_every_s - 1e-3 or t_s < self._last_t:
            self._last_t = t_s
            return True
        return False

    def whole_due(self, tracker: Tracker, t_s: float) -> bool:
        """Whether the run due now must search the whole frame rather than the tracked faces' regions."""
        last = self._last_whole_t
        if not tracker.settled or last is None or t_s < last or t_s - last >= self.whole_every_s - 1e-3:
            self._last_whole_t = t_s
            return True
        return False
