"""Archive batches: the videos of a command line, one after the other in this process, on a local process pool or
on an existing Dask cluster, each into its run folder (runs.analyze_video), summarised in summary.csv."""

from __future__ import annotations

import csv
import glob
import io
import multiprocessing
import os
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from .classify import load_classifier
from .detect import load_detector
from .errors import ConfigError, RatMonitorError, RunExists, SourceError, first_line
from .pipeline import Observer, Settings
from .runs import analyze_video
from .models import atomic_write_text
from .sinks.files import ANIMAL_COLUMN, make_dir, pain_levels
from .sinks.readback import DamagedRun, read_info, read_minutes
from .stopping import signals_set
from .tables import read_rows
from .select import SelectionSettings
from .timeline import AlertRule

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".ts", ".mts", ".flv")
KEPT = "kept (earlier run)"  # refused to replace an existing run without --overwrite or --resume
# animal: empty for a run of one animal; a run of several animals (--animals N) has a row per animal instead
SUMMARY_COLUMNS = ["video", "run_dir", "status", "error", "duration_s", "frames", "minutes", "minutes_observed",
                   "minutes_none", "minutes_moderate", "minutes_severe", "minutes_unknown", "alerts", "fps",
                   "minutes_unfamiliar", "refused_crops", "minutes_pain", "animal"]


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
        try:
            real = p.resolve()
        except (OSError, RuntimeError):  # RuntimeError: Python's word for a symlink loop
            raise SourceError(f"{p} is a symbolic link that leads back to itself") from None
        if real not in seen:
            seen.add(real)
            unique.append(p)
    stems = [p.stem for p in unique]
    clash = {s for s in stems if stems.count(s) > 1}
    if clash:
        raise ConfigError(f"several videos share the name {sorted(clash)[0]!r}: their run folders would collide")
    return unique


def summary_row(video: Path, run_dir: Path, status: str, error: str = "") -> dict:
    """One line of summary.csv, read back from the run folder (so skipped, finished runs are summarised too)."""
    row = {"video": str(video), "run_dir": str(run_dir), "status": status, "error": error}
    try:  # the folder is read back as untrusted input: a damaged one leaves its counts empty, said in error
        info = read_info(run_dir)
        rows = read_minutes(run_dir) if (run_dir / "timeline.csv").exists() else None
    except DamagedRun as exc:
        info, rows = {}, None
        row["error"] = row["error"] or first_line(exc)
    if rows is not None:
        animals = [a for a in dict.fromkeys(r.get(ANIMAL_COLUMN, "") for r in rows) if a]
        if animals:  # several animals: the counts are each animal's, a row each (animal_rows)
            row["animals"] = [{"animal": a, **_minute_counts([r for r in rows if r[ANIMAL_COLUMN] == a], info)}
                              for a in animals]
        else:
            row.update(_minute_counts(rows, info))
    if "fps" in info.get("totals", {}):
        row["fps"] = info["totals"]["fps"]
    return row


def _minute_counts(rows: list[dict], info: dict) -> dict:
    levels = [r["pain_level"] for r in rows]
    shown = ("none", *pain_levels(info, rows), "unknown")  # a level the model cannot give stays empty
    return {"duration_s": f"{float(rows[-1]['end_s']):.1f}" if rows else "0", "minutes": len(rows),
            "frames": sum(int(r["frames"]) for r in rows),
            "minutes_observed": sum(lv != "unknown" for lv in levels),
            **{f"minutes_{k}": levels.count(k) if k in shown else ""
               for k in ("none", "pain", "moderate", "severe", "unknown")},
            "alerts": sum(1 for r, prev in zip(rows, [{"alert": "0"}] + rows) if r["alert"] == "1"
                          and prev["alert"] == "0"),
            "minutes_unfamiliar": sum(r.get("status") == "unfamiliar" for r in rows),
            "refused_crops": sum(int(r.get("refused_frames") or 0) for r in rows)}


def animal_rows(row: dict) -> list[dict]:
    """A video's summary row as summary.csv holds it: itself, or one row per animal of a run of several."""
    return [{**row, **counts} for counts in row.get("animals", [])] or [row]


