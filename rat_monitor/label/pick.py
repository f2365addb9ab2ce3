"""Which frames of a video are worth a person's time: frames from every part of the footage, each the least
like those already chosen (grey thumbnails), and the frames the current detector is least sure about (a
detection near its threshold), where a label teaches it most. Spreading over time comes first: a k-means over
the whole video (DeepLabCut's extraction) put 11 of 12 picks of a 6-s clip into its last 3 s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..sources import CaptureSource

THUMB = (32, 18)  # thumbnail size for clustering: the layout of a frame, not its detail
UNSURE_FLOOR = 0.1  # detections scored below this are noise, not doubt


@dataclass
class Picked:
    index: int
    t_s: float
    image: np.ndarray
    boxes: np.ndarray  # the detector's boxes at its own threshold: the suggestions shown to the person


def candidates(video: Path, count: int) -> list[tuple[int, float, np.ndarray]]:
    """COUNT frames spread evenly over the video (or all, when it has fewer), decoded in one pass."""
    out = []
    with CaptureSource(video=video) as source:
        total = source.info.frame_count or int((source.info.duration_s or 0) * source.info.fps) or count
        step = max(1, total // count)
        for f in source:
            if f.index % step == 0:
                out.append((f.index, f.t_s, f.image))
                if len(out) == count:
                    break
    return out


def pick(video: Path, n: int, detector, taken: set[int] = frozenset()) -> list[Picked]:
    """N frames of VIDEO, spread over all of it first: the video is cut into N equal stretches and each gives
    one frame. A quarter of the stretches give the frame the detector is least sure about (a detection near
    its threshold), the others the frame that looks least like those chosen so far (farthest in grey
    thumbnails), so a long still stretch never takes most of the picks (deterministic). detector: an
    OnnxFaceDetector. TAKEN: frame indices already in the project, never picked again (and looked past: the
    candidates are drawn from as many more frames)."""
    pool = [c for c in candidates(video, min(max(3 * n, 30), 150) + len(taken)) if c[0] not in taken]
    if not pool:
        return []
    n = min(n, len(pool))
    threshold = detector.threshold
    detector.threshold = UNSURE_FLOOR  # see the doubtful detections too, then keep the sure ones as suggestions
    try:
        found = [detector.detect(image) for _, _, image in pool]
    finally:
        detector.threshold = threshold
    # how unsure: 1 for a detection right at the threshold, falling to 0 at the floor or at certainty
    unsure = np.array([max((1 - abs(s - threshold) / max(threshold - UNSURE_FLOOR, 1 - threshold)
                            for s in d.scores), default=0.0) for d in found])
    thumbs = np.stack([cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), THUMB, interpolation=cv2.INTER_AREA)
                       .ravel().astype(np.float32) / 255 for _, _, image in pool])
    stretches = [list(part) for part in np.array_split(np.arange(len(pool)), n)]
    chosen: dict[int, int] = {}  # stretch -> pool index
    best_unsure = sorted(range(n), key=lambda s: -max(unsure[k] for k in stretches[s]))
    for s in best_unsure[:n // 4]:
        k = max(stretches[s], key=lambda k: unsure[k])
        if unsure[k] > 0:
            chosen[s] = k
    for s in range(n):  # in time order: each stretch adds its frame least like those already chosen
        if s in chosen:
            continue
        if not chosen:
            chosen[s] = stretches[s][len(stretches[s]) // 2]
            continue
        picked = thumbs[list(chosen.values())]
        chosen[s] = max(stretches[s], key=lambda k: float(((picked - thumbs[k]) ** 2).sum(axis=1).min()))
    out = []
    for k in sorted(chosen.values()):
        index, t_s, image = pool[k]
        sure = found[k].scores >= threshold
        out.append(Picked(index, t_s, image, found[k].boxes[sure]))
    return out
