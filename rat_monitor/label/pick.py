"""Which frames of a video are worth a person's time: frames of every look the footage has (k-means on small
grey thumbnails of frames spread over the whole video, the frame nearest each cluster centre, as DeepLabCut's
k-means extraction does), and the frames the current detector is least sure about (a detection near its
threshold), where a label teaches it most."""

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


def pick(video: Path, n: int, detector, seed: int = 0) -> list[Picked]:
    """N frames of VIDEO: three quarters by k-means over the look of frames spread across it, a quarter where
    the detector is least sure (or more by k-means when it is sure everywhere). detector: an OnnxFaceDetector."""
    from sklearn.cluster import KMeans

    pool = candidates(video, min(max(3 * n, 30), 150))
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
    chosen: list[int] = []
    n_unsure = n // 4
    for k in np.argsort(-unsure, kind="stable")[:n_unsure]:
        if unsure[k] > 0:
            chosen.append(int(k))
    thumbs = np.stack([cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), THUMB, interpolation=cv2.INTER_AREA)
                       .ravel().astype(np.float32) / 255 for _, _, image in pool])
    rest = [k for k in range(len(pool)) if k not in chosen]
    clusters = min(n - len(chosen), len(rest))
    if clusters > 0:
        km = KMeans(n_clusters=clusters, n_init=4, random_state=seed).fit(thumbs[rest])
        for c in range(clusters):
            members = [rest[i] for i in np.flatnonzero(km.labels_ == c)]
            if members:
                nearest = min(members, key=lambda k: float(((thumbs[k] - km.cluster_centers_[c]) ** 2).sum()))
                chosen.append(nearest)
    out = []
    for k in sorted(set(chosen)):
        index, t_s, image = pool[k]
        sure = found[k].scores >= threshold
        out.append(Picked(index, t_s, image, found[k].boxes[sure]))
    return out