@dataclass(frozen=True)
class Job:
    """A batch's settings, resolved once and handed to every video, in this process or a worker's."""

    model: str
    detector: str
    settings: Settings
    overwrite: bool = False
    resume: bool = False
    annotate: bool = False  # also RUN/annotated.mp4
    start_epoch: float | None = None  # the clock time of the (single) video's first frame, when the user gave it

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Job:
        s = d["settings"]
        settings = Settings(**{**s, "selection": SelectionSettings(**s["selection"]), "alert": AlertRule(**s["alert"])})
        return cls(**{**d, "settings": settings})


def analyze_one(video: Path, out_dir: Path, job: Job, detector, classifier, observer: Observer | None = None,
                stop: threading.Event | None = None) -> dict:
    """One video of a batch into OUT/<stem>/ -> its summary row; a problem the user can fix becomes a failed row
    (with the exit code it stands for) instead of stopping the batch. stop: set, the video ends as interrupted."""
    run_dir = out_dir / video.stem
    try:
        result = analyze_video(video, run_dir, detector, classifier, job.settings, overwrite=job.overwrite,
                               resume=job.resume, observer=observer, annotate=job.annotate,
                               start_epoch=job.start_epoch, stop=stop)
    except RunExists as exc:  # the earlier run stands, and so does its summary row
        return {**summary_row(video, run_dir, KEPT, str(exc)), "exit_code": exc.exit_code}
    except RatMonitorError as exc:
        return {**summary_row(video, run_dir, "failed", str(exc)), "exit_code": exc.exit_code}
    if result is None:
        return summary_row(video, run_dir, "skipped (complete)")
    return summary_row(video, run_dir, "interrupted" if result.totals.interrupted else "ok")


class _ForwardFrames(Observer):
    """In a worker process: hands the frame reports of its video to the parent, at most a few a second."""

    def __init__(self, queue, video: str):
        self.queue, self.video, self.last = queue, video, 0.0

    def frame(self, index: int, t_s: float, n_faces: int, stats: dict) -> None:
        now = time.monotonic()
        if now - self.last >= 0.25:
            self.last = now
            self.queue.put((self.video, index, t_s, n_faces, stats))


NOT_STARTED = "not started (the batch was stopped)"


