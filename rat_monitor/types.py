"""The small values that flow between the stages (see docs/DESIGN.md): one way, source to sinks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The four Rat Grimace Scale action units, in this order wherever they travel as an array.
ACTION_UNITS = ("orbital", "nose", "ears", "whiskers")
# Their output columns (expected AU score 0..2 each) and rgs, the mean of the four: the usual RGS score.
AU_FIELDS = tuple(f"au_{a}" for a in ACTION_UNITS) + ("rgs",)


def au_values(scores: np.ndarray) -> dict[str, float]:
    """Four AU scores (ACTION_UNITS order) -> AU_FIELDS: the four and rgs, their mean."""
    return dict(zip(AU_FIELDS, [float(v) for v in scores] + [float(np.mean(scores))]))


@dataclass(frozen=True)
class SourceInfo:
    """What a frame source knows about itself before the first frame."""

    name: str
    fps: float
    width: int
    height: int
    live: bool
    duration_s: float | None = None  # None when live
    frame_count: int | None = None
    start_time: float | None = None  # epoch seconds of the first frame, when known (live: wall clock)


@dataclass(frozen=True)
class Frame:
    index: int  # position in the source, counting dropped frames
    t_s: float  # media time for files, seconds since start for live sources
    image: np.ndarray  # BGR uint8
    wall_time: float | None = None  # epoch seconds when captured (live sources)
    dropped_before: int = 0  # frames dropped between the previous delivered frame and this one


@dataclass(frozen=True)
class Detections:
    """Faces found in one frame, as parallel arrays in full-frame pixel coordinates."""

    boxes: np.ndarray  # (N, 4) float32 x0, y0, x1, y1
    scores: np.ndarray  # (N,) float32

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, mask) -> Detections:
        return Detections(self.boxes[mask], self.scores[mask])


@dataclass(frozen=True)
class FaceTrack:
    track_id: int
    box: np.ndarray  # (4,) smoothed x0, y0, x1, y1
    score: float  # detector confidence of the last matched detection
    pose_hint: str  # frontal | three-quarter | profile | unknown
    detected: bool  # a detection was matched on this very frame (else predicted by the tracker)
    age: int  # frames since the track started


@dataclass(frozen=True)
class Quality:
    """Why a face crop is (or is not) worth scoring; each part is kept for audit."""

    sharpness: float  # normalised focus measure of the face crop
    motion: float  # mean absolute frame difference inside the box, 0..1
    confidence: float
    size_px: float
    pose_weight: float
    exposure: float  # 1 well exposed .. 0 black or blown out
    score: float  # the combined quality, 0..1


@dataclass(frozen=True)
class Candidate:
    """A tracked face on one frame, with its crop, waiting for selection."""

    frame: int
    t_s: float
    track_id: int
    box: np.ndarray
    crop: np.ndarray
    quality: Quality
    animal: int = 1  # which animal the face is (identity.py; 1 with one animal); 0: not sure, scored for none


@dataclass(frozen=True)
class Prediction:
    probs: np.ndarray  # (3,) P(none), P(moderate), P(severe); binary models put P(pain) in moderate
    model: str
    binary: bool
    aus: np.ndarray | None = None  # (4,) expected AU scores 0..2 (ACTION_UNITS order); None: no AU heads
    familiarity: float | None = None  # 0..1, how like the training faces; None: the model cannot tell
    refused: bool = False  # unlike the training faces: never a score, never counted in a minute

    @property
    def au_values(self) -> dict[str, float] | None:
        """AU_FIELDS -> value (the four AU scores and their mean, rgs), or None for a pain-only model."""
        return None if self.aus is None else au_values(self.aus)

    @property
    def pain_prob(self) -> float:
        return float(1.0 - self.probs[0])

    @property
    def pain_score(self) -> float:
        """Expected grimace level 0..2 (binary models count pain as moderate)."""
        return float(self.probs[1] + 2.0 * self.probs[2])


@dataclass(frozen=True)
class ScoredFrame:
    candidate: Candidate
    prediction: Prediction
    jpeg: bytes = b""  # the crop as scored and stored (imaging.as_stored); empty: the writer encodes it


@dataclass
class MinuteSummary:
    """One row of timeline.csv."""

    minute: int
    start_s: float
    end_s: float
    start_time: str = ""
    frames: int = 0
    dropped_frames: int = 0
    face_frames: int = 0
    scored_frames: int = 0
    pain_prob: float | None = None
    pain_score: float | None = None
    pain_prob_smoothed: float | None = None
    pain_level: str = "unknown"
    alert: int = 0
    status: str = "ok"
    pain_prob_low: float | None = None  # 95% interval of pain_prob
    pain_prob_high: float | None = None
    smoothed_low: float | None = None  # 95% interval of pain_prob_smoothed
    smoothed_high: float | None = None
    share_none: float | None = None  # share of scored frames whose most likely class is each level
    share_moderate: float | None = None
    share_severe: float | None = None
    action_units: dict[str, float] | None = None  # AU_FIELDS -> per-minute mean; None: unknown or no AU model
    refused_frames: int = 0  # selected crops refused as unfamiliar (not in scored_frames, not in any score)
    pain_sum: float = 0.0  # sum of the scored frames' P(pain): what smoothing pools across minutes
    alert_event: str = ""  # "raised" or "cleared" on the minute the alert changed, else empty
    alert_rule: str = ""  # the rules holding the alert on: "p_pain", "rgs" or "p_pain+rgs"; empty when off
    animal: str = ""  # whose minute (its name) with several animals; empty with one
