"""Batches of archives: a local process pool and a Dask cluster on 127.0.0.1, summary.csv, resume, failures."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rat_monitor.cli import app
from rat_monitor.synth import VideoSpec, write_video
from helpers import free_port, read_rows

runner = CliRunner()
BIN = Path(sys.executable).parent
SAMPLES = Path(__file__).resolve().parents[1] / "sample_videos"


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Three short recordings in a folder tree, and one broken file among them."""
    root = tmp_path_factory.mktemp("archive")
    for i, schedule in enumerate(("control", "0:2", "control")):
        folder = root / f"cage{i % 2}"
        folder.mkdir(exist_ok=True)
        write_video(VideoSpec(width=200, height=120, fps=10, minutes=0.4, seed=80 + i, subject=20 + i,
                              schedule=schedule), folder / f"rec{i}.mp4")
    (root / "cage1" / "broken.mp4").write_text("not a video")
    return root


def test_local_pool_summary_failure_and_resume(archive, tmp_path):
    out = tmp_path / "runs"
    result = runner.invoke(app, ["analyze", str(archive), "--out", str(out), "--workers", "2"])
    assert result.exit_code == 1, result.output  # one video failed: the exit code says so
    rows = {Path(r["video"]).name: r for r in read_rows(out / "summary.csv")}
    assert set(rows) == {"rec0.mp4", "rec1.mp4", "rec2.mp4", "broken.mp4"}
    assert rows["broken.mp4"]["status"] == "failed" and "not a video" in rows["broken.mp4"]["error"]
    for name in ("rec0.mp4", "rec1.mp4", "rec2.mp4"):
        assert rows[name]["status"] == "ok" and rows[name]["minutes"] == "1"
        # the bundled model is binary: it says pain or none, and claims nothing about severity
        assert rows[name]["minutes_pain"] != "" and rows[name]["minutes_moderate"] == rows[name]["minutes_severe"] == ""
        assert (out / Path(name).stem / "timeline.csv").exists()
    # Without a flag an earlier run is never taken for this one (it may come from another video of that name).
    before = (out / "rec0" / "timeline.csv").read_bytes()
    summary_before = (out / "summary.csv").read_bytes()
    again = runner.invoke(app, ["analyze", str(archive / "cage0"), "--out", str(out), "--workers", "2"])
    assert again.exit_code == 2 and "already holds a run" in again.output  # every video refused: settings
    assert (out / "summary.csv").read_bytes() == summary_before  # the refused batch changes no row
    assert (out / "rec0" / "timeline.csv").read_bytes() == before
    # a finished run of another video with the same name is never taken for this one's
    other = tmp_path / "elsewhere" / "rec0.mp4"
    other.parent.mkdir()
    other.write_bytes((archive / "cage0" / "rec0.mp4").read_bytes())
    clash = runner.invoke(app, ["analyze", str(other), "--out", str(out), "--resume"])
    assert clash.exit_code == 2 and "not of" in clash.output
    # --resume skips the finished ones, in the pool as in one process
    for workers in ("2", "1"):
        again = runner.invoke(app, ["analyze", str(archive / "cage0"), str(archive / "cage1" / "rec1.mp4"), "--out",
                                    str(out), "--workers", workers, "--resume"])
        assert again.exit_code == 0, again.output
        statuses = {Path(r["video"]).name: r["status"] for r in read_rows(out / "summary.csv")}
        assert statuses == {"rec0.mp4": "skipped (complete)", "rec1.mp4": "skipped (complete)",
                            "rec2.mp4": "skipped (complete)", "broken.mp4": "failed"}  # other videos' rows stay


def test_dask_cluster_on_localhost(archive, tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):  # a worker started before its scheduler listens keeps trying to reach it
            procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
                                           "--host", "127.0.0.1"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        from dask.distributed import Client

        with Client(address, timeout="60s") as client:  # no fixed sleeps: as soon as both workers are in
            client.wait_for_workers(2, timeout=60)
        out = tmp_path / "runs"
        result = runner.invoke(app, ["analyze", str(archive / "cage0"), "--out", str(out), "--scheduler", address])
        assert result.exit_code == 0, result.output
        rows = read_rows(out / "summary.csv")
        assert [Path(r["video"]).name for r in rows] == ["rec0.mp4", "rec2.mp4"]
        assert all(r["status"] == "ok" and int(r["frames"]) == 240 for r in rows)
        assert (out / "rec0" / "timeline.csv").exists()  # written where the client asked
        # SIGTERM to the client stops the cluster's runs too: the running ones interrupted, the queued one not started
        names = ["albino_onset", "albino_control", "hooded_hard"]
        stopped = tmp_path / "stopped"
        proc = subprocess.Popen([sys.executable, "-m", "rat_monitor.cli", "analyze",
                                 *[str(SAMPLES / f"{n}.mp4") for n in names], "--out", str(stopped), "--quiet",
                                 "--scheduler", address], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and not all((stopped / n / "timeline.csv").exists() for n in names[:2]):
            time.sleep(0.05)
        time.sleep(1.0)
        proc.terminate()
        t0 = time.time()
        _, stderr = proc.communicate(timeout=90)
        assert proc.returncode == 130, stderr
        assert time.time() - t0 < 30  # promptly: the workers stopped their videos
        summary = {Path(r["video"]).stem: r["status"] for r in read_rows(stopped / "summary.csv")}
        assert summary == {"albino_onset": "interrupted", "albino_control": "interrupted",
                           "hooded_hard": "not started (the batch was stopped)"}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)


def test_unreachable_scheduler_is_one_line(archive, tmp_path):
    result = runner.invoke(app, ["analyze", str(archive / "cage0"), "--out", str(tmp_path),
                                 "--scheduler", f"tcp://127.0.0.1:{free_port()}"])
    assert result.exit_code == 2 and "cannot reach the Dask scheduler" in result.output


def test_workers_report_each_videos_frames_for_its_progress_bar(archive, tmp_path):
    """With --workers the parent still sees every video's frames and their total (frames, fps, time left)."""
    from rat_monitor.batch import Job, run_batch
    from rat_monitor.pipeline import Observer, Settings

    seen: dict[str, list] = {}

    def observer_for(video: Path) -> Observer:
        class Record(Observer):
            def frame(self, index, t_s, n_faces, stats):
                seen.setdefault(video.name, []).append((index, stats["total"], stats["fps"]))

        return Record()

    videos = sorted((archive / "cage0").glob("*.mp4"))
    job = Job("lbp-svm-synthetic", "rat-face-detector", Settings(), False, False, False)
    rows = run_batch(videos, tmp_path / "runs", job, workers=2, observer_for=observer_for)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert set(seen) == {v.name for v in videos}
    for reports in seen.values():
        assert all(total == 240 and 0 <= index < 240 and fps > 0 for index, total, fps in reports)
