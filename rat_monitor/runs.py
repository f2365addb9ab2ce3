"""One source into its run folder, the single path every command takes: archived videos (with resume after a
crash) and live sources. Each returns the run's result; the run folder is complete on disk when it does."""

from __future__ import annotations

import threading
from pathlib import Path

from .errors import RunExists, SourceError
from .pipeline import Observer, Pipeline, RunResult, Settings
from .sinks import RunWriter, prepare_run_dir
from .sinks.annotate import Annotator
from .sinks.files import prepare_resume, recorded_source, recorded_start, run_state
from .sinks.readback import check_run
from .sources import CaptureSource

WARMUP_S = 2.0  # a resumed run re-reads this much before its first unfinished minute, to warm up the tracker


def analyze_video(video: Path, run_dir: Path, detector, classifier, settings: Settings, overwrite: bool = False,
                  resume: bool = False, observer: Observer | None = None, annotate: bool = False,
                  start_epoch: float | None = None, stop: threading.Event | None = None) -> RunResult | None:
    """One archived video through the pipeline into its run folder. With resume, an interrupted run is finished
    and a complete one is skipped (returns None). A file that ends early keeps its minutes and raises. annotate:
    also RUN/annotated.mp4 (the part analysed by this call). start_epoch: the clock time of the first frame
    (else the container's, or the resumed run's). stop: set, the run ends as after Ctrl-C (a batch told to stop)."""
    state = run_state(run_dir) if resume else "new"
    if state == "complete":
        done = recorded_source(run_dir)
        if done is not None and Path(done).resolve() != Path(video).resolve():
            raise RunExists(f"{run_dir} holds a finished run of {done}, not of {video}; give another --out (or "
                            "--overwrite to replace it)")
        return None
    earlier, resume_s = [], 0.0
    if state == "partial":
        check_run(run_dir)
        start_epoch = start_epoch or recorded_start(run_dir)
        earlier, resume_s = prepare_resume(run_dir, classifier.action_units, several=settings.animals > 1)
    size_at_start = Path(video).stat().st_size if Path(video).is_file() else None
    # The source is opened before a new run folder is made: an unreadable input leaves no empty folder behind.
    source = CaptureSource(video=video, start_s=max(0.0, resume_s - WARMUP_S), start_epoch=start_epoch)
    if state != "partial":
        try:
            prepare_run_dir(run_dir, overwrite)
        except BaseException:
            source.close()
            raise
    annotator = None
    try:
        with RunWriter(run_dir, resume=state == "partial", action_units=classifier.action_units,
                       animals=settings.several()) as writer:
            if annotate:
                info = source.info
                annotator = Annotator(run_dir / "annotated.mp4", info.width, info.height, info.fps or 30.0,
                                      settings.selection.window_s)
            pipe = Pipeline(source, detector, classifier, writer, settings, observer, earlier=earlier,
                            resume_s=resume_s, annotator=annotator, stop=stop)
            result = pipe.run()
            if annotator:
                annotated, annotator = annotator.close(), None
                result.totals.annotated_frames = annotated
            truncated = source.truncated and not result.totals.interrupted
            # A file still being recorded grows while it is read: the run is not complete, and --resume later
            # goes on from where it stopped instead of skipping the rest.
            grew = size_at_start is not None and Path(video).stat().st_size != size_at_start
            writer.close(pipe.run_info({"command": "analyze", "truncated": truncated, "file_grew_while_read": grew,
                                        "decode_errors": source.decode_errors, "frames_lost_in_file": source.clock.lost,
                                        "deinterlaced": source.deinterlaced, "resumed_from_s": resume_s or None,
                                        "time_discontinuities": source.clock.discontinuities,
                                        "complete": not (truncated or grew or result.totals.interrupted)}))
        if truncated:
            raise SourceError(f"{video} ends after {source.frames_read} of the {source.info.frame_count} frames its "
                              f"header promises (cut short or corrupt); the minutes read are kept in {run_dir}")
        return result
    finally:
        if annotator:  # the run ended by an error: keep what was annotated
            annotator.close()
        source.close()


def watch_source(source: CaptureSource, run_dir: Path, detector, classifier, settings: Settings,
                 overwrite: bool = False, observer: Observer | None = None, resume: bool = False,
                 stop: threading.Event | None = None) -> RunResult:
    """A live source (camera, stream, or a file read as if live) into its run folder until it ends, is given up
    or Ctrl-C stops it. resume: continue the run already in the folder (after a crash, or a stop): its complete
    minutes stay, the time between becomes source_lost minutes, and time counts from its start (the source
    must have been opened with start_epoch=recorded_start(run_dir)). stop: set, the run ends as after Ctrl-C."""
    earlier: list = []
    state = run_state(run_dir) if resume else "new"
    if state != "new":
        done = recorded_source(run_dir)
        if done is not None and done != source.info.name:
            raise RunExists(f"{run_dir} holds a run of {done}, not of {source.info.name}; give another --out")
        check_run(run_dir)
        earlier, _ = prepare_resume(run_dir, classifier.action_units, several=settings.animals > 1)
    else:
        prepare_run_dir(run_dir, overwrite)
    with RunWriter(run_dir, resume=state != "new", action_units=classifier.action_units,
                   animals=settings.several()) as writer:
        pipe = Pipeline(source, detector, classifier, writer, settings, observer, earlier=earlier, stop=stop)
        result = pipe.run()
        # complete: the source ended or was given up; a run stopped by Ctrl-C or SIGTERM is interrupted instead.
        writer.close(pipe.run_info({"command": "watch", "complete": not result.totals.interrupted,
                                    "outages_s": source.outages,
                                    "source_given_up_at_s": source.given_up_at_s,
                                    "resumed_after_minute": earlier[-1].minute if earlier else None}))
    return result


def watch_sources(runs: dict[str, tuple[CaptureSource, Path, Observer | None]], detector, classifier,
                  settings: Settings, overwrite: bool = False, resume: bool = False) -> dict[str, RunResult | BaseException]:
    """Several live sources at once, each into its own run folder on its own thread (the models are shared:
    their inference is thread-safe). Ctrl-C or SIGTERM (KeyboardInterrupt here) stops them all, each run
    closed as a stopped one. Returns each source's result, or the error that ended it."""
    stop = threading.Event()
    results: dict[str, RunResult | BaseException] = {}
    finished = {name: threading.Event() for name in runs}

    def one(name: str, source: CaptureSource, run_dir: Path, observer: Observer | None) -> None:
        try:
            results[name] = watch_source(source, run_dir, detector, classifier, settings, overwrite, observer,
                                         resume, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which says it for this source
            results[name] = exc
        finally:
            finished[name].set()

    for name, run in runs.items():
        threading.Thread(target=one, args=(name, *run), name=f"watch:{name}", daemon=True).start()
    try:
        _wait_for(finished)
    except KeyboardInterrupt:
        stop.set()
        for source, _, _ in runs.values():
            source.stop()  # a source waiting to reconnect would otherwise hold its run open until it gives up
        while True:  # closing takes seconds; a second Ctrl-C must not abandon runs half written
            try:
                _wait_for(finished)
                break
            except KeyboardInterrupt:
                continue
    return results


def _wait_for(finished: dict[str, threading.Event]) -> None:
    """Until every source's thread has finished. Events, not Thread.join: in Python 3.11 a Ctrl-C that interrupts
    join() marks a thread that is still running as ended (bpo-45274), and its run would be lost at exit."""
    for event in finished.values():
        while not event.wait(0.2):
            pass
