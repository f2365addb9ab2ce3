"""The pipeline end to end through the CLI: archives, live streams, Ctrl-C, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from rat_monitor.cli import app
from rat_monitor.sinks import FRAME_COLUMNS, TIMELINE_COLUMNS
from helpers import free_port, read_rows, serve_stream

runner = CliRunner()
RM = [sys.executable, "-m", "rat_monitor.cli"]


def test_analyze_minutes_agree_with_truth(two_minute_video, tmp_path):
    result = runner.invoke(app, ["analyze", str(two_minute_video), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    run = tmp_path / two_minute_video.stem
    rows = read_rows(run / "timeline.csv")
    assert list(rows[0])[:len(TIMELINE_COLUMNS)] == TIMELINE_COLUMNS
    truth = read_rows(two_minute_video.with_name(two_minute_video.stem + ".truth.csv"))
    assert [int(r["minute"]) for r in rows] == [0, 1]
    for r in rows:
        m = int(r["minute"])
        minute_truth = [t for t in truth if int(float(t["t_s"]) // 60) == m]
        assert int(r["frames"]) == len(minute_truth)
        visible = sum(t["visible"] == "1" for t in minute_truth) / len(minute_truth)
        coverage = int(r["face_frames"]) / int(r["frames"])
        assert abs(coverage - visible) < 0.1, (m, coverage, visible)
        assert int(r["scored_frames"]) > 0 and r["pain_level"] != "unknown"
    # the painful minute scores higher than the control minute
    assert float(rows[1]["pain_prob"]) > float(rows[0]["pain_prob"])
    frames = read_rows(run / "frames.csv")
    assert list(frames[0])[:len(FRAME_COLUMNS)] == FRAME_COLUMNS
    assert len(frames) == sum(int(r["scored_frames"]) + int(r["refused_frames"]) for r in rows)
    assert sum(f["refused"] == "0" for f in frames) == sum(int(r["scored_frames"]) for r in rows)
    for f in frames:  # every scored frame shows a truly visible face
        assert truth[int(f["frame"])]["visible"] == "1"
        assert (run / f["crop"]).exists()
    info = json.loads((run / "run.json").read_text())
    assert info["totals"]["frames"] == len(truth)
    assert info["models"]["classifier"]["synthetic"] is True
    assert all(len(h) == 64 for h in info["models"]["detector"]["files"].values())


def test_analyze_subprocess_and_no_silent_overwrite(short_video, tmp_path):
    cmd = RM + ["analyze", str(short_video), "--out", str(tmp_path), "--quiet"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "short" / "timeline.csv").exists()
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    assert "Traceback" not in again.stderr
    forced = subprocess.run(cmd + ["--overwrite"], capture_output=True, text=True)
    assert forced.returncode == 0
    # a run inside another run's folder would be read as part of it: refused, nothing written there
    nested = subprocess.run(RM + ["analyze", str(short_video), "--out", str(tmp_path / "short"), "--quiet"],
                            capture_output=True, text=True)
    assert nested.returncode == 2 and "inside the run folder" in nested.stderr, nested.stderr
    assert not (tmp_path / "short" / "short").exists()


EXIT = {"missing": 3, "directory": 3, "text": 3, "empty": 3, "truncated": 3, "model": 4, "camera": 3, "url": 3,
        "unwritable": 2}  # the README's codes: 2 settings, 3 source, 4 model


@pytest.mark.parametrize("case", list(EXIT))
def test_bad_input_gives_one_line_and_the_documented_exit_code(case, tmp_path, short_video):
    args = ["analyze"]
    if case == "missing":
        args += [str(tmp_path / "nope.mp4")]
    elif case == "directory":
        args += [str(tmp_path)]
    elif case == "text":
        (tmp_path / "notes.mp4").write_text("this is not a video\n" * 100)
        args += [str(tmp_path / "notes.mp4")]
    elif case == "empty":
        (tmp_path / "empty.mp4").write_bytes(b"")
        args += [str(tmp_path / "empty.mp4")]
    elif case == "truncated":
        data = short_video.read_bytes()
        (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 50])
        args += [str(tmp_path / "cut.mp4")]
    elif case == "model":
        args += [str(short_video), "--model", "no-such-model"]
    elif case == "camera":
        args = ["watch", "--camera", "97"]
    elif case == "url":
        args = ["watch", "--url", f"http://127.0.0.1:{free_port()}/none.ts"]
    elif case == "unwritable":
        if os.geteuid() == 0:
            target = Path("/proc/rat-monitor-out")  # not creatable even for root
        else:
            (tmp_path / "ro").mkdir()
            (tmp_path / "ro").chmod(0o500)
            target = tmp_path / "ro" / "out"
        args += [str(short_video), "--out", str(target)]
    out_dir = [] if case in ("camera", "url", "unwritable") or "--out" in args else ["--out", str(tmp_path / "o")]
    proc = subprocess.run(RM + args + out_dir, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT[case], proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_watch_url_writes_rows_stamped_with_wall_clock(short_video, tmp_path):
    port = free_port()
    server = serve_stream(short_video, port)
    try:
        time.sleep(0.5)
        before = time.time()
        proc = subprocess.run(RM + ["watch", "--url", f"http://127.0.0.1:{port}/live.ts", "--out", str(tmp_path),
                                    "--duration", "12"], capture_output=True, text=True, timeout=120)
    finally:
        server.kill()
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "timeline.csv")
    assert len(rows) == 1
    stamp = datetime.fromisoformat(rows[0]["start_time"]).timestamp()
    assert before - 2 <= stamp <= time.time()
    # about 12 s at 15 fps (the server sends a short burst ahead when a client connects)
    assert 100 <= int(rows[0]["frames"]) + int(rows[0]["dropped_frames"]) <= 12 * 15 * 1.25
    assert json.loads((tmp_path / "run.json").read_text())["inputs"]["live"] is True


def test_ctrl_c_closes_the_partial_minute_and_exits_zero(short_video, tmp_path):
    # A runner that starts the suite in the background (non-interactive `cmd &`) leaves SIGINT ignored, and a
    # child inherits that; give the CLI the default disposition a terminal's Ctrl-C meets.
    proc = subprocess.Popen(RM + ["watch", "--video", str(short_video), "--realtime", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(6)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    rows = read_rows(tmp_path / "timeline.csv")
    assert len(rows) == 1 and 0 < int(rows[0]["frames"]) < 40 * 15
    assert json.loads((tmp_path / "run.json").read_text())["totals"]["interrupted"] is True


SAMPLES = Path(__file__).resolve().parent.parent / "sample_videos"


def test_alert_on_the_onset_sample_and_never_on_the_control(tmp_path):
    """Pain from 1:00 in the onset sample: three known minutes at or above 0.7 put the alert in minute 3
    (2-4 allowed); the control never alerts. The smoothed curve follows the truth's share of painful frames."""
    alert_cmd = f"cat > {tmp_path / 'alert.json'}"
    result = runner.invoke(app, ["analyze", str(SAMPLES / "albino_onset.mp4"), str(SAMPLES / "albino_control.mp4"),
                                 "--out", str(tmp_path), "--quiet", "--on-alert", alert_cmd, "--workers", "2"])
    assert result.exit_code == 0, result.output
    onset = read_rows(tmp_path / "albino_onset" / "timeline.csv")
    raised = [json.loads(line) for line in (tmp_path / "albino_onset" / "alerts.jsonl").read_text().splitlines()]
    assert [e["event"] for e in raised] == ["raised"] and 2 <= raised[0]["minute"] <= 4
    assert json.loads((tmp_path / "alert.json").read_text())["minute"] == raised[0]["minute"]  # --on-alert ran
    assert (tmp_path / "albino_control" / "alerts.jsonl").read_text() == ""  # there, and empty: no alert
    assert not any(r["alert"] == "1" for r in read_rows(tmp_path / "albino_control" / "timeline.csv"))
    truth = read_rows(SAMPLES / "albino_onset.truth.csv")
    errors = []
    for r in onset:
        minute = [t for t in truth if int(float(t["t_s"]) // 60) == int(r["minute"])]
        share = sum(t["pain_level"] != "0" for t in minute) / len(minute)
        errors.append(abs(float(r["pain_prob_smoothed"]) - share))
    assert np.mean(errors) < 0.2, errors
    for name in ("albino_onset", "albino_control"):  # the bundled detector knows its own synthetic camera
        assert json.loads((tmp_path / name / "run.json").read_text())["camera"]["known"] is True
    assert "does not know this camera" not in result.output


def test_a_camera_the_detector_does_not_know_is_named_with_the_command_that_calibrates_it(unknown_camera_video,
                                                                                          tmp_path):
    """Real overhead frames of an albino rat under a ring light, a setup the bundled detector finds none of the
    faces of: its few boxes are never sure; the run says the detector does not know the camera and how to
    calibrate it, in the terminal, run.json and the report, instead of a face% that reads like coverage."""
    result = runner.invoke(app, ["analyze", str(unknown_camera_video), "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "does not know this camera" in said and f"rat-monitor label {unknown_camera_video} --project" in said
    check = json.loads((tmp_path / unknown_camera_video.stem / "run.json").read_text())["camera"]
    assert check["known"] is False and check["confident_share"] < 0.2 and check["detector"] == "rat-face-detector"
    report = runner.invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "r.html")])
    assert report.exit_code == 0, report.output
    assert "Camera unknown to the detector" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGINT, 2)],
                         ids=["ctrl-c", "sigterm", "sigterm-2-workers", "ctrl-c-2-workers"])
