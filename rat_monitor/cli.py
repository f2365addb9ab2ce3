"""The rat-monitor command line: the only place that prints, draws progress, and maps errors to exit codes."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .classify import KINDS
from .classify.familiarity import unfamiliar_advice
from .errors import ConfigError, RatMonitorError, SourceError
from .models import DEFAULT_CLASSIFIER, DEFAULT_DETECTOR
from .sources import CaptureSource

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Watch laboratory rats on video and report pain from facial expressions (Rat Grimace "
                       "Scale), minute by minute. Bundled models are trained on synthetic faces only.")
detector_app = typer.Typer(no_args_is_help=True, help="Train and evaluate the rat face detector.")
app.add_typer(detector_app, name="detector")

# Piped output (files, CI logs) gets a fixed width so tables are not cut to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = PROJECT_ROOT / "sample_videos"
DEMO_SAMPLE = "albino_onset.mp4"


def friendly_errors(fn):
    """One clear line and a non-zero exit for anything the user can fix; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RatMonitorError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except PermissionError as exc:
            err.print(f"[bold red]error:[/] permission denied: {exc.filename}", highlight=False, soft_wrap=True)
            raise typer.Exit(ConfigError.exit_code) from None
        except OSError as exc:
            if exc.errno == 28:  # ENOSPC
                err.print("[bold red]error:[/] the disk is full; rows written so far are kept", highlight=False)
                raise typer.Exit(ConfigError.exit_code) from None
            raise

    return wrapper


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"bad --size {text!r}: write WIDTHxHEIGHT, e.g. 1280x720") from None
    if not (16 <= w <= 7680 and 16 <= h <= 4320) or w % 2 or h % 2:
        raise ConfigError(f"bad --size {text!r}: even width and height between 16 and 7680x4320")
    return w, h


# ------------------------------------------------------------------------------------------------ views
def _fmt(v, digits=2) -> str:
    return "" if v is None else f"{v:.{digits}f}"


LEVEL_STYLE = {"none": "green", "moderate": "yellow", "severe": "bold red", "unknown": "dim"}


def timeline_table(rows, title: str = "Pain timeline", last: int | None = None, caveat: str = "",
                   action_units: bool = False) -> Table:
    """The per-minute table; with an AU-capable model also the RGS score and the four action units
    (orbital/nose/ears/whiskers, 0..2), blank for minutes without a scored face."""
    from .types import AU_FIELDS

    table = Table(title=title, caption=caveat or None, caption_style="dim", box=box.SIMPLE_HEAD, pad_edge=False)
    cols = ["min", "start", "frames", "drop", "face%", "scored", "P(pain)", "smooth", "level", "alert"]
    for col in cols + (["RGS", "orb/nose/ear/whisk"] if action_units else []):
        table.add_column(col, justify="right" if col not in ("start", "level") else "left", no_wrap=True)
    for m in rows[-last:] if last else rows:
        cov = 100.0 * m.face_frames / m.frames if m.frames else 0.0
        start = m.start_time[11:19] if m.start_time else f"{m.start_s / 60:.0f}:00"
        cells = [str(m.minute), start, str(m.frames), str(m.dropped_frames), f"{cov:.0f}", str(m.scored_frames),
                 _fmt(m.pain_prob), _fmt(m.pain_prob_smoothed), f"[{LEVEL_STYLE[m.pain_level]}]{m.pain_level}[/]",
                 "[bold red]ALERT[/]" if m.alert else ""]
        if action_units:
            au = m.action_units
            cells += [_fmt(au["rgs"]) if au else "",
                      " ".join(f"{au[k]:.1f}" for k in AU_FIELDS[:-1]) if au else ""]
        table.add_row(*cells)
    return table


class LiveView:
    """The watch view: the current minute filling up, the last minutes, fps and dropped frames."""

    def __init__(self, caveat: str, on_alert: str | None = None, action_units: bool = False):
        from .pipeline import Observer

        view = self

        class _Obs(Observer):
            def frame(self, index, t_s, n_faces, stats):
                view.t_s, view.stats, view.faces = t_s, stats, n_faces
                view.refresh()

            def scored(self, frames):
                refused = sum(f.prediction.refused for f in frames)
                view.scored_now += len(frames) - refused
                view.accepted += len(frames) - refused
                view.refused += refused

            def minute(self, row):
                view.rows.append(row)
                view.scored_now = 0
                if row.extra.get("alert_event") == "raised":
                    view.alerts.append(row)
                    _fire_alert(on_alert, row)
                view.refresh()

        self.observer = _Obs()
        self.caveat = caveat
        self.action_units = action_units
        self.rows, self.alerts = [], []
        self.t_s, self.stats, self.faces, self.scored_now = 0.0, {}, 0, 0
        self.accepted, self.refused = 0, 0
        self.live: Live | None = None

    def render(self):
        into = (self.t_s % 60) / 60
        bar = "█" * int(into * 30) + "·" * (30 - int(into * 30))
        head = (f"minute {int(self.t_s // 60)}  [{bar}]  faces now: {self.faces}  scored this minute: "
                f"{self.scored_now}  fps: {self.stats.get('fps', 0):.1f}  dropped: "
                f"{sum(r.dropped_frames for r in self.rows)}")
        parts = [head, timeline_table(self.rows, title="Last minutes", last=10, caveat=self.caveat,
                                       action_units=self.action_units)]
        advice = unfamiliar_advice(self.refused, self.accepted)
        if advice:
            parts.append(f"[yellow]{advice}[/]")
        if self.alerts:
            a = self.alerts[-1]
            parts.append(f"[bold red]ALERT[/] since minute {a.minute} (smoothed P(pain) {a.pain_prob_smoothed:.2f})")
        return Group(*parts)

    def refresh(self):
        if self.live is not None:
            self.live.update(self.render())


