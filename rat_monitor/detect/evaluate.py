"""Detector evaluation: precision and recall at the detector's threshold, and AP at IoU 0.5 (all-point
interpolated), on a video with its NAME.truth.csv or on a YOLO folder."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..imaging import iou
from ..sources import CaptureSource
from .centernet import OnnxFaceDetector
from .train import yolo_samples

AP_THRESHOLD = 0.05  # detections down to this score feed the precision-recall curve
# Head turns between a clear profile and a clearly turned-away head are ambiguous: the truth calls a face
# visible up to |yaw| 95 deg, yet the far eye and the snout stay in view to about 125 deg. Frames in this band
# are left out of the headline figures (like the "don't care" regions of detection benchmarks); the strict
# figures over every frame are reported beside them.
AMBIGUOUS_YAW = (85.0, 120.0)


def truth_boxes(truth_csv: Path) -> tuple[dict[int, np.ndarray], set[int]]:
    """frame -> (N, 4) visible face boxes from a synthetic video's truth file, and the ambiguous frames."""
    if not truth_csv.exists():
        raise DatasetError(f"no truth file {truth_csv} beside the video")
    out: dict[int, list] = {}
    ambiguous = set()
    with open(truth_csv, newline="") as f:
        for row in csv.DictReader(f):
            frame = int(row["frame"])
            boxes = out.setdefault(frame, [])
            if row["visible"] == "1":
                boxes.append([float(row[k]) for k in ("x0", "y0", "x1", "y1")])
            if AMBIGUOUS_YAW[0] < abs(float(row["yaw_deg"])) <= AMBIGUOUS_YAW[1]:
                ambiguous.add(frame)
    return {k: np.array(v, np.float32).reshape(-1, 4) for k, v in out.items()}, ambiguous


def score_detections(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], threshold: float,
                     iou_min: float = 0.5) -> dict:
    """pairs: (det boxes, det scores, truth boxes) per image -> precision/recall at threshold and AP50."""
    scores, hits = [], []
    n_truth = 0
    for boxes, sc, gt in pairs:
        n_truth += len(gt)
        order = np.argsort(-sc)
        used = np.zeros(len(gt), bool)
        overlap = iou(boxes[order], gt) if len(gt) and len(boxes) else np.zeros((len(boxes), len(gt)))
        for k, i in enumerate(order):
            hit = False
            if len(gt):
                cand = np.where(~used, overlap[k], -1.0)
                j = int(np.argmax(cand))
                if cand[j] >= iou_min:
                    used[j] = True
                    hit = True
            scores.append(float(sc[i]))
            hits.append(hit)
    scores, hits = np.array(scores), np.array(hits, bool)
    order = np.argsort(-scores)
    tp = np.cumsum(hits[order])
    fp = np.cumsum(~hits[order])
    recall_curve = tp / max(n_truth, 1)
    precision_curve = tp / np.maximum(tp + fp, 1)
    # All-point interpolated AP (as in PASCAL VOC 2010+ and COCO's AP50).
    mrec = np.concatenate([[0.0], recall_curve, [1.0]])
    mpre = np.concatenate([[1.0], precision_curve, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    ap = float(np.sum((mrec[1:] - mrec[:-1]) * mpre[1:]))
    at = scores >= threshold
    tp_at, fp_at = int(hits[at].sum()), int((~hits[at]).sum())
    return {"precision": tp_at / max(tp_at + fp_at, 1), "recall": tp_at / max(n_truth, 1), "ap50": ap,
            "true_positives": tp_at, "false_positives": fp_at, "faces": n_truth, "threshold": threshold}


def _run(det: OnnxFaceDetector, images) -> tuple[list, float, int]:
    op = det.threshold
    det.threshold = AP_THRESHOLD
    results, t_total, n = [], 0.0, 0
    try:
        for img in images:
            t = time.perf_counter()
            d = det.detect(img)
            t_total += time.perf_counter() - t
            n += 1
            results.append((d.boxes, d.scores))
    finally:
        det.threshold = op
    return results, 1000 * t_total / max(n, 1), n


def evaluate_video(det: OnnxFaceDetector, video: Path, every: int = 1) -> dict:
    video = Path(video)
    truth, ambiguous = truth_boxes(video.with_name(video.stem + ".truth.csv"))
    indices = []

    def frames():
        with CaptureSource(video=video) as src:
            for f in src:
                if f.index % every == 0:
                    indices.append(f.index)
                    yield f.image

    results, ms, n = _run(det, frames())
    pairs = [(b, s, truth.get(i, np.zeros((0, 4), np.float32))) for (b, s), i in zip(results, indices)]
    clear = [p for p, i in zip(pairs, indices) if i not in ambiguous]
    strict = score_detections(pairs, det.threshold)
    return {**score_detections(clear, det.threshold), "frames": n, "ambiguous_frames_left_out": n - len(clear),
            "precision_strict": strict["precision"], "recall_strict": strict["recall"], "ap50_strict": strict["ap50"],
            "ms_per_frame": ms, "source": str(video), "detector": det.name}


def evaluate_yolo(det: OnnxFaceDetector, root: Path) -> dict:
    samples = yolo_samples(root)
    results, ms, n = _run(det, (s.image for s in samples))
    pairs = [(b, s, smp.boxes) for (b, s), smp in zip(results, samples)]
    return {**score_detections(pairs, det.threshold), "frames": n, "ms_per_frame": ms, "source": str(root),
            "detector": det.name}


def found_on_yolo(det: OnnxFaceDetector, root: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(image, labelled boxes, found boxes, their scores) of every frame of a YOLO folder, at the detector's
    threshold: what a person checks by eye."""
    out = []
    for smp in yolo_samples(root):
        found = det.detect(smp.image)
        out.append((smp.image, smp.boxes, found.boxes, found.scores))
    return out