def _ignore_interrupts() -> None:
    """A local worker leaves Ctrl-C to the parent, which tells it to stop (an idle worker hit by Ctrl-C broke the
    whole pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _watch_stop(shared_stop, local: threading.Event, finished: threading.Event) -> None:
    """In a worker: turns the parent's stop (a manager Event, one IPC call a second) into the run's own Event."""
    while not finished.is_set():
        try:
            if shared_stop.wait(1.0):
                local.set()
                return
        except (EOFError, OSError):  # the parent's manager went away
            local.set()
            return


def _worker_job(video: str, out_dir: str, job: dict, threads: int, frames_queue=None, shared_stop=None,
                started=None) -> dict:
    """Runs in a worker process (local pool or Dask): loads the models itself, never raises. frames_queue: where
    its frame reports go (local pool), or None. shared_stop: the parent's stop Event (local pool): set before
    the video starts, it is not started; set while it runs, it ends as interrupted. started: the parent's
    manager dict where the video is marked when it begins (so a worker that dies is told apart from one that
    never began)."""
    import cv2

    cv2.setNumThreads(threads)
    if shared_stop is not None and shared_stop.is_set():
        return summary_row(Path(video), Path(out_dir) / Path(video).stem, NOT_STARTED)
    if started is not None:
        started[video] = os.getpid()
    stop, finished = threading.Event(), threading.Event()
    if shared_stop is not None:
        threading.Thread(target=_watch_stop, args=(shared_stop, stop, finished), daemon=True).start()
    try:
        j = Job.from_dict(job)
        observer = _ForwardFrames(frames_queue, video) if frames_queue is not None else None
        return analyze_one(Path(video), Path(out_dir), j, load_detector(j.detector), load_classifier(j.model),
                           observer, stop)
    except RatMonitorError as exc:
        return {**summary_row(Path(video), Path(out_dir) / Path(video).stem, "failed", str(exc)),
                "exit_code": exc.exit_code}
    except Exception as exc:  # noqa: BLE001 - one broken video must not stop the batch
        return summary_row(Path(video), Path(out_dir) / Path(video).stem, "failed",
                           f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=2).splitlines()[-1]}")
    finally:
        finished.set()


def run_batch(videos: list[Path], out_dir: Path, job: Job, workers: int = 1, scheduler: str | None = None,
              done: Callable[[dict], None] | None = None,
              observer_for: Callable[[Path], Observer] | None = None, models: tuple | None = None) -> list[dict]:
    """Every analysis of archived videos, one or many: in this process one after the other (workers=1; the
    models loaded once, observer_for(video) sees each video's frames), on a spawned process pool, or on a Dask
    cluster. models: the (detector, classifier) already loaded, used in this process instead of loading them
    again. done(row) is called as each video finishes; a Ctrl-C or SIGTERM stops the batch: the running videos
    end as interrupted, the others are not started (each has its row).
    With several videos OUT/summary.csv is written. Returns the summary rows in the order given."""
    out_dir = make_dir(out_dir)
    rows = []

    def finished(row: dict) -> None:
        rows.append(row)
        if done:
            done(row)

    t0 = time.time()
    if scheduler or workers > 1:
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))  # do not oversubscribe the cores
        jobs = [(str(v.resolve()), str(out_dir.resolve()), job.to_dict(), threads) for v in videos]
        _run_parallel(jobs, workers, scheduler, finished, observer_for)
        order = {str(v.resolve()): i for i, v in enumerate(videos)}
        rows.sort(key=lambda r: order.get(str(Path(r["video"]).resolve()), 0))
    else:
        detector, classifier = models or (load_detector(job.detector), load_classifier(job.model))
        with signals_set() as stop:  # the run in this thread stops between two frames
            for k, video in enumerate(videos):
                finished(analyze_one(video, out_dir, job, detector, classifier,
                                     observer_for(video) if observer_for else None, stop))
                if rows[-1]["status"] == "interrupted":  # Ctrl-C or SIGTERM: the others are not started
                    for later in videos[k + 1:]:
                        finished(summary_row(later, out_dir / later.stem, NOT_STARTED))
                    break
    if len(videos) > 1:
        write_summary(rows, out_dir)
    for r in rows:
        r["batch_seconds"] = round(time.time() - t0, 1)
    return rows


def _run_parallel(jobs: list[tuple], workers: int, scheduler: str | None, finished: Callable[[dict], None],
                  observer_for: Callable[[Path], Observer] | None = None) -> None:
    if scheduler:
        try:
            from dask.distributed import Client, Event
            from dask.distributed import as_completed as dask_completed
        except ImportError:
            raise ConfigError("--scheduler needs dask.distributed: pip install 'rat-monitor[cluster]'") from None
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            # The cluster-wide stop: the workers' runs watch it as the local pool's watch its manager Event.
            stop = Event(f"rat-monitor-stop-{uuid.uuid4().hex}", client=client)
            futures = {client.submit(_worker_job, *job, None, stop, pure=False): job for job in jobs}
            pending = set(futures)

            def outcome(fut) -> None:
                try:
                    finished(fut.result())
                except Exception as exc:  # noqa: BLE001 - a worker the cluster lost (KilledWorker): this video only
                    finished(_job_row(futures[fut], "failed", f"{CRASHED} ({type(exc).__name__})"))

            try:
                for fut in dask_completed(list(pending)):
                    pending.discard(fut)
                    outcome(fut)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the running videos end interrupted; the queued ones
                stop.set()  # end at once as "not started" (a job checks the stop before it loads anything)
                for fut in dask_completed(list(pending)):
                    outcome(fut)
        return
    # spawn, not fork: forking a process that already runs decoder, ONNX Runtime and progress threads can
    # deadlock the child.
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        frames_queue = manager.Queue() if observer_for else None
        relay = threading.Thread(target=_relay_frames, args=(frames_queue, observer_for), daemon=True)
        if frames_queue is not None:
            relay.start()
        stop, started = manager.Event(), manager.dict()
        try:
            # A worker killed by the system (out of memory, kill -9) breaks the pool: the videos it and its
            # neighbours were running are marked crashed, and those not begun go on in a fresh pool.
            for _ in range(MAX_POOLS):
                jobs = _run_pool(jobs, workers, context, frames_queue, stop, started, finished)
                if not jobs:
                    return
            for job in jobs:
                finished(_job_row(job, "failed", f"not analysed: {MAX_POOLS} worker pools in a row died before it "
                                                 "began"))
        finally:
            if frames_queue is not None:
                frames_queue.put(None)
                relay.join(timeout=5)


MAX_POOLS = 3  # fresh pools tried after a worker died, for the videos not begun yet
CRASHED = ("crashed: its worker process died (killed by the system, e.g. out of memory, or kill -9) while it "
           "ran, or beside the one that did; the run stopped without closing: --resume finishes it")


def _job_row(job: tuple, status: str, error: str = "") -> dict:
    """The summary row of a job (video, out_dir, ...) that did not return its own; a failure exits 1."""
    video, out_dir = Path(job[0]), Path(job[1])
    row = summary_row(video, out_dir / video.stem, status, error)
    return {**row, "exit_code": 1} if status == "failed" else row


def _run_pool(jobs: list[tuple], workers: int, context, frames_queue, stop, started,
              finished: Callable[[dict], None]) -> list[tuple]:
    """The jobs on one process pool; returns those not begun when a worker died (the pool is then broken)."""
    from concurrent.futures.process import BrokenProcessPool

    again: list[tuple] = []

    def outcome(fut) -> None:
        try:
            finished(fut.result())
        except BrokenProcessPool:
            if futures[fut][0] in started:
                finished(_job_row(futures[fut], "failed", CRASHED))
            else:
                again.append(futures[fut])

    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context,
                             initializer=_ignore_interrupts) as pool:
        futures = {pool.submit(_worker_job, *job, frames_queue, stop, started): job for job in jobs}
        pending = set(futures)
        try:
            for fut in as_completed(futures):
                pending.discard(fut)
                outcome(fut)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: start nothing new, stop the running videos, wait
            stop.set()
            for fut in list(pending):
                if fut.cancel():
                    pending.discard(fut)
                    finished(_job_row(futures[fut], NOT_STARTED))
            for fut in as_completed(pending):
                outcome(fut)
            for job in again:
                finished(_job_row(job, NOT_STARTED))
            return []
    return again


def _relay_frames(frames_queue, observer_for: Callable[[Path], Observer]) -> None:
    """In the parent: the workers' frame reports to each video's observer (the CLI's progress bars)."""
    observers: dict[str, Observer] = {}
    while True:
        try:
            report = frames_queue.get()
        except (EOFError, OSError):  # the manager went away: the batch is over
            return
        if report is None:
            return
        video, index, t_s, n_faces, stats = report
        if video not in observers:
            observers[video] = observer_for(Path(video))
        observers[video].frame(index, t_s, n_faces, stats)


def write_summary(rows: list[dict], out_dir: Path) -> Path:
    """OUT/summary.csv: one row per video ever analysed into OUT, the latest outcome of each. A video whose earlier
    run was kept (not replaced) keeps its earlier row; rows of videos not in this batch stay."""
    path = Path(out_dir) / "summary.csv"
    merged: dict[str, list[dict]] = {}  # video -> its rows (one, or one per animal)
    if path.exists():
        try:
            for r in read_rows(path):
                if r.get("video"):
                    merged.setdefault(r["video"], []).append(r)
        except (OSError, UnicodeDecodeError, csv.Error, KeyError):
            merged = {}  # unreadable: rewritten from this batch
    for r in rows:
        if r["status"] != KEPT or r["video"] not in merged:
            merged[r["video"]] = animal_rows(r)
    lines = io.StringIO()
    w = csv.DictWriter(lines, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(r for video_rows in merged.values() for r in video_rows)
    atomic_write_text(path, lines.getvalue())
    return path
