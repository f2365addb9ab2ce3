"""Component speeds on one core: synthetic rendering at 720p, detector per 720p frame, LBP+SVM LOSO time."""

from __future__ import annotations

import os
import time

import cv2
import pytest

from rat_monitor.detect import load_detector
from rat_monitor.models import DEFAULT_DETECTOR
from rat_monitor.pipeline import FaceFinder, Settings, StageClock
from rat_monitor.synth import VideoSpec, render_frames
from rat_monitor.types import Frame

pytestmark = pytest.mark.slow


def _one_core():
    cv2.setNumThreads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def test_synth_render_720p_speed(record):
    """Furred, shaded rats cost more than the flat ones did (30 fps then): the floor is a third of real time,
    enough to make the samples and test videos offline."""
    _one_core()
    spec = VideoSpec(width=1280, height=720, fps=30, minutes=0.5, seed=5, schedule="surgery")
    t = time.perf_counter()
    n = sum(1 for _ in render_frames(spec))
    fps = n / (time.perf_counter() - t)
    record("synth_render_720p", {"frames": n, "frames_per_s": round(fps, 1), "real_time_factor": round(fps / 30, 2)})
    assert fps >= 10


def test_detector_ms_per_720p_frame(record):
    """The detector's cost on one core at 720p: per call (with the resize, and at its working resolution),
    and per frame as the pipeline runs it, with tracking between its calls (the target: at most 5 ms)."""
    _one_core()
    det = load_detector(DEFAULT_DETECTOR)  # ONNX Runtime, one intra-op thread
    spec = VideoSpec(width=1280, height=720, fps=30, minutes=0.5, seed=6)
    frames = [img for img, _ in render_frames(spec)]
    det.detect(frames[0])
    t = time.perf_counter()
    for img in frames[:90]:
        det.detect(img)
    call_ms = 1000 * (time.perf_counter() - t) / 90
    small = [cv2.resize(f, (det.input_w, det.input_h), interpolation=cv2.INTER_AREA) for f in frames[:90]]
    t = time.perf_counter()
    for img in small:
        det.detect(img)
    net_ms = 1000 * (time.perf_counter() - t) / len(small)
    finder = FaceFinder(det, Settings())
    clock = StageClock()
    for i, img in enumerate(frames):
        finder.step(Frame(index=i, t_s=i / spec.fps, image=img), clock)
    per_frame = clock.ms_per_frame(len(frames))
    with_tracking = per_frame["detect"] + per_frame["track"]
    record("detector_720p", {"frames": len(frames), "ms_per_call_with_resize": round(call_ms, 2),
                             "ms_per_call_at_working_resolution": round(net_ms, 2),
                             "input_size": [det.input_w, det.input_h], "detector_runs": finder.detector_runs,
                             "ms_per_frame_with_tracking": round(with_tracking, 2)})
    assert with_tracking <= 5.0