def _fire_alert(command: str | None, row) -> None:
    from .sinks.alerts import run_alert_command
    from .sinks.files import alert_record

    err.print(f"[bold red]ALERT[/] minute {row.minute}: smoothed P(pain) {row.pain_prob_smoothed:.2f}", highlight=False)
    if command:
        problem = run_alert_command(command, alert_record(row, "raised"))
        if problem:
            err.print(f"[yellow]warning:[/] {problem}", highlight=False)


def _load_models(model: str, detector: str):
    """Both models, loaded (and checked against their cards) before any video is opened."""
    from .classify import load_classifier
    from .detect import load_detector

    return load_detector(detector), load_classifier(model)


def _open_run(source, out_dir: Path, det, clf, settings, observer, overwrite: bool):
    from .pipeline import Pipeline
    from .sinks import RunWriter, prepare_run_dir

    writer = RunWriter(prepare_run_dir(out_dir, overwrite), action_units=clf.action_units)
    return Pipeline(source, det, clf, writer, settings, observer)


def _caveat(clf) -> str:
    return f"Model '{clf.name}': {clf.card['caveat']}" if clf.card.get("synthetic") else ""


def _settings(window: float, per_window: int, duration: Optional[float], smoothing: str):
    from .pipeline import Settings
    from .select import SelectionSettings

    return Settings(selection=SelectionSettings(window_s=window, per_window=per_window), duration_s=duration,
                    smoothing=smoothing)


MODEL_HELP = "Pain classifier: a bundled model name (see `rat-monitor models`) or a model folder."
DETECTOR_HELP = "Face detector: a bundled model name or a model folder."
DEFAULT_KIND = next(iter(KINDS))
KIND_HELP = "Model kind to train: " + " | ".join(KINDS) + "."


# ---------------------------------------------------------------------------------------------- commands
@app.command()
@friendly_errors
def watch(
    camera: Optional[int] = typer.Option(None, help="Camera index (0 = first camera)."),
    video: Optional[Path] = typer.Option(None, help="A video file, processed like a live feed."),
    url: Optional[str] = typer.Option(None, help="A stream URL (rtsp://, http://)."),
    out_dir: Path = typer.Option(Path("runs/watch"), "--out", help="Run folder (written into directly)."),
    model: str = typer.Option(DEFAULT_CLASSIFIER, help=MODEL_HELP),
    detector: str = typer.Option(DEFAULT_DETECTOR, help=DETECTOR_HELP),
    duration: Optional[float] = typer.Option(None, help="Stop after this many seconds."),
    realtime: bool = typer.Option(False, help="With --video: pace the file at its frame rate, like a camera."),
    window: float = typer.Option(10.0, help="Selection window in seconds (must divide a minute)."),
    per_window: int = typer.Option(3, help="Face frames scored per window at most."),
    overwrite: bool = typer.Option(False, help="Replace an earlier run in --out."),
    on_alert: Optional[str] = typer.Option(None, help="Command run when an alert is raised; the alert as JSON on stdin."),
    give_up: float = typer.Option(300.0, help="Seconds to keep retrying a lost camera or stream before ending the run."),
):
    """Live pain timeline from a camera, a stream or a file, with a terminal view; Ctrl-C stops cleanly.

    [bold]Example:[/] rat-monitor watch --camera 0 --out runs/cage3
    """
    settings = _settings(window, per_window, duration, "causal")
    det, clf = _load_models(model, detector)
    source = CaptureSource(video=video, camera=camera, url=url, realtime=realtime, give_up_s=give_up)
    try:
        view = LiveView(_caveat(clf), on_alert, clf.action_units)
        pipe = _open_run(source, out_dir, det, clf, settings, view.observer, overwrite)
        with Live(view.render(), console=out, refresh_per_second=4, transient=False) as live:
            view.live = live
            totals = pipe.run()
            view.live = None
            live.update(view.render())
        pipe.writer.close(pipe.run_info({"command": "watch", "complete": True, "outages_s": source.outages}))
    finally:
        source.close()
    stopped = "stopped by Ctrl-C; " if totals.interrupted else ""
    out.print(f"{stopped}{totals.frames} frames, {totals.minutes} minute(s), {totals.scored_frames} scored, "
              f"{totals.dropped_frames} dropped → {out_dir}/timeline.csv", highlight=False)
    _print_refusal(totals)


