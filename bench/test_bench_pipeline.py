"""The speed targets of issue 8, measured in one run per resolution so the ratios are fair on a noisy machine:
decode-only frames/s with the same reader, full pipeline frames/s, their ratio, per-stage ms/frame, peak RSS,
start-up to first frame, and live latency on a paced local stream."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import pytest

from rat_monitor.classify import load_classifier
from rat_monitor.detect import load_detector
from rat_monitor.models import DEFAULT_CLASSIFIER, DEFAULT_DETECTOR
from rat_monitor.pipeline import Settings
from rat_monitor.runs import analyze_video, watch_source
from rat_monitor.sources import CaptureSource
from rat_monitor.synth import VideoSpec, write_video

pytestmark = pytest.mark.slow
VIDEOS = Path(__file__).parent / "results" / "videos"
MINUTES = float(os.environ.get("BENCH_MINUTES", "1"))
LIVE_SECONDS = float(os.environ.get("BENCH_LIVE_SECONDS", "60"))


def _video(width: int, height: int) -> Path:
    path = VIDEOS / f"bench_{height}p30_{MINUTES:g}min.mp4"
    if not path.exists():
        write_video(VideoSpec(width=width, height=height, fps=30, minutes=MINUTES, seed=404, subject=44,
                              schedule="surgery"), path)
    return path


def _decode_only(path: Path) -> float:
    t = time.perf_counter()
    with CaptureSource(video=path) as src:
        n = sum(1 for _ in src)
    return n / (time.perf_counter() - t)


def _pipeline(path: Path, out: Path, detector: str | Path = DEFAULT_DETECTOR) -> dict:
    det, clf = load_detector(detector), load_classifier(DEFAULT_CLASSIFIER)
    result = analyze_video(path, out, det, clf, Settings(), overwrite=True)
    return json.loads((out / "run.json").read_text())["totals"] | {"fps": result.totals.fps}


def _detector_at(width: int, height: int, folder: Path, int8: bool = False) -> Path:
    """The bundled detector's weights exported at another input (the network is fully convolutional): what a
    calibrated camera's fine-tune runs at; int8: then quantized (detect.quantize, calibrated on lab frames).
    Made in a child process, so that torch's memory and threads stay out of the process whose speed and peak
    memory are measured."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        made = pool.submit(_export_at, width, height, folder).result()
        if int8:
            made = pool.submit(_quantized, made, folder.with_name(folder.name + "-int8")).result()
    return made


def _quantized(folder: Path, out: Path) -> Path:
    from rat_monitor.detect.quantize import calibration_frames, quantize_detector

    frames = calibration_frames([])
    quantize_detector(folder, out, frames, f"{len(frames)} randomised lab frames")
    return out


def _export_at(width: int, height: int, folder: Path) -> Path:
    from rat_monitor.detect.net import export_onnx
    from rat_monitor.detect.train import network_of
    from rat_monitor.models import read_card, resolve, write_card

    bundled = resolve(DEFAULT_DETECTOR, "face-detector")
    net = network_of(bundled).eval()
    folder.mkdir(parents=True)
    export_onnx(net, folder / "model.onnx", width, height)
    write_card(folder, {**read_card(bundled), "name": folder.name, "input_size": [width, height]}, ["model.onnx"])
    return folder


@pytest.mark.parametrize("size,detector_input,int8", [((1280, 720), None, False), ((1920, 1080), None, False),
                                                      ((1920, 1080), (576, 320), False),
                                                      ((1920, 1080), (576, 320), True)],
                         ids=["720p", "1080p", "1080p-detector-576x320", "1080p-detector-576x320-int8"])
def test_archive_speed(size, detector_input, int8, tmp_path, record):
    """detector_input: a calibrated camera's larger network input (twice the bundled 288x160 a side); int8: that
    detector quantized (detector quantize)."""
    path = _video(*size)
    detector = _detector_at(*detector_input, tmp_path / "detector", int8) if detector_input else DEFAULT_DETECTOR
    decode = _decode_only(path)
    totals = _pipeline(path, tmp_path / "run", detector)
    decode_again = _decode_only(path)  # decode on both sides of the pipeline run: the machine's drift shows
    decode_fps = (decode + decode_again) / 2
    figures = {"video": path.name, "frames": totals["frames"], "decode_only_fps": round(decode_fps, 1),
               "pipeline_fps": round(totals["fps"], 1), "pipeline_over_decode": round(totals["fps"] / decode_fps, 3),
               "real_time_factor": round(totals["fps"] / 30.0, 2), "stage_ms_per_frame": totals["stage_ms_per_frame"],
               "peak_rss_mb": totals["peak_rss_mb"], "rss_mb_by_minute": totals["rss_mb_by_minute"],
               "detector_runs": totals["detector_runs"], "region_runs": totals["region_runs"]}
    if detector_input:
        record(f"pipeline_{size[1]}p_detector_{detector_input[0]}x{detector_input[1]}{'_int8' if int8 else ''}",
               figures)
        return
    # start-up: a fresh process, from launch to its first frame through the face stages
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "rat_monitor.cli", "analyze", str(path), "--out", str(tmp_path / "s"),
                    "--quiet"], check=True, capture_output=True)
    first = json.loads((tmp_path / "s" / path.stem / "run.json").read_text())["totals"]["first_frame_epoch"]
    record(f"pipeline_{size[1]}p", {**figures, "startup_to_first_frame_s": round(first - t0, 2)})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_live_latency_720p(tmp_path, record):
    """A 720p30 stream paced at real time by ffmpeg on 127.0.0.1; the pipeline runs as `watch` does."""
    path = _video(1280, 720)
    port = _free_port()
    loops = max(0, int(LIVE_SECONDS // (MINUTES * 60)))
    server = subprocess.Popen([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "quiet", "-re", "-stream_loop", str(loops),
                               "-i", str(path), "-c", "copy", "-f", "mpegts", "-listen", "1",
                               f"http://127.0.0.1:{port}/live.ts"])
    try:
        time.sleep(0.5)
        det, clf = load_detector(DEFAULT_DETECTOR), load_classifier(DEFAULT_CLASSIFIER)
        with CaptureSource(url=f"http://127.0.0.1:{port}/live.ts") as src:
            totals = watch_source(src, tmp_path / "live", det, clf, Settings(duration_s=LIVE_SECONDS - 2)).totals
    finally:
        server.kill()
    record("live_720p", {"seconds": LIVE_SECONDS, "frames": totals.frames, "dropped_frames": totals.dropped_frames,
                         "latency_ms": totals.latency_ms, "stage_ms_per_frame": totals.stage_ms_per_frame,
                         "peak_rss_mb": totals.peak_rss_mb})
