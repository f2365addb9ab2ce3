"""Videos per hour for a batch of archives with 1 and 2 worker processes on this machine."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rat_monitor.batch import Job, run_batch
from rat_monitor.models import DEFAULT_CLASSIFIER, DEFAULT_DETECTOR
from rat_monitor.pipeline import Settings
from rat_monitor.synth import VideoSpec, write_video

pytestmark = pytest.mark.slow
VIDEOS = Path(__file__).parent / "results" / "videos" / "batch"


@pytest.mark.timeout(1800)  # the first run renders its six videos (about 100 s each) before it measures
def test_videos_per_hour(tmp_path, record):
    VIDEOS.mkdir(parents=True, exist_ok=True)
    videos = []
    for i in range(6):
        v = VIDEOS / f"cage{i}.mp4"
        if not v.exists():
            write_video(VideoSpec(width=1280, height=720, fps=30, minutes=1, seed=500 + i, subject=60 + i), v)
        videos.append(v)
    figures = {"videos": len(videos), "video_minutes_each": 1, "resolution": "720p30"}
    for workers in (1, 2):
        t = time.perf_counter()
        job = Job(DEFAULT_CLASSIFIER, DEFAULT_DETECTOR, Settings(), overwrite=True)
        rows = run_batch(videos, tmp_path / f"w{workers}", job, workers=workers)
        seconds = time.perf_counter() - t
        assert all(r["status"] == "ok" for r in rows)
        figures[f"workers_{workers}_seconds"] = round(seconds, 1)
        figures[f"workers_{workers}_videos_per_hour"] = round(3600 * len(videos) / seconds, 1)
    figures["speedup_2_over_1"] = round(figures["workers_1_seconds"] / figures["workers_2_seconds"], 2)
    figures["cores"] = os.cpu_count()
    record("batch_workers", figures)