def _print_refusal(totals, console: Console = out) -> None:
    """Says once, plainly, when most selected faces were refused as unfamiliar, and what to do."""
    advice = unfamiliar_advice(totals.refused_frames, totals.scored_frames)
    if advice:
        console.print(f"[yellow]note:[/] {advice}", highlight=False, soft_wrap=True)


def _analyze_one(video: Path, run_dir: Path, det, clf, settings, overwrite: bool, progress: Progress,
                 resume: bool = False):
    """One video with its own progress bar; see batch.analyze_video."""
    from .batch import analyze_video
    from .pipeline import Observer

    task = []  # the bar appears with the first frame, so a video that does not open leaves no empty bar

    class _Obs(Observer):
        def frame(self, index, t_s, n_faces, stats):
            if not task:
                task.append(progress.add_task(video.name, total=None, rate=""))
            progress.update(task[0], completed=stats["frames"], rate=f"{stats['fps']:.0f} fps")

    done = analyze_video(video, run_dir, det, clf, settings, overwrite=overwrite, resume=resume, observer=_Obs())
    if done is not None and task:
        totals = done[1]
        progress.update(task[0], completed=totals.frames, total=totals.frames, rate=f"{totals.fps:.0f} fps")
    return done


def _progress() -> Progress:
    """Progress on stderr, so stdout carries only results."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}", style="cyan"), TimeRemainingColumn(), console=err)


@app.command()
@friendly_errors
def analyze(
    videos: list[str] = typer.Argument(..., help="Video files, folders of videos, or glob patterns ('cage*/*.mp4')."),
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Each video gets its run folder OUT/<video stem>/."),
    model: str = typer.Option(DEFAULT_CLASSIFIER, help=MODEL_HELP),
    detector: str = typer.Option(DEFAULT_DETECTOR, help=DETECTOR_HELP),
    window: float = typer.Option(10.0, help="Selection window in seconds (must divide a minute)."),
    per_window: int = typer.Option(3, help="Face frames scored per window at most."),
    overwrite: bool = typer.Option(False, help="Replace earlier runs of the same videos."),
    resume: bool = typer.Option(False, help="Finish interrupted runs where they stopped; skip finished ones."),
    workers: int = typer.Option(1, help="Videos analysed in parallel processes (one video per worker)."),
    scheduler: Optional[str] = typer.Option(None, help="Run the videos on an existing Dask cluster "
                                                       "(tcp://HOST:PORT); results go to --out."),
    quiet: bool = typer.Option(False, help="No timeline table after each video."),
    on_alert: Optional[str] = typer.Option(None, help="Command run for each alert raised; the alert as JSON on stdin."),
):
    """Analyse archived videos as fast as the machine allows: a run folder per video with the per-minute
    timeline (timeline.csv), the scored frames (frames.csv) and run.json; with several videos, summary.csv.

    [bold]Example:[/] rat-monitor analyze recordings/ --out runs/ --workers 2 --resume
    """
    from .batch import expand_inputs, run_batch, summary_row, write_summary

    settings = _settings(window, per_window, None, "centred")
    paths = expand_inputs(videos)
    if not paths:
        raise SourceError("no video files found in " + ", ".join(videos))
    if workers > 1 or scheduler:
        _load_models(model, detector)  # fail early and in one line on a bad model name
        with _progress() as progress:
            task = progress.add_task("videos", total=len(paths), rate="")
            rows = run_batch(paths, out_dir, model, detector, settings, workers=workers, scheduler=scheduler,
                             overwrite=overwrite, resume=resume or not overwrite,
                             done=lambda r: progress.update(task, advance=1, rate=f"{Path(r['video']).name}: "
                                                                                  f"{r['status']}"))
        _print_summary(rows, out_dir)
        if any(r["status"] == "failed" for r in rows):
            raise typer.Exit(1)
        return
    det, clf = _load_models(model, detector)
    rows = []
    with _progress() as progress:
        for video in paths:
            run_dir = out_dir / video.stem
            try:
                done = _analyze_one(video, run_dir, det, clf, settings, overwrite, progress, resume)
            except RatMonitorError as exc:
                if len(paths) == 1:
                    raise
                err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
                rows.append(summary_row(video, run_dir, "failed", str(exc)))
                continue
            if done is None:
                progress.console.print(f"{video.name}: already complete in {run_dir}, skipped", highlight=False)
                rows.append(summary_row(video, run_dir, "skipped (complete)"))
                continue
            pipe, totals = done
            rows.append(summary_row(video, run_dir, "ok"))
            for row in pipe.timeline.rows:
                if row.extra.get("alert_event") == "raised":
                    _fire_alert(on_alert, row)
            if not quiet:
                progress.console.print(timeline_table(pipe.timeline.rows, title=f"{video.name}", caveat=_caveat(clf),
                                                      action_units=clf.action_units))
            progress.console.print(f"{video.name}: {totals.frames} frames at {totals.fps:.0f} fps, "
                                   f"{totals.scored_frames} scored → {run_dir}", highlight=False)
            _print_refusal(totals, progress.console)
    if len(paths) > 1:
        _print_summary(rows, out_dir)
        write_summary(rows, out_dir)
        if any(r["status"] == "failed" for r in rows):
            raise typer.Exit(1)


def _print_summary(rows: list[dict], out_dir: Path) -> None:
    table = Table(title=f"Batch summary ({out_dir / 'summary.csv'})", box=box.SIMPLE_HEAD)
    for col in ("video", "status", "minutes", "observed", "none", "moderate", "severe", "unknown", "alerts"):
        table.add_column(col, justify="left" if col in ("video", "status") else "right")
    for r in rows:
        status = r["status"] if r["status"] != "failed" else f"[red]failed[/]: {r['error'][:60]}"
        table.add_row(Path(r["video"]).name, status, *(str(r.get(k, "")) for k in (
            "minutes", "minutes_observed", "minutes_none", "minutes_moderate", "minutes_severe", "minutes_unknown",
            "alerts")))
    out.print(table)


@app.command()
@friendly_errors
def demo(
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", help="Where the demo run folder goes."),
):
    """The bundled synthetic sample through the bundled models: shows the per-minute timeline and writes
    its CSV. What `make demo` runs.

    [bold]Example:[/] rat-monitor demo
    """
    video = SAMPLES / DEMO_SAMPLE
    if not video.exists():
        raise ConfigError(f"the bundled sample {video} is missing (see sample_videos/README.md to remake it)")
    settings = _settings(10.0, 3, None, "centred")
    det, clf = _load_models(DEFAULT_CLASSIFIER, DEFAULT_DETECTOR)
    with _progress() as progress:
        pipe, totals = _analyze_one(video, out_dir, det, clf, settings, True, progress)
    out.print(timeline_table(pipe.timeline.rows, title=f"Demo: {video.name} (synthetic video)", caveat=_caveat(clf),
                             action_units=clf.action_units))
    out.print(f"{totals.frames} frames at {totals.fps:.0f} fps; timeline → {out_dir / 'timeline.csv'}",
              highlight=False)
    _print_refusal(totals)


@app.command()
@friendly_errors
def predict(
    paths: list[Path] = typer.Argument(..., help="Face-crop images, or folders of them (searched recursively)."),
    out_path: Path = typer.Option(..., "--out", help="CSV to write: one row per image."),
    model: str = typer.Option(DEFAULT_CLASSIFIER, help=MODEL_HELP),
):
    """Score face images directly (e.g. the RatsPain crops a lab received): one row per image with path, refused,
    familiarity, pain_prob, p_none, p_moderate, p_severe (and the four AU scores and rgs when the model scores
    them). A face unlike the model's training faces is refused: refused=1, no score. Unreadable files get a row
    with their error and do not stop the run; exit 3 when no image could be read at all.

    [bold]Example:[/] rat-monitor predict ratspain/ --model models/my-lab --out scores.csv
    """
    import csv

    from .classify import load_classifier
    from .predict import expand_images, predict_images
    from .sinks.files import score_columns, score_row

    clf = load_classifier(model)
    images = expand_images(paths)
    if not images:
        raise SourceError("no images found in " + ", ".join(map(str, paths)))
    if out_path.exists():
        raise ConfigError(f"{out_path} exists; choose another --out or remove it")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    counts = {"scored": 0, "refused": 0, "failed": 0}
    with open(out_path, "w", newline="") as f, _progress() as progress:
        task = progress.add_task("images", total=len(images), rate="")
        writer = csv.writer(f)
        writer.writerow(score_columns(clf.action_units))
        for path, pred, error in predict_images(images, clf):
            writer.writerow(score_row(str(path), pred, error, clf.action_units))
            if pred is None:
                counts["failed"] += 1
                progress.console.print(f"[yellow]skipped[/] {path}: {error}", highlight=False)
            else:
                counts["refused" if pred.refused else "scored"] += 1
            progress.update(task, advance=1)
    out.print(f"{counts['scored']} scored, {counts['refused']} refused as unfamiliar, {counts['failed']} unreadable "
              f"→ {out_path}", highlight=False)
    if clf.familiarity is None:
        out.print("[yellow]note:[/] this model has no familiarity statistics: every face was scored, familiar or not",
                  highlight=False)
    advice = unfamiliar_advice(counts["refused"], counts["scored"])
    if advice:
        out.print(f"[yellow]note:[/] {advice}", highlight=False, soft_wrap=True)
    if caveat := _caveat(clf):
        out.print(f"[dim]{caveat}[/]", highlight=False)
    if counts["failed"] == len(images):
        raise SourceError(f"none of the {len(images)} file(s) could be read as an image")


@app.command()
@friendly_errors
def report(
    runs: list[Path] = typer.Argument(..., help="Run folders (from analyze or watch), shown side by side."),
    out_path: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write; the plot goes beside it "
                                                                      "as .png."),
    title: str = typer.Option("Rat welfare report", help="Title of the report."),
):
    """A self-contained HTML welfare report (works offline) with the pain timeline, unknown minutes, alerts,
    face coverage, a summary, the scored face crops for audit and the run metadata; plus the plot as PNG.

    [bold]Example:[/] rat-monitor report runs/rat3_before runs/rat3_after --out rat3.html
    """
    from .sinks.report import write_report

    written = write_report(runs, out_path, title)
    out.print(f"report → {written['html']} (plot: {written['png']})", highlight=False)


@app.command()
@friendly_errors
def curate(
    videos: list[Path] = typer.Argument(None, help="Video files to pick face frames from."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for images/, manifest.csv (and key.csv)."),
    every: str = typer.Option("30s", help="Window length: one selection per window (e.g. 10s, 30s, 1m)."),
    per_window: int = typer.Option(3, help="Best face frames kept per window."),
    blind: bool = typer.Option(False, help="Random file names, shuffled rows, time and source in a separate key.csv."),
    full_frames: bool = typer.Option(False, help="Export whole frames instead of face crops."),
    detector: str = typer.Option(DEFAULT_DETECTOR, help=DETECTOR_HELP),
    unblind: bool = typer.Option(False, help="Join a labelled blind manifest in --out back to its key.csv."),
):
    """Export the sharpest, stillest face frames per time window for annotation, with a manifest whose label
    columns are left empty. Filled in, the folder is a training dataset for `rat-monitor train`.

    [bold]Example:[/] rat-monitor curate day1.mp4 day2.mp4 --out to_label/ --every 30s --per-window 2 --blind
    """
    from . import curate as cu
    from .detect import load_detector
    from .pipeline import Settings
    from .select import SelectionSettings

    if unblind:
        out.print(f"unblinded → {cu.unblind(out_dir)}", highlight=False)
        return
    if not videos:
        raise ConfigError("give one or more videos (or --unblind with --out)")
    window = cu.parse_duration(every)
    settings = Settings(selection=SelectionSettings(window_s=window, per_window=per_window))
    if window <= 0 or window > 3600:
        raise ConfigError("--every must be between 1 second and 1 hour")
    det = load_detector(detector)
    for v in videos:  # fail early, before any work, on a path that is not there
        if not Path(v).is_file():
            raise SourceError(f"no such video file: {v}")
    with _progress() as progress:
        task = progress.add_task("selecting", total=None, rate="")
        counts = cu.export(videos, out_dir, det, settings, blind=blind, full_frames=full_frames,
                           progress=lambda name, i: progress.update(task, completed=i,
                                                                    description=Path(name).name))
    extra = " and key.csv (keep it away from the annotators)" if blind else ""
    out.print(f"{counts['images']} face frames from {counts['videos']} video(s) → {out_dir}/manifest.csv{extra}; "
              f"fill in the label columns, then: rat-monitor train --data {out_dir}", highlight=False)


@app.command()
@friendly_errors
def synth(
    out_path: Optional[Path] = typer.Option(None, "--out", help="Video file to write (NAME.mp4), or a folder."),
    minutes: float = typer.Option(1.0, help="Length in minutes."),
    fps: float = typer.Option(30.0, help="Frames per second."),
    size: str = typer.Option("1280x720", help="WIDTHxHEIGHT."),
    seed: int = typer.Option(0, help="Scene and behaviour seed: same seed, same video."),
    subject: int = typer.Option(1, help="Which animal (its look: size, ears, fur tone, eyes)."),
    coat: str = typer.Option("albino", help="albino | hooded | dark | agouti."),
    schedule: str = typer.Option("control", help="Pain over time: 'START_MIN:LEVEL,...' (e.g. '0:0,1:1,1.5:2') "
                                                 "or a preset: control, onset, surgery, hard."),
    low_light: bool = typer.Option(False, help="Dim light and more sensor noise."),
    fast: bool = typer.Option(False, help="More and faster dashes (motion blur)."),
    bars: bool = typer.Option(False, help="Wire-lid bars across the view."),
    crf: int = typer.Option(23, help="H.264 quality (lower is better and bigger; 18-30 is sensible)."),
    dataset: Optional[Path] = typer.Option(None, help="Instead of a video: write a face-crop dataset here."),
    subjects: int = typer.Option(6, help="With --dataset: number of animals."),
    per_subject: int = typer.Option(200, help="With --dataset: crops per animal."),
    contact_sheet: Optional[Path] = typer.Option(None, help="Also write a PNG grid of faces by pain level and pose."),
):
    """Synthetic rat-face videos with ground truth (NAME.mp4, NAME.truth.csv, NAME.minutes.csv), face-crop
    datasets for training, and contact sheets. Everything it makes is synthetic.

    [bold]Example:[/] rat-monitor synth --minutes 2 --seed 7 --schedule onset --out videos/onset.mp4
    """
    from . import synth as sy

    if coat not in sy.COATS:
        raise ConfigError(f"unknown --coat {coat!r}; choose one of {', '.join(sy.COATS)}")
    sy.parse_schedule(schedule)
    if dataset is not None:
        with _progress() as progress:
            task = progress.add_task("crops", total=subjects * per_subject, rate="")
            manifest = sy.write_dataset(dataset, subjects, per_subject, seed=seed, coat=coat,
                                        progress=lambda i, n: progress.update(task, completed=i))
        out.print(f"dataset: {subjects} subjects × {per_subject} crops → {manifest}", highlight=False)
    if contact_sheet is not None:
        out.print(f"contact sheet → {sy.contact_sheet(contact_sheet, subject=subject, coat=coat)}", highlight=False)
    if dataset is not None or (contact_sheet is not None and out_path is None):
        return
    if out_path is None:
        raise ConfigError("give --out NAME.mp4 (or --dataset DIR / --contact-sheet FILE.png)")
    if out_path.suffix.lower() != ".mp4":
        out_path = out_path / f"synth_seed{seed}_rat{subject}.mp4"
    w, h = _parse_size(size)
    if minutes <= 0 or not (1 <= fps <= 240):
        raise ConfigError("--minutes must be positive and --fps between 1 and 240")
    spec = sy.VideoSpec(width=w, height=h, fps=fps, minutes=minutes, seed=seed, subject=subject, coat=coat,
                        schedule=schedule, low_light=low_light, fast=fast, bars=bars)
    t0 = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task(out_path.name, total=spec.n_frames, rate="")
        paths = sy.write_video(spec, out_path, progress=lambda i, n: progress.update(task, completed=i), crf=crf)
    dt = time.perf_counter() - t0
    out.print(f"{spec.n_frames} frames ({spec.n_frames / dt:.0f} frames/s) → {paths['video']}, "
              f"{paths['truth'].name}, {paths['minutes'].name}", highlight=False)


@app.command()
@friendly_errors
def models():
    """List the bundled models with what they were trained on.

    [bold]Example:[/] rat-monitor models
    """
    from .models import list_models, models_dir

    table = Table(title=f"Models in {models_dir()}")
    for col in ("name", "kind", "model", "task", "trained on", "metrics"):
        table.add_column(col)
    for card in list_models():
        training = card.get("training", {})
        metrics = card.get("metrics", {})
        shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float)))
        table.add_row(card["name"], card.get("kind", ""), card.get("model", card.get("architecture", "")),
                      card.get("task", ""), ("[yellow]SYNTHETIC[/] " if card.get("synthetic") else "")
                      + str(training.get("description", "")), shown)
    out.print(table)
    out.print("Bundled models are trained on synthetic faces only: train on RatsPain or your own labelled frames "
              "(rat-monitor train) for real use.")


@app.command()
@friendly_errors
def train(
    data: Path = typer.Option(..., help="Dataset: a manifest CSV, a folder with manifest.csv, or ROOT/<subject>/<label>/."),
    model: str = typer.Option(DEFAULT_KIND, help=KIND_HELP),
    task: str = typer.Option("binary", help="binary (no pain vs pain) | 3class."),
    out_dir: Path = typer.Option(..., "--out", help="Model folder to write (card.json + weights)."),
    epochs: Optional[int] = typer.Option(None, help="ResNet-18 only: maximum epochs."),
    weights: Optional[Path] = typer.Option(None, help="ResNet-18 only: ImageNet weights file (.pth/.safetensors)."),
    synthetic: bool = typer.Option(False, help="Mark the model as trained on synthetic data."),
    loso: bool = typer.Option(False, help="First run leave-one-subject-out evaluation and record it in the card."),
    description: str = typer.Option("", help="How the training data was made, for the model card."),
):
    """Train a pain classifier on all of a dataset and save it (no pickle: safetensors + card.json). When the
    dataset has action-unit columns (orbital, nose, ears, whiskers) the model also learns the four AU scores.

    [bold]Example:[/] rat-monitor train --data ratspain/manifest.csv --model lbp-svm --task binary --out models/my-lab
    """
    import numpy as np

    from .classify.evaluate import Trainer, evaluate_loso
    from .data import load_dataset

    trainer = Trainer(model, task, n_jobs=2, epochs=epochs, weights=weights, log=lambda m: err.print(m))
    ds = load_dataset(data)  # after the settings are checked
    t0 = time.time()
    trainer.prepare(ds)  # once, for the LOSO folds and the final fit
    metrics = {}
    if loso:
        result = evaluate_loso(ds, model, task, trainer=trainer)
        kept = {k: v for k, v in result["pooled"].items()
                if k in ("accuracy", "macro_f1", "pain_f1", "refused_share", "macro_f1_accepted")}
        if "action_units" in result:
            kept["action_units"] = result["action_units"]
        metrics = {"protocol": "leave-one-subject-out", **_rounded(kept)}
        out.print(f"LOSO: {metrics}", highlight=False)
    aus = " with action units" if trainer.action_units else ""
    out.print(f"training {model} ({task}){aus} on {ds.summary()}", highlight=False)
    fitted = trainer.fit(np.arange(len(ds)), ds.targets(task), ds.subjects)
    training = {"description": description or f"{len(ds)} crops of {len(set(ds.subjects))} animals from {ds.source}",
                "dataset": ds.summary(), "seconds": round(time.time() - t0, 1), "synthetic": synthetic}
    card = trainer.save(fitted, out_dir, training, metrics)
    out.print(f"saved {card['name']} → {out_dir} in {training['seconds']} s", highlight=False)
    fam = card.get("familiarity")
    out.print(f"familiarity check: calibrated {fam['calibration']}; crops below {fam['refuse_below']} are refused"
              if fam else f"familiarity check {fitted.familiarity[1] if fitted.familiarity else 'not fitted'}: "
                          "this model will score any crop, familiar or not", highlight=False)


def _rounded(tree):
    """Floats rounded to 4 digits, through nested dicts (for model cards)."""
    if isinstance(tree, dict):
        return {k: _rounded(v) for k, v in tree.items()}
    return round(tree, 4) if isinstance(tree, float) else tree


def _au_table(result: dict) -> Table:
    """Per-AU agreement under LOSO: pooled over all held-out animals, and the worst animal's kappa."""
    from .types import ACTION_UNITS

    table = Table(title="Action units, leave-one-subject-out (score = expected value; accuracy and kappa of the "
                        "rounded score)")
    for col in ("action unit", "n", "accuracy", "QWK", "MAE", "worst animal QWK"):
        table.add_column(col, justify="right")
    pooled = result["action_units"]
    for au in ACTION_UNITS:
        if au in pooled:
            a = pooled[au]
            worst = min((f["action_units"][au]["qwk"] for f in result["folds"] if au in f.get("action_units", {})),
                        default=float("nan"))
            table.add_row(au, str(a["n"]), f"{a['accuracy']:.3f}", f"[bold]{a['qwk']:.3f}", f"{a['mae']:.3f}",
                          f"{worst:.3f}")
    if "rgs" in pooled:
        r = pooled["rgs"]
        table.add_row("RGS (mean of 4)", str(r["n"]), "", f"ICC(2,1) [bold]{r['icc_2_1']:.3f}", f"{r['mae']:.3f}", "")
    return table


