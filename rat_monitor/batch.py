"""Archive analysis: one video into its run folder (shared by the CLI and the workers), and batches of videos on
a local process pool or an existing Dask cluster, summarised in summary.csv."""

from __future__ import annotations

import csv
import glob
import json
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

from .errors import ConfigError, RatMonitorError, SourceError
from .pipeline import Observer, Pipeline, Settings
from .sinks import RunWriter, prepare_run_dir
from .sinks.files import prepare_resume, run_state
from .sources import CaptureSource

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".ts", ".mts", ".flv")
WARMUP_S = 2.0  # a resumed run re-reads this much before its first unfinished minute, to warm up the tracker
SUMMARY_COLUMNS = ["video", "run_dir", "status", "error", "duration_s", "frames", "minutes", "minutes_observed",
                   "minutes_none", "minutes_moderate", "minutes_severe", "minutes_unknown", "alerts", "fps",
                   "minutes_unfamiliar", "refused_crops"]


def expand_inputs(items: list[str | Path]) -> list[Path]:
    """Files as given; folders to the videos inside them (recursively); glob patterns expanded."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_EXTS and f.is_file())
        elif any(ch in str(item) for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True))
            if not matches:
                raise SourceError(f"no file matches {item}")
            out += [m for m in matches if m.is_file()]
        else:
            out.append(p)
    seen, unique = set(), []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    stems = [p.stem for p in unique]
    clash = {s for s in stems if stems.count(s) > 1}
    if clash:
        raise ConfigError(f"several videos share the name {sorted(clash)[0]!r}: their run folders would collide")
    return unique


def analyze_video(video: Path, run_dir: Path, detector, classifier, settings: Settings, overwrite: bool = False,
                  resume: bool = False, observer: Observer | None = None) -> tuple[Pipeline, object] | None:
    """One archived video through the pipeline into its run folder. With resume, an interrupted run is finished
    and a complete one is skipped (returns None). A file that ends early keeps its minutes and raises."""
    state = run_state(run_dir) if resume else "new"
    if state == "complete":
        return None
    source = CaptureSource(video=video)
    try:
        earlier, resume_s = [], 0.0
        if state == "partial":
            earlier, resume_s = prepare_resume(run_dir, classifier.action_units)
            source.start_frame = max(0, int((resume_s - WARMUP_S) * source.info.fps))
            writer = RunWriter(run_dir, resume=True, action_units=classifier.action_units)
        else:
            writer = RunWriter(prepare_run_dir(run_dir, overwrite), action_units=classifier.action_units)
        pipe = Pipeline(source, detector, classifier, writer, settings, observer, earlier=earlier, resume_s=resume_s)
        totals = pipe.run()
        truncated = source.truncated and not totals.interrupted
        pipe.writer.close(pipe.run_info({"command": "analyze", "truncated": truncated,
                                         "decode_errors": source.decode_errors, "resumed_from_s": resume_s or None,
                                         "complete": not (truncated or totals.interrupted)}))
        if truncated:
            raise SourceError(f"{video} ends after {source.frames_read} of the {source.info.frame_count} frames its "
                              f"header promises (cut short or corrupt); the minutes read are kept in {run_dir}")
        return pipe, totals
    finally:
        source.close()


def summary_row(video: Path, run_dir: Path, status: str, error: str = "") -> dict:
    """One line of summary.csv, read back from the run folder (so skipped, finished runs are summarised too)."""
    row = {"video": str(video), "run_dir": str(run_dir), "status": status, "error": error}
    timeline = run_dir / "timeline.csv"
    if timeline.exists():
        with open(timeline, newline="") as f:
            rows = list(csv.DictReader(f))
        levels = [r["pain_level"] for r in rows]
        row.update({"duration_s": f"{float(rows[-1]['end_s']):.1f}" if rows else "0", "minutes": len(rows),
                    "frames": sum(int(r["frames"]) for r in rows),
                    "minutes_observed": sum(lv != "unknown" for lv in levels),
                    **{f"minutes_{k}": levels.count(k) for k in ("none", "moderate", "severe", "unknown")},
                    "alerts": sum(1 for r, prev in zip(rows, [{"alert": "0"}] + rows) if r["alert"] == "1"
                                  and prev["alert"] == "0"),
                    "minutes_unfamiliar": sum(r.get("status") == "unfamiliar" for r in rows),
                    "refused_crops": sum(int(r.get("refused_frames") or 0) for r in rows)})
    try:
        row["fps"] = json.loads((run_dir / "run.json").read_text())["totals"]["fps"]
    except (OSError, ValueError, KeyError):
        pass
    return row


def _worker_job(video: str, run_dir: str, model: str, detector: str, settings: dict, overwrite: bool, resume: bool,
                threads: int) -> dict:
    """Runs in a worker process (local pool or Dask): loads the models itself, never raises."""
    import cv2

    from .classify import load_classifier
    from .detect import load_detector
    from .select import SelectionSettings
    from .timeline import AlertRule

    cv2.setNumThreads(threads)
    try:
        s = Settings(**{**settings, "selection": SelectionSettings(**settings["selection"]),
                        "alert": AlertRule(**settings["alert"])})
        done = analyze_video(Path(video), Path(run_dir), load_detector(detector), load_classifier(model), s,
                             overwrite=overwrite, resume=resume)
        return summary_row(Path(video), Path(run_dir), "skipped (complete)" if done is None else "ok")
    except RatMonitorError as exc:
        return summary_row(Path(video), Path(run_dir), "failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken video must not stop the batch
        return summary_row(Path(video), Path(run_dir), "failed",
                           f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=2).splitlines()[-1]}")


def run_batch(videos: list[Path], out_dir: Path, model: str, detector: str, settings: Settings, workers: int = 1,
              scheduler: str | None = None, overwrite: bool = False, resume: bool = True,
              done: Callable[[dict], None] | None = None) -> list[dict]:
    """Many videos, one per worker process (or Dask task); writes OUT/summary.csv and returns its rows."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))  # do not oversubscribe the cores
    jobs = [(str(v.resolve()), str((out_dir / v.stem).resolve()), model, detector, asdict(settings), overwrite,
             resume, threads) for v in videos]
    rows = []
    t0 = time.time()
    if scheduler:
        try:
            from dask.distributed import Client
            from dask.distributed import as_completed as dask_completed
        except ImportError:
            raise ConfigError("--scheduler needs dask.distributed: pip install 'rat-monitor[cluster]'") from None
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            futures = [client.submit(_worker_job, *job, pure=False) for job in jobs]
            for fut in dask_completed(futures):
                rows.append(fut.result())
                if done:
                    done(rows[-1])
    else:
        # spawn, not fork: forking a process that already runs decoder, ONNX Runtime and progress threads can
        # deadlock the child.
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_worker_job, *job) for job in jobs]
            for fut in as_completed(futures):
                rows.append(fut.result())
                if done:
                    done(rows[-1])
    order = {j[0]: i for i, j in enumerate(jobs)}
    rows.sort(key=lambda r: order.get(str(Path(r["video"]).resolve()), 0))
    write_summary(rows, out_dir)
    for r in rows:
        r["batch_seconds"] = round(time.time() - t0, 1)
    return rows


def write_summary(rows: list[dict], out_dir: Path) -> Path:
    """OUT/summary.csv: one row per video of a batch."""
    path = Path(out_dir) / "summary.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path
