"""The commands that run the pipeline on archives: analyze (one path for one video or many) and demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.progress import Progress

from ..errors import ConfigError, SourceError
from ..models import DEFAULT_CLASSIFIER, DEFAULT_DETECTOR
from ..pipeline import Observer
from ..sinks.files import read_timeline
from .app import (ANIMAL_NAMES_HELP, ANIMALS_HELP, DETECTOR_HELP, MODEL_HELP, SAMPLES, Alerts, app, caveat,
                  clock_time, err, friendly_errors, out, print_camera, print_refusal, progress_bars, settings)
from .views import batch_table, timeline_table

DEMO_SAMPLE = "albino_onset.mp4"
INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (SIGTERM is handled the same way)


def load_models(model: str, detector: str):
    """Both models, loaded (and checked against their cards) before any video is opened."""
    from ..classify import load_classifier
    from ..detect import load_detector

    return load_detector(detector), load_classifier(model)


class FrameBars:
    """One progress bar per video (frames, fps, time left), shown from its first frame (a video that does not open
    leaves no empty bar); with --workers the frames are reported from the worker processes."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[Path, int] = {}

    def __call__(self, video: Path) -> Observer:
        bars = self

        class _Obs(Observer):
            def frame(self, index, t_s, n_faces, stats):
                if video not in bars.tasks:
                    bars.tasks[video] = bars.progress.add_task(video.name, total=stats.get("total"), rate="")
                # the position in the file (a resumed run starts part-way), against the frames its header promises
                bars.progress.update(bars.tasks[video], completed=index + 1, rate=f"{stats['fps']:.0f} fps")

        return _Obs()

    def finish(self, video: Path, frames: int) -> None:
        if video in self.tasks:
            self.progress.update(self.tasks[video], completed=frames, total=frames)


def _video_done(row: dict, progress: Progress, alerts: Alerts, quiet: bool, note: str, action_units: bool,
                bars: FrameBars | None) -> None:
    """What a finished video says: its table, its alerts (each with --on-alert), its line and refusals."""
    from ..batch import KEPT, NOT_STARTED
    video, run_dir, status = Path(row["video"]), Path(row["run_dir"]), row["status"]
    say = progress.console
    if status == NOT_STARTED:
        say.print(f"{video.name}: {status}", highlight=False)
        return
    if status in ("failed", KEPT):
        err.print(f"[bold red]error:[/] {row['error']}", highlight=False, soft_wrap=True)
        return
    if status == "skipped (complete)":
        say.print(f"{video.name}: already complete in {run_dir}, skipped", highlight=False)
        return
    info = json.loads((run_dir / "run.json").read_text())
    totals = info["totals"]
    if bars:
        bars.finish(video, totals["frames"])
    rows = read_timeline(run_dir / "timeline.csv")
    if not quiet:
        say.print(timeline_table(rows, title=video.name, caveat=note, action_units=action_units))
    raised = run_dir / "alerts.jsonl"
    for line in raised.read_text().splitlines() if raised.exists() else []:
        record = json.loads(line)
        if record["event"] == "raised":
            alerts.raised(record, where=f"{video.name} ")
    stopped = "stopped (Ctrl-C or SIGTERM) after " if status == "interrupted" else ""
    say.print(f"{video.name}: {stopped}{totals['frames']} frames at {totals['fps']:.0f} fps, "
              f"{totals['scored_frames']} scored → {run_dir}", highlight=False)
    for remark in _source_remarks(info):
        say.print(f"note: {video.name}: {remark}", highlight=False)
    print_refusal(totals["refused_frames"], totals["scored_frames"], say)
    print_camera(info.get("camera"), say)


def _source_remarks(info: dict) -> list[str]:
    """What the decoder had to mend in a file, in words (the numbers are in run.json)."""
    remarks = []
    if info.get("file_grew_while_read"):
        remarks.append("the file grew while it was read (still being recorded?): the run is kept as not complete; "
                       "analyze it again with --resume once the recording has finished")
    if info.get("deinterlaced"):
        remarks.append("interlaced video, decoded through ffmpeg's deinterlacer")
    lost = info.get("frames_lost_in_file") or 0
    if lost:
        remarks.append(f"{lost} frames lost to damage in the file (counted as dropped in their minutes)")
    jumps = len(info.get("time_discontinuities") or [])
    if jumps:
        remarks.append(f"{jumps} timestamp jump{'s' if jumps > 1 else ''} bridged on the frame clock (listed in run.json)")
    return remarks