@app.command()
@friendly_errors
def evaluate(
    data: Path = typer.Option(..., help="Dataset (manifest CSV, folder with manifest.csv, or ROOT/<subject>/<label>/)."),
    model: str = typer.Option(DEFAULT_KIND, help=KIND_HELP),
    task: str = typer.Option("binary", help="binary | 3class."),
    protocol: str = typer.Option("loso", help="loso: leave one subject (animal) out. The only honest protocol here."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON."),
    epochs: Optional[int] = typer.Option(None, help="ResNet-18 only: maximum epochs per fold."),
    weights: Optional[Path] = typer.Option(None, help="ResNet-18 only: ImageNet weights file."),
):
    """Leave-one-subject-out evaluation: accuracy, macro-F1, pain-F1 and confusion, per animal and pooled; with
    action-unit labels also per AU accuracy, quadratic-weighted kappa, MAE and the RGS score's ICC(2,1).

    [bold]Example:[/] rat-monitor evaluate --data ratspain/ --model lbp-svm --protocol loso --json loso.json
    """
    from .classify.evaluate import Trainer, evaluate_loso
    from .data import load_dataset

    if protocol != "loso":
        raise ConfigError("only --protocol loso is offered: evaluation is by animal, never by image")
    trainer = Trainer(model, task, n_jobs=2, epochs=epochs, weights=weights)
    ds = load_dataset(data)
    trainer.prepare(ds)
    out.print(f"LOSO {model} ({task}) on {ds.summary()}", highlight=False)
    result = evaluate_loso(ds, model, task, trainer=trainer,
                           progress=lambda s, f: err.print(f"  fold {s}: macro-F1 {f['macro_f1']:.3f}",
                                                           highlight=False))
    table = Table(title=f"Leave-one-subject-out, {model}, {task}",
                  caption="refused: share of the held-out animal's crops the familiarity check refused; F1 accepted: "
                          "macro-F1 over the crops it kept (the other figures are over all crops)")
    for col in ("held out", "n", "accuracy", "macro F1", "pain F1", "refused", "F1 accepted", "train s"):
        table.add_column(col, justify="right")

    def refusal_cells(f: dict) -> list[str]:
        if "refused_share" not in f:
            return ["", ""]
        return [f"{f['refused_share']:.3f}", _fmt(f["macro_f1_accepted"], 3)]

    for f in result["folds"]:
        table.add_row(f["subject"], str(f["n"]), f"{f['accuracy']:.3f}", f"{f['macro_f1']:.3f}",
                      f"{f['pain_f1']:.3f}", *refusal_cells(f), f"{f['train_s']:.1f}")
    p = result["pooled"]
    table.add_row("[bold]pooled", str(p["n"]), f"[bold]{p['accuracy']:.3f}", f"[bold]{p['macro_f1']:.3f}",
                  f"[bold]{p['pain_f1']:.3f}", *refusal_cells(p), f"{result['seconds']:.0f} total")
    out.print(table)
    if "action_units" in result:
        out.print(_au_table(result))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2))
        out.print(f"→ {json_path}", highlight=False)


