"""Shared fixtures: short synthetic videos made with the project's own generator, and the real footage of
../shared/real (skipped where absent)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from rat_monitor.detect.train import synthetic_samples, yolo_text
from rat_monitor.synth import VideoSpec, write_video
from rat_monitor.synth.dataset import write_dataset

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
def unknown_camera_video(tmp_path_factory) -> Path:
    """30 s of a real camera the bundled detector does not know: the three overhead frames of an albino rat under
    a ring light in ../shared/real/validation (0 of their 6 faces found), each held 5 s while it drifts slowly as
    a handheld camera would. Made in a temporary folder, never in the repo; skips where ../shared/real is absent."""
    stills = [REAL / "validation" / "images" / f"ratpose_0{i}.jpg" for i in (1, 2, 3)]
    if not all(p.exists() for p in stills):
        pytest.skip("../shared/real is not present")
    path = tmp_path_factory.mktemp("unknown_camera") / "overhead_ring_light.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 360))
    for i in range(300):
        image = cv2.resize(cv2.imread(str(stills[(i // 50) % 3])), (640, 360))
        shift = np.float32([[1, 0, (i % 50) * 0.4], [0, 1, 0]])
        writer.write(cv2.warpAffine(image, shift, (640, 360), borderMode=cv2.BORDER_REFLECT))
    writer.release()
    return path


def write_yolo(root: Path, samples) -> Path:
    """Frames and their face boxes as a YOLO folder (images/, labels/), as annotation tools export them."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i, s in enumerate(samples):
        cv2.imwrite(str(root / "images" / f"{i:04d}.png"), s.image)
        h, w = s.image.shape[:2]
        (root / "labels" / f"{i:04d}.txt").write_text(yolo_text(s.boxes, w, h))
    return root


def write_inverted_camera(root: Path) -> None:
    """A camera the bundled detector never saw: 90 side-view cage frames with their colours inverted (a
    thermal-like look), 50 in ROOT/train and 40 in ROOT/test."""
    frames = synthetic_samples(90, seed=4242, setting="cage_side")
    for s in frames:
        s.image = 255 - s.image
    write_yolo(root / "train", frames[:50])
    write_yolo(root / "test", frames[50:])


# What the fixtures render (videos, crop sets) takes minutes of one core, while the tests use one core
# (OMP_NUM_THREADS=1 above): it is rendered on the other core in a background process from the start of the
# session, in the order the collected tests need it; a fixture waits only for what is not ready yet.
# fixture name -> (renderer called with the output path, file or folder name)
RENDERS = {
    # 40 s of an albino rat, 320x180 at 15 fps, pain from second 20 on
    "short_video": (partial(write_video, VideoSpec(width=320, height=180, fps=15, minutes=40 / 60, seed=11,
                                                   subject=3, schedule="0:0,0.34:2")), "short.mp4"),
    # 2 minutes, 480x270 at 10 fps: control first minute, severe pain in the second
    "two_minute_video": (partial(write_video, VideoSpec(width=480, height=270, fps=10, minutes=2, seed=12,
                                                        subject=4, schedule="0:0,1:2")), "two_min.mp4"),
    # a fresh seed with extra dashes (motion blur), 1.5 minutes at 640x360, 15 fps
    "busy_video": (partial(write_video, VideoSpec(width=640, height=360, fps=15, minutes=1.5, seed=777, subject=9,
                                                  fast=True)), "busy.mp4"),
    # 3 minutes at 320x180 and 10 fps, pain from minute 2
    "long_video": (partial(write_video, VideoSpec(width=320, height=180, fps=10, minutes=3, seed=61, subject=7,
                                                  schedule="0:0,2:2")), "four.mp4"),
    # 3 minutes of a rat in severe pain from the start, 480x270 at 5 fps: an alert in minute 2
    "painful": (partial(write_video, VideoSpec(width=480, height=270, fps=5, minutes=3, seed=31, subject=4,
                                               schedule="0:2")), "painful.mp4"),
    # two rats, albino at the back in pain from the start, hooded in front pain-free; they pass one another at
    # 0:30 and 1:30 (the one behind hidden for a moment); 640x360 at 10 fps, 2 minutes
    "two_rats": (partial(write_video, VideoSpec(width=640, height=360, fps=10, minutes=2, seed=5, subject=30,
                                                coat="albino,hooded", schedule="0:2;0:0", rats=2)), "two_rats.mp4"),
    # 4 synthetic animals x 40 crops with action-unit labels
    "au_data": (partial(write_dataset, subjects=4, per_subject=40, seed=9), "ds"),
    # 4 synthetic animals x 60 crops with action-unit labels
    "small_dataset": (partial(write_dataset, subjects=4, per_subject=60, seed=9), "ds"),
    # YOLO folders train/ and test/ of a new camera's look
    "inverted_camera": (write_inverted_camera, "yolo"),
}
_pending: dict[str, Future] = {}
_render_state: dict = {}


def pytest_collection_finish(session) -> None:
    wanted = []
    for item in session.items:
        wanted += [n for n in getattr(item, "fixturenames", ()) if n in RENDERS and n not in wanted]
    if not wanted:
        return
    folder = _render_state["folder"] = Path(tempfile.mkdtemp(prefix="rat-monitor-test-renders-"))
    pool = _render_state["pool"] = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    for name in wanted:
        render, filename = RENDERS[name]
        (folder / name).mkdir()
        _pending[name] = pool.submit(render, folder / name / filename)


def pytest_sessionfinish(session) -> None:
    if "pool" in _render_state:
        _render_state["pool"].shutdown(cancel_futures=True)
        shutil.rmtree(_render_state["folder"], ignore_errors=True)


def rendered(name: str, tmp_path_factory) -> Path:
    """The file or folder of RENDERS[name], rendered in the background (or here, if it was not foreseen)."""
    render, filename = RENDERS[name]
    if name not in _pending:
        out = tmp_path_factory.mktemp(name) / filename
        render(out)
        return out
    _pending[name].result()
    return _render_state["folder"] / name / filename


@pytest.fixture(scope="session")
def short_video(tmp_path_factory) -> Path:
    return rendered("short_video", tmp_path_factory)


@pytest.fixture(scope="session")
def two_minute_video(tmp_path_factory) -> Path:
    return rendered("two_minute_video", tmp_path_factory)


@pytest.fixture(scope="session")
def two_rats(tmp_path_factory) -> Path:
    return rendered("two_rats", tmp_path_factory)