def test_ctrl_c_or_sigterm_stops_a_batch_marks_the_video_interrupted_and_exits_130(tmp_path, sig, workers):
    """The running videos end as interrupted, the queued ones are never started (each says so in summary.csv),
    and the command exits 130 promptly, with one process or with workers."""
    names = ["albino_onset", "albino_control", "hooded_hard"]
    videos = [str(SAMPLES / f"{n}.mp4") for n in names]
    def own_group_with_ctrl_c():  # a CI job started in the background has SIGINT ignored: give it back, as a terminal
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(RM + ["analyze", *videos, "--out", str(tmp_path), "--quiet", "--workers", str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=own_group_with_ctrl_c)
    running = names[:workers]
    deadline = time.time() + 120
    while time.time() < deadline and not all((tmp_path / n / "timeline.csv").exists() for n in running):
        time.sleep(0.05)
    time.sleep(1.0)  # inside the first video(s)
    # Ctrl-C reaches the whole process group, as a terminal sends it; SIGTERM the command only, as a service stop
    os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
    t0 = time.time()
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 130, stderr
    assert time.time() - t0 < 30  # promptly: the other videos did not run to their end
    summary = {Path(r["video"]).stem: r["status"] for r in read_rows(tmp_path / "summary.csv")}
    assert summary == {n: "interrupted" if n in running else "not started (the batch was stopped)" for n in names}
    assert not (tmp_path / names[-1]).exists()  # the batch stopped: the last video never started
    for n in running:
        info = json.loads((tmp_path / n / "run.json").read_text())
        assert info["complete"] is False and info["totals"]["interrupted"] is True


def test_annotated_video_for_checking_by_eye(short_video, tmp_path):
    result = runner.invoke(app, ["analyze", str(short_video), "--out", str(tmp_path), "--quiet", "--annotate"])
    assert result.exit_code == 0, result.output
    run = tmp_path / short_video.stem
    info = json.loads((run / "run.json").read_text())
    cap = cv2.VideoCapture(str(run / "annotated.mp4"))
    decoded, width = 0, 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        decoded, width = decoded + 1, img.shape[1]
    assert decoded == info["totals"]["annotated_frames"] > 0
    frames = info["totals"]["frames"]
    assert decoded == -(-frames // 2)  # 15 fps source: every 2nd frame (about 10 per second)
    assert 0 < width <= 480
    assert info["totals"]["stage_ms_per_frame"]["annotate"] < info["totals"]["stage_ms_per_frame"]["detect"]


def test_an_alert_command_runs_beside_the_analysis_bounded_and_said_when_it_fails(tmp_path):
    """--on-alert never holds the frames: handing an alert to a command that takes 45 s returns at once (it ran on
    the pipeline's thread and held a live camera up to 30 s per alert); a command that fails or outlives its
    timeout is said in one line and killed with what it started; the end waits a bounded time, then says what
    was left."""
    import os
    import time

    from rat_monitor.sinks.alerts import AlertCommand

    said: list[str] = []
    pids = tmp_path / "pids"
    slow = AlertCommand(f"echo $$ >> {pids}; sleep 45", said.append, timeout_s=1.0)
    began = time.monotonic()
    for minute in range(3):
        slow.submit({"minute": minute})
    assert time.monotonic() - began < 0.2  # the caller (a pipeline) goes on at once
    time.sleep(2.5)
    assert any("did not finish within 1 s (killed)" in s and "minute 0" in s for s in said), said
    slow.close(wait_s=0.2)
    assert any("not handed to the command before the end" in s for s in said), said
    time.sleep(0.3)
    for pid in map(int, pids.read_text().split()):  # every shell it started, and its sleep, are gone
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    failing: list[str] = []
    broken = AlertCommand("echo no mail server >&2; exit 3", failing.append)
    broken.submit({"minute": 5})
    broken.close()
    assert failing == ["--on-alert command exited with 3: no mail server"]
    done: list[str] = []
    ok = AlertCommand(f"cat > {tmp_path / 'alert.json'}", done.append)
    ok.submit({"minute": 7})
    ok.close()
    assert done == [] and json.loads((tmp_path / "alert.json").read_text()) == {"minute": 7}


def test_a_worker_killed_by_the_system_marks_its_video_crashed_and_the_batch_goes_on(tmp_path):
    """A worker killed by the kernel (out of memory, kill -9) breaks the process pool: its video is marked
    crashed in summary.csv (resumable), the videos not begun yet are analysed in a fresh pool, every video has
    its row, and the command exits 1 in one line per failure, never a traceback."""
    names = ["albino_onset", "albino_control", "hooded_hard"]
    videos = [SAMPLES / f"{n}.mp4" for n in names]
    proc = subprocess.Popen(RM + ["analyze", *map(str, videos), "--out", str(tmp_path), "--quiet", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, deadline = None, time.time() + 120
    while victim is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
        for fd in Path("/proc").glob("[0-9]*/fd/*"):  # the worker process that is reading the first video
            try:
                if fd.parts[2] != str(proc.pid) and os.readlink(fd) == str(videos[0].resolve()):
                    victim = int(fd.parts[2])
                    break
            except OSError:
                continue
    assert victim is not None, "no worker opened the first video"
    time.sleep(1.0)
    os.kill(victim, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr and "crashed" in stderr
    rows = {Path(r["video"]).stem: r for r in read_rows(tmp_path / "summary.csv")}
    assert set(rows) == set(names)
    assert rows["albino_onset"]["status"] == "failed" and rows["albino_onset"]["error"].startswith("crashed")
    assert rows["hooded_hard"]["status"] == "ok"  # not begun when the worker died: analysed in a fresh pool
    assert rows["albino_control"]["status"] in ("ok", "failed")  # running beside it: stopped with the pool
    assert not (tmp_path / "albino_onset" / "run.json").exists()  # resumable, never passed off as complete