@detector_app.command("train")
@friendly_errors
def detector_train(
    out_dir: Path = typer.Option(..., "--out", help="Detector folder to write."),
    synthetic: int = typer.Option(4000, help="Randomised synthetic frames to train on (0 for none)."),
    yolo: Optional[Path] = typer.Option(None, help="Annotated frames in YOLO layout (images/ + labels/)."),
    init: Optional[str] = typer.Option(None, help="Fine-tune from this detector (name or folder)."),
    epochs: int = typer.Option(16, help="Training epochs."),
    seed: int = typer.Option(1, help="Seed of the synthetic frames."),
    repeat_yolo: int = typer.Option(1, help="Show each annotated frame this many times per epoch."),
):
    """Train the face detector on synthetic frames and/or your annotated frames; or fine-tune the bundled one.

    [bold]Example:[/] rat-monitor detector train --yolo my_boxes/ --init rat-face-detector --synthetic 0 --epochs 30 --out models/my-detector
    """
    from .detect.train import synthetic_samples, train_detector, yolo_samples
    from .models import resolve

    samples = []
    parts = []
    with _progress() as progress:
        if synthetic > 0:
            task = progress.add_task("rendering", total=synthetic, rate="")
            samples += synthetic_samples(synthetic, seed, progress=lambda i, n: progress.update(task, completed=i))
            parts.append(f"{synthetic} randomised synthetic frames (seed {seed})")
        if yolo is not None:
            ys = yolo_samples(yolo)
            samples += ys * max(1, repeat_yolo)
            parts.append(f"{len(ys)} annotated frames from {yolo}")
        if not samples:
            raise ConfigError("nothing to train on: give --synthetic N and/or --yolo DIR")
        init_dir = resolve(init, "face-detector") if init else None
        task = progress.add_task("epochs", total=epochs, rate="")
        card = train_detector(samples, out_dir, epochs=epochs, init=init_dir, seed=seed, description="; ".join(parts),
                              progress=lambda e, n, loss: progress.update(task, completed=e,
                                                                           description=f"epochs (loss {loss:.3f})"))
    out.print(f"detector → {out_dir} ({card['training']['seconds']} s)", highlight=False)