@app.command()
@friendly_errors
def analyze(
    videos: list[str] = typer.Argument(..., help="Video files, folders of videos, or glob patterns ('cage*/*.mp4')."),
    out_dir: Path = typer.Option(Path("runs"), "--out", "-o", help="Each video gets its run folder OUT/<video stem>/."),
    model: str = typer.Option(DEFAULT_CLASSIFIER, "--model", "-m", help=MODEL_HELP),
    detector: str = typer.Option(DEFAULT_DETECTOR, help=DETECTOR_HELP),
    window: float = typer.Option(10.0, help="Selection window in seconds (must divide a minute)."),
    per_window: int = typer.Option(3, help="Face frames scored per window at most."),
    overwrite: bool = typer.Option(False, help="Replace earlier runs of the same videos."),
    resume: bool = typer.Option(False, help="Finish interrupted runs where they stopped; skip finished ones."),
    workers: int = typer.Option(1, help="Videos analysed in parallel processes (one video per worker)."),
    scheduler: Optional[str] = typer.Option(None, help="Run the videos on an existing Dask cluster "
                                                       "(tcp://HOST:PORT); results go to --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No timeline table after each video."),
    annotate: bool = typer.Option(False, help="Also write annotated.mp4 in each run folder: boxes, confidence, "
                                              "the scored frames with P(pain), the last minute's level (H.264, "
                                              "at most 480 px wide)."),
    on_alert: Optional[str] = typer.Option(None, help="Command run for each alert raised, beside the analysis (never holding its \
frames): the alert as JSON on stdin; killed after 30 s."),
    start_time: Optional[str] = typer.Option(None, help="Clock time of the video's first frame (ISO 8601, e.g. "
                                                        "2026-11-29T14:05; one video), for files that do not record "
                                                        "it: the timeline and report then show clock time."),
    animals: int = typer.Option(1, help=ANIMALS_HELP),
    animal_names: str = typer.Option("", help=ANIMAL_NAMES_HELP),
):
    """Analyse archived videos as fast as the machine allows: a run folder per video with the per-minute
    timeline (timeline.csv), the scored frames (frames.csv) and run.json; with several videos, summary.csv.
    Exit codes: as the README's table; 1 when some videos of a batch failed, 130 after Ctrl-C.

    [bold]Example:[/] rat-monitor analyze sample_videos/ --out runs/ --workers 2 --resume
    """
    from ..batch import KEPT, NOT_STARTED, Job, expand_inputs, run_batch

    start_epoch = clock_time(start_time, "--start-time") if start_time is not None else None
    job = Job(model, detector, settings(window, per_window, None, animals, animal_names), overwrite, resume, annotate,
              start_epoch)
    job.settings.check()
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    paths = expand_inputs(videos)
    if not paths:
        raise SourceError("no video files found in " + ", ".join(videos))
    if start_epoch is not None and len(paths) > 1:
        raise ConfigError("--start-time is the clock time of one video; give one video with it")
    det, clf = load_models(model, detector)  # fail early and in one line on a bad model
    parallel = workers > 1 or scheduler is not None
    with Alerts(on_alert) as alerts, progress_bars() as progress:
        bars = FrameBars(progress) if scheduler is None else None  # a Dask cluster's workers report no frames
        overall = progress.add_task("videos", total=len(paths), rate="") if parallel else None

        def done(row: dict) -> None:
            if overall is not None:
                progress.update(overall, advance=1, rate=f"{Path(row['video']).name}: {row['status']}")
            if len(paths) > 1 or row["status"] not in ("failed", KEPT):  # one video's error is the command's
                _video_done(row, progress, alerts, quiet, caveat(det, clf), clf.action_units, bars)

        rows = run_batch(paths, out_dir, job, workers=workers, scheduler=scheduler, done=done, observer_for=bars,
                         models=(det, clf))
    if len(paths) > 1:
        out.print(batch_table(rows, out_dir))
    if len(paths) == 1 and rows[0]["status"] in ("failed", KEPT):
        err.print(f"[bold red]error:[/] {rows[0]['error']}", highlight=False, soft_wrap=True)
        raise typer.Exit(rows[0].get("exit_code", 1))
    if any(r["status"] in ("interrupted", NOT_STARTED) for r in rows):
        raise typer.Exit(INTERRUPTED)
    failed = [r for r in rows if r["status"] in ("failed", KEPT)]
    if failed and len(failed) == len(rows) and len({r.get("exit_code", 1) for r in failed}) == 1:
        raise typer.Exit(failed[0].get("exit_code", 1))  # every video failed for one reason: its code
    if failed:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def demo(
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Where the demo run folder goes."),
):
    """The bundled synthetic sample through the bundled models: shows the per-minute timeline and writes
    its CSV. What `make demo` runs.

    [bold]Example:[/] rat-monitor demo
    """
    from ..runs import analyze_video
    from ..stopping import signals_set

    video = SAMPLES / DEMO_SAMPLE
    if not video.exists():
        raise ConfigError(f"the bundled sample {video} is missing (see sample_videos/README.md to remake it)")
    det, clf = load_models(DEFAULT_CLASSIFIER, DEFAULT_DETECTOR)
    if (out_dir / "timeline.csv").exists():  # the demo's own folder: replaced, and said so
        err.print(f"replacing the earlier demo run in {out_dir}", highlight=False)
    with progress_bars() as progress:
        bars = FrameBars(progress)
        with signals_set() as stop:
            result = analyze_video(video, out_dir, det, clf, settings(10.0, 3, None), overwrite=True,
                                   observer=bars(video), stop=stop)
        bars.finish(video, result.totals.frames)
    out.print(timeline_table(result.rows, title=f"Demo: {video.name} (synthetic video)", caveat=caveat(det, clf),
                             action_units=clf.action_units))
    out.print(f"{result.totals.frames} frames at {result.totals.fps:.0f} fps; timeline → {out_dir / 'timeline.csv'}",
              highlight=False)
    print_refusal(result.totals.refused_frames, result.totals.scored_frames)
    if result.totals.interrupted:
        raise typer.Exit(INTERRUPTED)
