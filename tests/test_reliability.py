"""Faults and bad input: SIGKILL then --resume, a stream that stops and comes back, and the bad-input matrix."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from typer.testing import CliRunner

from rat_monitor.cli import app
from rat_monitor.synth import VideoSpec, write_video
from conftest import rendered
from helpers import free_port, read_rows, serve_stream

runner = CliRunner()
RM = [sys.executable, "-m", "rat_monitor.cli"]
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    return rendered("long_video", tmp_path_factory)


def test_sigkill_then_resume_gives_the_uninterrupted_timeline(long_video, tmp_path):
    full = runner.invoke(app, ["analyze", str(long_video), "--out", str(tmp_path / "full"), "--quiet"])
    assert full.exit_code == 0, full.output
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(RM + ["analyze", str(long_video), "--out", str(killed_dir), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    timeline = killed_dir / "four" / "timeline.csv"
    deadline = time.time() + 60
    while time.time() < deadline:  # kill as soon as the first minute is on disk
        if timeline.exists() and len(timeline.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = read_rows(timeline)
    assert 1 <= len(kept) < 3  # the minutes flushed before the kill survived it
    assert not (killed_dir / "four" / "run.json").exists()
    resumed = runner.invoke(app, ["analyze", str(long_video), "--out", str(killed_dir), "--resume", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    a, b = read_rows(tmp_path / "full" / "four" / "timeline.csv"), read_rows(timeline)
    assert [r["minute"] for r in a] == [r["minute"] for r in b] == ["0", "1", "2"]
    for x, y in zip(a, b):
        assert x["frames"] == y["frames"] and x["pain_level"] == y["pain_level"] and x["alert"] == y["alert"]
        assert abs(int(x["face_frames"]) - int(y["face_frames"])) <= 3
        assert x["status"] == y["status"] and (x["pain_prob"] == "") == (y["pain_prob"] == "")
        if x["pain_prob"]:  # empty in a minute whose faces were all refused as unfamiliar
            assert abs(float(x["pain_prob"]) - float(y["pain_prob"])) < 0.1
    frames = read_rows(killed_dir / "four" / "frames.csv")
    times = [float(f["t_s"]) for f in frames]
    assert times == sorted(times) and len(set(times)) == len(times)  # nothing duplicated or out of order
    assert sum(int(r["scored_frames"]) + int(r["refused_frames"]) for r in b) == len(frames)
    again = runner.invoke(app, ["analyze", str(long_video), "--out", str(killed_dir), "--resume"])
    assert again.exit_code == 0 and "already complete" in again.output


def watch_through_an_outage(video, out, duration: float, down_after: float, down_for: float):
    """watch --url on a local stream whose server stops DOWN_AFTER s in and comes back DOWN_FOR s later."""
    port = free_port()
    server = serve_stream(video, port, loop=True)
    time.sleep(0.5)
    proc = subprocess.Popen(RM + ["watch", "--url", f"http://127.0.0.1:{port}/live.ts", "--out", str(out),
                                  "--duration", f"{duration:g}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        time.sleep(down_after)
        server.kill()
        server.wait()
        time.sleep(down_for)
        server = serve_stream(video, port, loop=True)
        _, stderr = proc.communicate(timeout=duration + 60)
    finally:
        server.kill()
        proc.kill()
    assert proc.returncode == 0, stderr


def test_stream_back_after_a_short_outage(short_video, tmp_path):
    """The server stops at ~4 s and comes back at ~9 s: the run reconnects, records the outage and goes on.
    (Minutes without any frame becoming source_lost rows is pinned fast in test_run_flow.)"""
    watch_through_an_outage(short_video, tmp_path, duration=20, down_after=4, down_for=5)
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["outages_s"] and info["complete"]
    lost_at, back_at = info["outages_s"][0]
    assert 0 < lost_at < back_at < 19 and back_at - lost_at > 2  # the 5-s outage, seen from the run
    frames = int(read_rows(tmp_path / "timeline.csv")[0]["frames"])
    assert frames > 15 * (lost_at + 2)  # at 15 fps: more than the frames before the outage, so it came back


@pytest.mark.slow
def test_stream_lost_for_a_minute_then_back(short_video, tmp_path):
    """The server stops at ~10 s and comes back at ~125 s: minute 1 has no frames (source_lost), then the
    run recovers and goes on. Slow (2.5 min): make bench runs it."""
    watch_through_an_outage(short_video, tmp_path, duration=150, down_after=10, down_for=115)
    rows = read_rows(tmp_path / "timeline.csv")
    assert [r["minute"] for r in rows] == ["0", "1", "2"]
    assert int(rows[0]["frames"]) > 0
    assert rows[1]["frames"] == "0" and rows[1]["status"] == "source_lost" and rows[1]["pain_level"] == "unknown"
    # recovered: frames again (the bundled model may find this low-resolution video's small faces unfamiliar)
    assert int(rows[2]["frames"]) > 100 and rows[2]["status"] in ("ok", "unfamiliar")
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["outages_s"] and info["complete"]


def test_watch_resumes_its_run_after_a_crash(short_video, tmp_path):
    """A watch that crashed (no run.json) after its first minute, 3 minutes ago: --resume keeps that minute,
    marks the minutes in between source_lost and goes on counting time from the run's start."""
    from rat_monitor.sinks import RunWriter, prepare_run_dir
    from rat_monitor.timeline import iso_time
    from rat_monitor.types import MinuteSummary

    port = free_port()
    url = f"http://127.0.0.1:{port}/live.ts"
    began = time.time() - 190
    writer = RunWriter(prepare_run_dir(tmp_path), action_units=True)
    writer.minute(MinuteSummary(minute=0, start_s=0.0, end_s=60.0, start_time=iso_time(began), frames=900,
                                face_frames=850, scored_frames=18, pain_prob=0.2, pain_level="none",
                                pain_prob_smoothed=0.2))
    writer.__exit__(None, None, None)  # the crash: rows flushed, no run.json
    server = serve_stream(short_video, port, loop=True)
    time.sleep(0.5)
    proc = subprocess.Popen(RM + ["watch", "--url", url, "--out", str(tmp_path), "--resume"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 90  # frames flow once the minutes in between are written (then a second more)
        while time.time() < deadline and len(read_rows(tmp_path / "timeline.csv")) < 3:
            time.sleep(0.2)
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        server.kill()
        proc.kill()
    assert proc.returncode == 0, stderr  # Ctrl-C is how a watch ends
    rows = read_rows(tmp_path / "timeline.csv")
    assert [r["minute"] for r in rows] == ["0", "1", "2", "3"]
    assert rows[0]["frames"] == "900" and rows[0]["pain_prob"] == "0.2000"  # the earlier minute, kept as it was
    assert [r["status"] for r in rows[1:3]] == ["source_lost", "source_lost"]
    assert int(rows[3]["frames"]) > 0 and rows[3]["start_time"][:16] == iso_time(began + 180)[:16]
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["resumed_after_minute"] == 0 and info["inputs"]["start_time"] == pytest.approx(began, abs=1)


def test_watch_resume_of_a_file_points_to_analyze(short_video, tmp_path):
    result = runner.invoke(app, ["watch", "--video", str(short_video), "--out", str(tmp_path), "--resume"])
    assert result.exit_code == 2 and "analyze --resume" in result.output


def test_lost_stream_is_given_up_with_exit_3_and_its_time_in_the_timeline(short_video, tmp_path):
    port = free_port()
    server = serve_stream(short_video, port, loop=True)
    time.sleep(0.5)
    proc = subprocess.Popen(RM + ["watch", "--url", f"http://127.0.0.1:{port}/live.ts", "--out", str(tmp_path),
                                  "--give-up", "4"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60  # on a busy machine the models take seconds to load: lose the stream once it runs
    while time.time() < deadline and not (tmp_path / "timeline.csv").exists():
        time.sleep(0.05)
    time.sleep(2)
    server.kill()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr  # the source was lost: said, and the exit code says so
    assert "given up" in stderr and stderr.count("\n") == 1
    rows = read_rows(tmp_path / "timeline.csv")
    assert int(rows[0]["frames"]) > 0
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["outages_s"] and info["source_given_up_at_s"] >= 4
    # the time spent retrying is in the timeline: it ends when the source was given up
    assert float(rows[-1]["end_s"]) >= info["source_given_up_at_s"] - 0.5
    # and the message promises source_lost rows only where there are some (a loss inside minute 0 leaves none)
    lost_rows = sum(r["status"] == "source_lost" for r in rows)
    assert (f"{lost_rows} minute(s) without frames are source_lost rows" in stderr) == (lost_rows > 0), stderr
    assert ("no source_lost row" in stderr) == (lost_rows == 0)


def _ffmpeg(*args):
    subprocess.run([FFMPEG, "-v", "error", "-y", *map(str, args)], check=True)


def _analyze(video, out):
    """analyze VIDEO (a path, or several for one batch) into OUT, in a process of its own."""
    videos = [video] if isinstance(video, Path) else list(video)
    return subprocess.run(RM + ["analyze", *map(str, videos), "--out", str(out), "--quiet"], capture_output=True,
                          text=True, timeout=300)


def test_odd_but_valid_videos_run_without_crashing(short_video, tmp_path):
    """16x16, 8K, grey-scale, rotation metadata, variable frame rate: each analysed, exit 0, a timeline."""
    tiny, big, grey, rotated, vfr = (tmp_path / f"{n}.mp4" for n in ("tiny", "big", "grey", "rotated", "vfr"))
    write_video(VideoSpec(width=16, height=16, fps=10, minutes=0.1, seed=1), tiny)
    _ffmpeg("-i", short_video, "-frames:v", "8", "-vf", "scale=7680:4320", "-c:v", "libx264", "-preset", "ultrafast",
            big)
    _ffmpeg("-i", short_video, "-vf", "format=gray", "-c:v", "libx264", "-pix_fmt", "gray", grey)
    _ffmpeg("-i", short_video, "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated)
    _ffmpeg("-i", short_video, "-vf", "setpts='if(lt(N,100),PTS,PTS*2)'", "-fps_mode", "vfr", "-c:v", "libx264", vfr)
    videos = (tiny, big, grey, rotated, vfr)
    proc = _analyze(videos, tmp_path / "runs")  # one batch: exit 0 only if each went well
    assert proc.returncode == 0, proc.stderr
    assert {r["status"] for r in read_rows(tmp_path / "runs" / "summary.csv")} == {"ok"}
    for video in videos:
        rows = read_rows(tmp_path / "runs" / video.stem / "timeline.csv")
        assert rows and all(int(r["frames"]) > 0 for r in rows), video.name
    vfr_rows = read_rows(tmp_path / "runs" / "vfr" / "timeline.csv")
    assert len(vfr_rows) == 2  # timestamps stretched past one minute: media time, not frame count / fps


def test_corrupt_frames_mid_stream_are_skipped_and_counted(short_video, tmp_path):
    data = bytearray(short_video.read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.integers(len(data) // 3, 2 * len(data) // 3, 40):  # damage the middle of the stream
        data[pos:pos + 64] = bytes(64)
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    proc = _analyze(bad, tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "runs" / "damaged" / "timeline.csv")
    delivered = sum(int(r["frames"]) for r in rows)
    skipped = json.loads((tmp_path / "runs" / "damaged" / "run.json").read_text())["decode_errors"]
    cap = cv2.VideoCapture(str(short_video))
    assert skipped > 0  # the damage cost frames ...
    dropped = sum(int(r["dropped_frames"]) for r in rows)  # ... counted in the minutes they were lost from
    assert delivered + dropped == int(cap.get(cv2.CAP_PROP_FRAME_COUNT))  # ... and every frame is accounted for


@pytest.mark.parametrize("codec", [["-c:v", "mpeg2video", "-q:v", "4"], ["-c:v", "libx264", "-x264opts", "tff=1"]],
                         ids=["mpeg2", "h264"])
def test_interlaced_video_is_deinterlaced_not_read_black(short_video, tmp_path, codec):
    """OpenCV's scaler turns interlaced frames black (a run of 0 faces, status ok): they must show the rat."""
    interlaced = tmp_path / "interlaced.mkv"
    _ffmpeg("-i", short_video, "-vf", "scale=640:360,tinterlace=interleave_top,fieldorder=tff,format=yuv420p",
            "-flags", "+ilme+ildct", *codec, interlaced)
    proc = _analyze(interlaced, tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "interlaced"
    assert json.loads((run / "run.json").read_text())["deinterlaced"] is True
    rows = read_rows(run / "timeline.csv")
    frames = sum(int(r["frames"]) for r in rows)
    assert frames == int(cv2.VideoCapture(str(interlaced)).get(cv2.CAP_PROP_FRAME_COUNT)) == 300  # 2 fields a frame
    assert sum(int(r["face_frames"]) for r in rows) > 0.9 * frames


def test_self_training_reads_an_interlaced_video_deinterlaced_not_black(short_video, tmp_path):
    """Self-training's runs come from the same reader as an analysis: no black frames to learn from."""
    from rat_monitor.detect.selftrain import runs_of_video

    interlaced = tmp_path / "interlaced.mkv"
    _ffmpeg("-i", short_video, "-vf", "scale=640:360,tinterlace=interleave_top,fieldorder=tff,format=yuv420p",
            "-flags", "+ilme+ildct", "-c:v", "mpeg2video", "-q:v", "4", interlaced)
    runs = runs_of_video(interlaced, runs=4, frames=3, step=3)
    assert len(runs) == 4 and all(len(run) == 3 for run in runs)
    assert all(image.shape == (360, 640, 3) and image.mean() > 40 for run in runs for image in run)


@pytest.mark.parametrize("container", ["mkv", "ts"])
def test_frames_lost_to_damage_in_mkv_and_ts_are_counted_as_dropped(short_video, tmp_path, container):
    """The demuxer skips a damaged stretch silently: the gap in the timestamps is counted, not hidden."""
    clean = tmp_path / f"clean.{container}"
    _ffmpeg("-i", short_video, "-c:v", "libx264", "-g", "15", clean)
    data = bytearray(clean.read_bytes())
    rng = np.random.default_rng(1)
    for at in (0.4, 0.7):  # two stretches of noise, 3% of the file each
        start, size = int(len(data) * at), int(len(data) * 0.03)
        data[start:start + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    damaged = tmp_path / f"damaged.{container}"
    damaged.write_bytes(bytes(data))
    proc = _analyze(damaged, tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "damaged"
    rows = read_rows(run / "timeline.csv")
    delivered = sum(int(r["frames"]) for r in rows)
    dropped = sum(int(r["dropped_frames"]) for r in rows)
    assert delivered < 600  # the damage cost frames ...
    assert abs(delivered + dropped - 600) <= 3  # ... and they are accounted for, give or take a reordered one
    assert json.loads((run / "run.json").read_text())["frames_lost_in_file"] > 0


def test_video_cut_in_half_keeps_the_minutes_read(long_video, tmp_path):
    data = long_video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    proc = _analyze(cut, tmp_path / "runs")
    assert proc.returncode == 3 and "cut short or corrupt" in proc.stderr
    assert "Traceback" not in proc.stderr
    rows = read_rows(tmp_path / "runs" / "cut" / "timeline.csv")
    assert len(rows) >= 1 and int(rows[0]["frames"]) == 600  # a whole first minute at 10 fps


def test_a_stream_copied_cut_is_read_to_its_end_not_called_corrupt(short_video, tmp_path):
    """`ffmpeg -ss T -c copy` keeps the frames from the keyframe before T and hides them with an edit list: the
    header counts them, a reader never gets them; its last frame carries the time of the frames left out. The cut
    is whole: analysed to its end, exit 0, and no frame is said lost to damage."""
    for start in ("7.3", "7"):
        cut = tmp_path / f"cut{start.replace('.', '_')}.mp4"
        subprocess.run([FFMPEG, "-v", "error", "-ss", start, "-i", str(short_video), "-t", "20", "-c", "copy",
                        str(cut)], check=True)
        proc = _analyze(cut, tmp_path / "runs")
        assert proc.returncode == 0, proc.stderr
        run = json.loads((tmp_path / "runs" / cut.stem / "run.json").read_text())
        assert run["complete"] and abs(run["inputs"]["frame_count"] - 300) <= 10  # cut at packets, not frames
        assert abs(run["inputs"]["duration_s"] - 20) < 0.5
        assert run["frames_lost_in_file"] == 0 and "lost to damage" not in proc.stdout + proc.stderr


def test_zero_frame_video(tmp_path):
    empty = tmp_path / "zero.mp4"
    _ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:d=1", "-frames:v", "0", "-c:v", "libx264", empty)
    proc = _analyze(empty, tmp_path / "runs")
    assert proc.returncode == 3 and proc.stderr.strip().startswith("error:")


def test_full_disk_keeps_what_was_written(short_video, tmp_path, monkeypatch):
    from rat_monitor.sinks import files

    original = files.RunWriter.minute

    def minute_then_full(self, m):
        if m.minute >= 0 and (self.dir / "timeline.csv").stat().st_size > 0 and getattr(self, "_wrote", False):
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, m)
        self._wrote = True

    monkeypatch.setattr(files.RunWriter, "minute", minute_then_full)
    long = tmp_path / "long.mp4"
    write_video(VideoSpec(width=160, height=120, fps=5, minutes=2.2, seed=3), long)
    result = runner.invoke(app, ["analyze", str(long), "--out", str(tmp_path / "runs"), "--quiet"])
    assert result.exit_code == 2 and "disk is full" in result.output
    assert len(read_rows(tmp_path / "runs" / "long" / "timeline.csv")) == 1  # the minute written before is kept


@pytest.mark.parametrize("command", [["train", "--data", "nowhere"], ["detector", "train", "--synthetic", "10"]])
def test_training_never_replaces_a_model_silently(tmp_path, command):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "card.json").write_text("{}")
    result = runner.invoke(app, [*command, "--out", str(model)])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (model / "card.json").read_text() == "{}"


@pytest.mark.parametrize("args", [["analyze", "VIDEO", "--window", "nan"], ["analyze", "VIDEO", "--window", "-10"],
                                  ["watch", "--video", "VIDEO", "--duration", "nan"],
                                  ["watch", "--video", "VIDEO", "--give-up", "inf"], ["watch"]])
def test_settings_that_make_no_sense_exit_2_before_anything_is_written(short_video, tmp_path, args):
    out = tmp_path / "run"
    result = runner.invoke(app, [a.replace("VIDEO", str(short_video)) for a in args] + ["--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not out.exists()


def test_one_writer_per_run_folder(tmp_path):
    """A second process aimed at a run folder another one is writing gets one line, exit 2, and touches
    nothing, not even with --overwrite."""
    from conftest import ROOT

    video = ROOT / "sample_videos" / "albino_onset.mp4"
    first = subprocess.Popen(RM + ["analyze", str(video), "--out", str(tmp_path), "--quiet"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = tmp_path / video.stem
    deadline = time.time() + 60
    while time.time() < deadline and not (run / "timeline.csv").exists():
        time.sleep(0.05)
    second = runner.invoke(app, ["analyze", str(video), "--out", str(tmp_path), "--quiet", "--overwrite"])
    assert first.poll() is None  # still running: the clash was real
    assert second.exit_code == 2 and "another rat-monitor process" in second.output, second.output
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130, stderr
    assert json.loads((run / "run.json").read_text())["totals"]["interrupted"] is True  # the first run's files


def test_overwrite_leaves_no_crop_of_the_earlier_run(short_video, long_video, tmp_path):
    out = tmp_path / "runs"
    for video in (long_video, short_video):
        target = out / "same"
        target.parent.mkdir(exist_ok=True)
        result = runner.invoke(app, ["watch", "--video", str(video), "--out", str(target), "--overwrite",
                                     "--duration", "30"])
        assert result.exit_code == 0, result.output
    listed = {r["crop"] for r in read_rows(out / "same" / "frames.csv")}
    on_disk = {f"crops/{p.name}" for p in (out / "same" / "crops").iterdir()}
    assert on_disk == listed


def _damaged_copy(tmp_path, name, damage):
    """A copy of a bundled model with one thing broken, its card's checksums made to match (as a careless or
    malicious edit would), so that only the damage itself can be caught."""
    import hashlib
    import shutil

    from safetensors.numpy import load_file, save_file

    from conftest import ROOT

    folder = tmp_path / name
    shutil.copytree(ROOT / "models" / name, folder)
    card = json.loads((folder / "card.json").read_text())
    kind, target = damage
    if kind == "card":
        key, value = target
        card[key] = value
    else:
        tensors = load_file(str(folder / "svm.safetensors"))
        tensors[target] = tensors[target][..., :7] if tensors[target].ndim > 1 else tensors[target] * np.nan
        save_file(tensors, str(folder / "svm.safetensors"))
    for f in card["files"]:
        card["files"][f] = hashlib.sha256((folder / f).read_bytes()).hexdigest()
    (folder / "card.json").write_text(json.dumps(card))
    return folder


@pytest.mark.parametrize("which, damage", [
    ("rat-face-detector", ("card", ("input_size", "wide"))),
    ("rat-face-detector", ("card", ("threshold", "high"))),
    ("lbp-svm-synthetic", ("card", ("features", {"size": "big"}))),
    ("lbp-svm-synthetic", ("tensor", "support_vectors")),
    ("lbp-svm-synthetic", ("tensor", "intercept")),
    ("rat-face-detector", ("card", ("threshold", float("nan")))),
    ("rat-face-detector", ("card", ("threshold", -1.0))),
    ("lbp-svm-synthetic", ("card", ("task", "3class"))),
    ("lbp-svm-synthetic", ("card", ("features", {"size": 100_000, "grid": 4, "radii": [1, 2, 3]}))),
], ids=["detector-input-size", "detector-threshold", "features-size", "tensor-shape", "nan-weights",
        "threshold-nan", "threshold-negative", "task-contradicts-weights", "features-of-gigabytes"])
def test_a_damaged_model_is_refused_before_any_run_folder(short_video, tmp_path, which, damage):
    folder = _damaged_copy(tmp_path, which, damage)
    option = "--detector" if which == "rat-face-detector" else "--model"
    out = tmp_path / "runs"
    result = runner.invoke(app, ["analyze", str(short_video), option, str(folder), "--out", str(out)])
    assert result.exit_code == 4, result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1
    assert not (out / short_video.stem).exists()


def test_media_clock_bridges_restarts_and_jumps():
    from rat_monitor.sources.capture import MediaClock

    clock = MediaClock(10.0)
    stamps = [0, 100, 200, 300, 1, 101, 201, 999_000, 501, 601]  # ms: a restart, then one corrupt timestamp
    times = [clock.step(i, ms)[0] for i, ms in enumerate(stamps)]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert times[-1] == pytest.approx(0.9)  # ten frames at 10 fps, the bridged ones on the frame clock
    assert [d["frame"] for d in clock.discontinuities] == [4, 7, 8]  # the restart; into and out of the bad one


def test_two_recordings_joined_with_cat_give_one_sane_timeline(short_video, tmp_path):
    """Two MPEG-TS segments joined with `cat` (timestamps restart): every frame counted once, minutes
    consecutive with start < end, and the restart reported in run.json."""
    for name in ("a.ts", "b.ts"):
        _ffmpeg("-i", short_video, "-c:v", "mpeg2video", "-q:v", "4", "-f", "mpegts", tmp_path / name)
    joined = tmp_path / "joined.ts"
    joined.write_bytes((tmp_path / "a.ts").read_bytes() + (tmp_path / "b.ts").read_bytes())
    result = _analyze(joined, tmp_path / "runs")
    assert result.returncode in (0, 3), result.stderr
    run = tmp_path / "runs" / "joined"
    rows = read_rows(run / "timeline.csv")
    assert [int(r["minute"]) for r in rows] == list(range(len(rows)))
    assert all(float(r["start_s"]) < float(r["end_s"]) for r in rows)
    assert float(rows[-1]["end_s"]) == pytest.approx(80, abs=3)  # 2 x 40 s, not 40 s twice over
    info = json.loads((run / "run.json").read_text())
    assert len(info["time_discontinuities"]) >= 1


def test_symlink_loops_and_all_failing_batches_are_one_line(tmp_path):
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    loop = runner.invoke(app, ["analyze", str(tmp_path / "loop1"), "--out", str(tmp_path / "o")])
    assert loop.exit_code == 3 and "leads back to itself" in loop.output and "Traceback" not in loop.output
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_text("not a video")
    both = runner.invoke(app, ["analyze", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), "--out",
                               str(tmp_path / "o"), "--quiet"])
    assert both.exit_code == 3, both.output  # none could be read: the source code, not "some failed"
    assert [r["status"] for r in read_rows(tmp_path / "o" / "summary.csv")] == ["failed", "failed"]


def test_a_dataset_with_one_class_is_a_dataset_error(tmp_path):
    from rat_monitor.synth import write_dataset

    manifest = write_dataset(tmp_path / "ds", subjects=2, per_subject=8, seed=1)
    rows = read_rows(manifest)
    for r in rows:
        r["label"] = "0"
    lines = [",".join(rows[0])] + [",".join(r.values()) for r in rows]
    manifest.write_text("\n".join(lines) + "\n")
    for command in (["train", "--data", str(manifest), "-o", str(tmp_path / "m")], ["evaluate", "--data", str(manifest)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 5 and "no crop labelled pain" in result.output, result.output
        assert "Traceback" not in result.output


def test_one_class_per_animal_cannot_be_evaluated_by_animal_and_says_so(tmp_path):
    """Each animal's crops all of one class: every leave-one-animal-out fold would train on one class. One line
    and exit 5, for each kind of model and for train --loso, before any feature is computed."""
    from rat_monitor.synth import write_dataset

    manifest = write_dataset(tmp_path / "ds", subjects=2, per_subject=6, seed=1)
    rows = read_rows(manifest)
    first = rows[0]["subject"]
    for r in rows:
        r["label"] = "0" if r["subject"] == first else "2"
    manifest.write_text("\n".join([",".join(rows[0])] + [",".join(r.values()) for r in rows]) + "\n")
    for command in (["evaluate", "--data", str(manifest)], ["evaluate", "--data", str(manifest), "--kind", "resnet18"],
                    ["train", "--data", str(manifest), "--loso", "-o", str(tmp_path / "m")]):
        result = runner.invoke(app, command)
        assert result.exit_code == 5 and "cannot evaluate by animal" in result.output, result.output
        assert sum("cannot evaluate" in line for line in result.output.splitlines()) == 1
        assert "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("args", [
    ["synth", "--minutes", "inf", "--out", "{tmp}/v.mp4"], ["synth", "--fps", "1e308", "--out", "{tmp}/v.mp4"],
    ["synth", "--crf", "-1", "--out", "{tmp}/v.mp4"], ["synth", "--dataset", "{tmp}/d", "--per-subject", "0"],
    ["train", "--data", "{tmp}", "--epochs", "0", "--out", "{tmp}/m"],
    ["detector", "train", "--epochs", "0", "--out", "{tmp}/m"], ["label", "VIDEO", "-p", "{tmp}/p", "--port", "70000"],
    ["label", "VIDEO", "-p", "{tmp}/p", "--frames", "0"], ["analyze", "VIDEO", "--per-window", "0", "--out", "{tmp}/r"],
    ["analyze", "VIDEO", "--workers", "0", "--out", "{tmp}/r"], ["watch", "--video", "VIDEO", "--speed", "-2"],
    ["analyze", "VIDEO", "--overwrite", "--resume", "--out", "{tmp}/r"],
    ["analyze", "VIDEO", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1", "--out", "{tmp}/r"],
    ["curate", "VIDEO", "--subject", "rat1", "--subject-from", "(rat\\d+)", "--out", "{tmp}/c"],
    ["analyze", "VIDEO", "--start-time", "9999-12-31T23:59:59", "--out", "{tmp}/r"],
    ["analyze", "VIDEO", "--start-time", "0001-01-01T00:00:00", "--out", "{tmp}/r"],
])
def test_numbers_out_of_range_and_contradictions_get_exit_2_and_one_line(short_video, tmp_path, args):
    result = runner.invoke(app, [a.replace("VIDEO", str(short_video)).replace("{tmp}", str(tmp_path / "w"))
                                 for a in args])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    if "--start-time" in args:  # the reason is the year, whatever the local time zone makes of it
        assert "the year must be between 1900 and 2999" in lines[0], lines[0]
    assert not (tmp_path / "w").exists()  # nothing written


def test_every_numeric_option_has_a_range():
    """A new int or float option cannot slip past the range check: each has a rule by its name."""
    import typing

    import typer

    from rat_monitor.cli.app import NUMBER_RULES

    def walk(cmd):
        yield cmd
        for sub in getattr(cmd, "commands", {}).values():
            yield from walk(sub)

    def is_number(annotation) -> bool:
        return annotation in (int, float) or any(a in (int, float) for a in typing.get_args(annotation))

    numeric = {p.name for cmd in walk(typer.main.get_command(app)) for p in cmd.params
               if isinstance(p, typer.core.TyperOption) and is_number(p.type_descriptor.annotation)}
    assert numeric and numeric <= set(NUMBER_RULES), numeric - set(NUMBER_RULES)


def _png_header(path, width: int, height: int) -> None:
    """A PNG whose header claims WIDTHxHEIGHT pixels, with hardly any data: what a hostile or broken file is."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_images_that_claim_too_much_or_are_not_files_get_their_own_row(tmp_path):
    """A header claiming 60000x60000 pixels is refused before decoding; a FIFO named .jpg is never opened (it
    would block); each gets its own error row and the others are scored; train names the file, exit 5."""
    import os

    import cv2

    _png_header(tmp_path / "huge.png", 60000, 60000)
    _png_header(tmp_path / "big.png", 8000, 6000)  # under Pillow's own limit, over ours
    os.mkfifo(tmp_path / "pipe.jpg")
    cv2.imwrite(str(tmp_path / "face.png"), np.full((96, 96, 3), 120, np.uint8))
    out = tmp_path / "scores.csv"
    t0 = time.time()
    result = runner.invoke(app, ["predict", str(tmp_path / "huge.png"), str(tmp_path / "big.png"), str(tmp_path / "pipe.jpg"),
                                 str(tmp_path / "face.png"), "--out", str(out)])
    assert result.exit_code == 0 and time.time() - t0 < 60, result.output
    rows = {Path(r["path"]).name: r for r in read_rows(out)}
    assert rows["huge.png"]["error"].startswith("image too large (its header claims over")
    assert rows["big.png"]["error"].startswith("image too large (8000x6000 pixels")
    assert rows["pipe.jpg"]["error"] == "not a regular file" and rows["face.png"]["error"] == ""
    for bad, why in (("huge.png", "too large"), ("pipe.jpg", "not a regular file")):
        (tmp_path / "m.csv").write_text(f"path,subject,label\n{bad},a,0\nface.png,b,1\n")
        train = runner.invoke(app, ["train", "--data", str(tmp_path / "m.csv"), "--out", str(tmp_path / "model")])
        assert train.exit_code == 5 and bad in train.output and why in train.output, train.output
        assert not (tmp_path / "model").exists()


def test_inputs_that_are_not_what_they_seem_are_named_and_leave_no_run_folder(tmp_path):
    """A JPEG named .mp4 is a still picture, not a one-frame video; a garbage file is unreadable; neither leaves a
    run folder behind. A stream port nobody listens on is 'refused', one that answers garbage 'answered, but'."""
    import socket
    import threading

    import cv2

    ok, jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 99, np.uint8))
    (tmp_path / "picture.mp4").write_bytes(jpeg.tobytes())
    (tmp_path / "garbage.mp4").write_bytes(b"not a video" * 100)
    for name, said in (("picture.mp4", "is a still picture"), ("garbage.mp4", "is not a video file")):
        result = runner.invoke(app, ["analyze", str(tmp_path / name), "--out", str(tmp_path / "runs")])
        assert result.exit_code == 3 and said in result.output, result.output
        assert not (tmp_path / "runs" / Path(name).stem).exists()

    port = free_port()
    refused = runner.invoke(app, ["watch", "--url", f"http://127.0.0.1:{port}/live.ts", "--out", str(tmp_path / "w")])
    assert refused.exit_code == 3 and "refused the connection" in refused.output, refused.output
    server = socket.create_server(("127.0.0.1", port))

    def answer_garbage():
        for _ in range(5):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(1000)
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + b"garbage" * 1000)

    threading.Thread(target=answer_garbage, daemon=True).start()
    try:
        garbage = runner.invoke(app, ["watch", "--url", f"http://127.0.0.1:{port}/live.ts", "--out", str(tmp_path / "w")])
    finally:
        server.close()
    assert garbage.exit_code == 3 and "answered, but" in garbage.output, garbage.output
    assert not (tmp_path / "w").exists()


def test_a_file_still_being_recorded_is_not_marked_complete(short_video, tmp_path):
    """A file that grows while it is read (a recording in progress) ends as not complete, says so, and --resume
    later goes on instead of skipping it as finished."""
    import shutil
    import threading

    video = tmp_path / "recording.mp4"
    shutil.copyfile(short_video, video)
    out = tmp_path / "runs"
    timeline = out / "recording" / "timeline.csv"

    def keep_recording():
        deadline = time.time() + 60
        while time.time() < deadline and not timeline.exists():
            time.sleep(0.02)
        with open(video, "ab") as f:  # more bytes arrive while the run reads the file
            f.write(b"\0" * 4096)

    writer = threading.Thread(target=keep_recording)
    writer.start()
    result = runner.invoke(app, ["analyze", str(video), "--out", str(out)])
    writer.join()
    assert result.exit_code == 0, result.output
    info = json.loads((out / "recording" / "run.json").read_text())
    assert info["file_grew_while_read"] is True and info["complete"] is False
    assert "still being recorded" in result.output
    again = runner.invoke(app, ["analyze", str(video), "--out", str(out), "--resume"])
    assert again.exit_code == 0 and "already complete" not in again.output


def test_first_signal_asks_the_run_to_stop_a_second_one_aborts():
    """Ctrl-C or SIGTERM during a run becomes a stop the pipeline honours between frames (an exception raised
    inside a lock or a __del__ could hang the process or be swallowed); pressing Ctrl-C again aborts at once."""
    from rat_monitor.stopping import signals_set

    before = signal.getsignal(signal.SIGTERM)
    with signals_set() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.time() + 5
        while not stop.is_set() and time.time() < deadline:
            time.sleep(0.01)
        assert stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) == before  # the command's own handling is back after the run


def _copy_of_bundled_detector(tmp_path):
    import shutil

    from rat_monitor.models import DEFAULT_DETECTOR, resolve

    folder = tmp_path / "received-detector"
    shutil.copytree(resolve(DEFAULT_DETECTOR, "face-detector"), folder)
    return folder


def test_a_model_folder_that_names_files_outside_itself_is_refused_and_touches_nothing(tmp_path):
    """A card received from someone else that lists '../x' (or an absolute path, or a link out of the folder):
    exit 4 in one line; the outside file's mode and content are untouched by --record."""
    outside = tmp_path / "notes.txt"
    outside.write_text("someone else's file\n")
    outside.chmod(0o600)
    frames = tmp_path / "frames"
    rendered_yolo = frames / "images"
    rendered_yolo.mkdir(parents=True)
    (frames / "labels").mkdir()
    cv2.imwrite(str(rendered_yolo / "a.png"), np.zeros((120, 160, 3), np.uint8))
    for name in ("../notes.txt", str(outside), "link.bin"):
        folder = _copy_of_bundled_detector(tmp_path / name.replace("/", "_"))
        if name == "link.bin":
            (folder / name).symlink_to(outside)
        card = json.loads((folder / "card.json").read_text())
        card["files"][name] = "0" * 64
        (folder / "card.json").write_text(json.dumps(card))
        result = runner.invoke(app, ["detector", "evaluate", "--yolo", str(frames), "--detector", str(folder),
                                     "--record"])
        assert result.exit_code == 4, result.output
        assert "not a file of the model folder" in result.output and len(result.output.strip().splitlines()) == 1
        assert outside.stat().st_mode & 0o777 == 0o600 and outside.read_text() == "someone else's file\n"


def test_a_detector_whose_outputs_are_not_its_cards_is_refused(tmp_path):
    """A network whose heat map has one cell (whatever the input) passed the load check and drew a box on every
    frame: its outputs' shapes are checked against the card's input size."""
    torch = pytest.importorskip("torch")
    from rat_monitor.detect import load_detector
    from rat_monitor.errors import ModelError
    from rat_monitor.models import write_card

    class OneCell(torch.nn.Module):
        def forward(self, image):
            pooled = image.mean(dim=(2, 3), keepdim=True)  # (N, 3, 1, 1)
            return pooled[:, :1] + 5.0, pooled[:, :2], pooled[:, :2]

    folder = _copy_of_bundled_detector(tmp_path)
    torch.onnx.export(OneCell(), torch.zeros(1, 3, 160, 288), str(folder / "model.onnx"), input_names=["image"],
                      output_names=["heat", "size", "offset"], dynamic_axes={"image": {0: "n"}}, dynamo=False)
    card = json.loads((folder / "card.json").read_text())
    write_card(folder, card, list(card["files"]))
    with pytest.raises(ModelError, match="outputs"):
        load_detector(folder)


def test_resume_of_a_damaged_run_folder_is_refused_and_touches_nothing(short_video, tmp_path):
    """--resume reads the run folder back as untrusted input: a number cell edited into text, run.json as a list,
    or a crops folder linked elsewhere (resume deletes the crops of the minutes it redoes) are one line, exit 2,
    and nothing in the folder, or outside it, changes."""
    runs = tmp_path / "runs"
    assert runner.invoke(app, ["analyze", str(short_video), "--out", str(runs), "--quiet"]).exit_code == 0
    out = runs / short_video.stem
    (out / "run.json").write_text("[1, 2]")  # not complete: resume would go on with it
    frames = (out / "frames.csv").read_text().splitlines()
    header = frames[0].split(",")
    cells = frames[1].split(",")
    cells[header.index("t_s")] = "soon"
    (out / "frames.csv").write_text("\n".join([frames[0], ",".join(cells), *frames[2:]]) + "\n")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    result = runner.invoke(app, ["analyze", str(short_video), "--out", str(runs), "--resume"])
    assert result.exit_code == 2 and "Traceback" not in result.output and "run.json" in result.output, result.output
    (out / "run.json").write_text("{}")
    result = runner.invoke(app, ["analyze", str(short_video), "--out", str(runs), "--resume"])
    assert result.exit_code == 2 and "frames.csv:2: t_s holds 'soon'" in result.output, result.output
    (out / "frames.csv").write_text("\n".join(frames) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.jpg").write_bytes(b"mine")
    (out / "crops").rename(tmp_path / "old_crops")
    (out / "crops").symlink_to(elsewhere)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    result = runner.invoke(app, ["analyze", str(short_video), "--out", str(runs), "--resume"])
    assert result.exit_code == 2 and "is a link" in result.output, result.output
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert (elsewhere / "keep.jpg").read_bytes() == b"mine"
    replaced = runner.invoke(app, ["analyze", str(short_video), "--out", str(runs), "--overwrite", "--quiet"])
    assert replaced.exit_code == 0 and (elsewhere / "keep.jpg").exists() and not (out / "crops").is_symlink()