@detector_app.command("evaluate")
@friendly_errors
def detector_evaluate(
    video: Optional[Path] = typer.Option(None, help="A video with NAME.truth.csv beside it."),
    yolo: Optional[Path] = typer.Option(None, help="A YOLO folder (images/ + labels/)."),
    detector: str = typer.Option(DEFAULT_DETECTOR, help=DETECTOR_HELP),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write precision, recall, ap50, frames, "
                                                                 "ms_per_frame as JSON."),
    every: int = typer.Option(1, help="Evaluate every Nth frame of the video."),
):
    """Precision, recall and AP at IoU 0.5 of a detector on a video with truth, or on annotated frames.

    [bold]Example:[/] rat-monitor detector evaluate --video sample_videos/albino_onset.mp4
    """
    from .detect import load_detector
    from .detect.evaluate import evaluate_video, evaluate_yolo

    if (video is None) == (yolo is None):
        raise ConfigError("give exactly one of --video or --yolo")
    det = load_detector(detector)
    result = evaluate_video(det, video, every=every) if video else evaluate_yolo(det, yolo)
    out.print(f"{detector} on {video or yolo}: precision {result['precision']:.3f}, recall {result['recall']:.3f}, "
              f"AP@0.5 {result['ap50']:.3f} over {result['frames']} frames, {result['ms_per_frame']:.2f} ms/frame",
              highlight=False)
    if "precision_strict" in result:
        out.print(f"  {result['ambiguous_frames_left_out']} frames with an ambiguous head turn left out; over every "
                  f"frame: precision {result['precision_strict']:.3f}, recall {result['recall_strict']:.3f}, "
                  f"AP@0.5 {result['ap50_strict']:.3f}", highlight=False)
    if json_path:
        json_path.write_text(json.dumps(result, indent=2))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
