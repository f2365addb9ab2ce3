"""Shared fixtures: short synthetic videos made with the project's own generator, and the real footage of
../shared/real (skipped where absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rat_monitor.synth import VideoSpec, write_video

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "real"

# One core for numerical libraries: tests measure behaviour, not parallel speed.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def real_mouse_video() -> Path:
    """The real side-view mouse trial from ../shared/real (never copied into the repo); skips where absent."""
    path = REAL / "mouse_side_view_der_trial4.mp4"
    if not path.exists():
        pytest.skip("../shared/real is not present")
    return path


@pytest.fixture(scope="session")
def short_video(tmp_path_factory) -> Path:
    """40 s of an albino rat, 320x180 at 15 fps, pain from second 20 on."""
    out = tmp_path_factory.mktemp("videos") / "short.mp4"
    spec = VideoSpec(width=320, height=180, fps=15, minutes=40 / 60, seed=11, subject=3, schedule="0:0,0.34:2")
    write_video(spec, out)
    return out


@pytest.fixture(scope="session")
def two_minute_video(tmp_path_factory) -> Path:
    """2 minutes, 480x270 at 10 fps: control first minute, severe pain in the second."""
    out = tmp_path_factory.mktemp("videos") / "two_min.mp4"
    spec = VideoSpec(width=480, height=270, fps=10, minutes=2, seed=12, subject=4, schedule="0:0,1:2")
    write_video(spec, out)
    return out
