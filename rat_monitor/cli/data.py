"""The commands around data: synthetic videos and datasets (synth), curation for annotation (curate), and the
welfare report (report)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError, SourceError
from ..models import DEFAULT_DETECTOR
from .app import DETECTOR_HELP, app, clock_time, friendly_errors, out, progress_bars, warn


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"bad --size {text!r}: write WIDTHxHEIGHT, e.g. 1280x720") from None
    if not (16 <= w <= 7680 and 16 <= h <= 4320) or w % 2 or h % 2:
        raise ConfigError(f"bad --size {text!r}: even width and height between 16 and 7680x4320")
    return w, h


@app.command()
@friendly_errors
def report(
    runs: list[Path] = typer.Argument(..., help="Run folders (from analyze or watch), or folders of them (what "
                                                "analyze writes for several videos), shown side by side."),
    out_path: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write; the plot goes beside it "
                                                                      "as .png."),
    title: str = typer.Option("Rat welfare report", help="Title of the report."),
    overwrite: bool = typer.Option(False, help="Replace an existing report file."),
    align: Optional[str] = typer.Option(None, help="Count the time axis from this clock time (ISO 8601, e.g. the "
                                                   "end of surgery 2026-11-29T13:20); every run needs clock time."),
):
    """A self-contained HTML welfare report (works offline) with the pain timeline, unknown minutes, alerts,
    face coverage, a summary, the scored face crops for audit and the run metadata; plus the plot as PNG.
    A run folder that cannot be read (damaged, edited, cut short) is named on one line and in the report, the
    others are reported, and the exit code is 1.

    [bold]Example:[/] rat-monitor report runs/ --out welfare.html   (after the analyze example)
    """
    from ..sinks.report import write_report

    if out_path.exists() and not overwrite:
        raise ConfigError(f"{out_path} exists; give --overwrite to replace it or another --out")
    with progress_bars() as progress:
        task = progress.add_task("reading runs", total=None, rate="")

        def tell(stage: str, done: int, total: int) -> None:
            progress.update(task, description=stage, completed=done, total=total)

        written = write_report(runs, out_path, title, clock_time(align, "--align") if align is not None else None,
                               tell)
    together = f", the {written['plotted']} most concerning of {written['runs']} runs" \
        if written["plotted"] < written["runs"] else ""
    out.print(f"report → {written['html']} (plot: {written['png']}{together})", highlight=False)
    for damaged in written["damaged"]:
        warn(damaged["why"], "not in the report")
    if written["damaged"]:
        raise typer.Exit(1)  # the report holds the others; a script learns that some were left out


@app.command()
@friendly_errors
def curate(
    videos: list[Path] = typer.Argument(None, help="Video files to pick face frames from."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for images/, manifest.csv (and key.csv)."),
    every: str = typer.Option("30s", help="Window length: one selection per window (e.g. 10s, 30s, 1m)."),
    per_window: int = typer.Option(3, help="Best face frames kept per window."),
    blind: bool = typer.Option(False, help="Random file names, shuffled rows, time and source in a separate key.csv."),
    full_frames: bool = typer.Option(False, help="Export whole frames instead of face crops."),
    detector: str = typer.Option(DEFAULT_DETECTOR, help=DETECTOR_HELP),
    unblind: bool = typer.Option(False, help="Join a labelled blind manifest in --out back to its key.csv."),
    subject: Optional[str] = typer.Option(None, help="The animal all the videos show (its id in the manifest)."),
    subject_from: Optional[str] = typer.Option(
        None, help="Regular expression finding the animal in each video's path; its first group is the id, "
                   "e.g. '(rat\\d+)' for rat7/day1.mp4 and rat7/day2.mp4. Default: the file name."),
):
    """Export the sharpest, stillest face frames per time window for annotation, with a manifest whose label
    columns are left empty. Filled in, the folder is a training dataset for `rat-monitor train`.

    [bold]Example:[/] rat-monitor curate sample_videos/albino_onset.mp4 --subject rat1 --out to_label/ --every 30s --blind
    """
    from .. import curate as cu
    from ..detect import load_detector
    from ..pipeline import Settings
    from ..select import SelectionSettings

    if unblind:
        unblinded = cu.unblind(out_dir)
        out.print(f"unblinded → {unblinded}; then: rat-monitor train --data {unblinded} --out MODEL_FOLDER",
                  highlight=False, soft_wrap=True)
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
    with progress_bars() as progress:
        task = progress.add_task("selecting", total=None, rate="")
        counts = cu.export(videos, out_dir, det, settings, blind=blind, full_frames=full_frames, subject=subject,
                           subject_from=subject_from,
                           progress=lambda name, i, n: progress.update(task, completed=i, total=n,
                                                                       description=Path(name).name))
    animals = ", ".join(counts["subjects"])
    out.print(f"{counts['images']} face frames of {len(counts['subjects'])} animal(s) ({animals}) from "
              f"{counts['videos']} video(s) → {out_dir}/manifest.csv", highlight=False)
    if subject is None and subject_from is None:
        out.print("[yellow]note:[/] each video's file name is its animal; give --subject or --subject-from when "
                  "several videos show one animal", highlight=False)
    if blind:
        out.print(f"keep {out_dir}/key.csv away from the annotators; fill in the label columns of manifest.csv, "
                  f"then: rat-monitor curate --unblind --out {out_dir} && rat-monitor train --data "
                  f"{out_dir}/manifest_unblinded.csv --out MODEL_FOLDER", highlight=False, soft_wrap=True)
    else:
        out.print(f"fill in the label columns, then: rat-monitor train --data {out_dir} --out MODEL_FOLDER",
                  highlight=False, soft_wrap=True)


@app.command()
@friendly_errors
def synth(
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Video file to write (NAME.mp4), or a folder."),
    minutes: float = typer.Option(1.0, help="Length in minutes."),
    fps: float = typer.Option(30.0, help="Frames per second."),
    size: str = typer.Option("1280x720", help="WIDTHxHEIGHT."),
    seed: int = typer.Option(0, help="Scene and behaviour seed: same seed, same video."),
    subject: int = typer.Option(1, help="Which animal (its look: size, ears, fur tone, eyes)."),
    coat: str = typer.Option("albino", help="albino | hooded | dark | agouti. With --rats: one per rat, "
                                            "comma-separated (rats not named take other coats)."),
    schedule: str = typer.Option("control", help="Pain over time: 'START_MIN:LEVEL,...' (e.g. '0:0,1:1,1.5:2') "
                                                 "or a preset: control, onset, surgery, hard. With --rats: one per "
                                                 "rat, ';'-separated (rats not named stay control)."),
    rats: int = typer.Option(1, help="Rats in the cage (1-3). From two on they trade places once a minute, one "
                                     "passing in front of the other; the truth files gain an animal column."),
    low_light: bool = typer.Option(False, help="Dim light and more sensor noise."),
    fast: bool = typer.Option(False, help="More and faster dashes (motion blur)."),
    bars: bool = typer.Option(False, help="Wire-lid bars across the view."),
    crf: int = typer.Option(23, help="H.264 quality (lower is better and bigger; 18-30 is sensible)."),
    dataset: Optional[Path] = typer.Option(None, help="Instead of a video: write a face-crop dataset here."),
    subjects: int = typer.Option(6, help="With --dataset: number of animals."),
    per_subject: int = typer.Option(200, help="With --dataset: crops per animal."),
    contact_sheet: Optional[Path] = typer.Option(None, help="Also write a PNG grid of faces by pain level and pose."),
    beside_real: Optional[Path] = typer.Option(
        None, help="With --contact-sheet: draw synthetic lab faces and frames next to the real ones of this YOLO "
                   "folder (e.g. ../shared/real/reachbox). Write it to a local folder such as local/ (ignored by "
                   "git): real footage never goes into the repository."),
    lab_frames: Optional[Path] = typer.Option(None, help="Also write a PNG grid of randomised lab frames (the "
                                                         "detector's training material) with their face boxes."),
):
    """Synthetic rat-face videos with ground truth (NAME.mp4, NAME.truth.csv, NAME.minutes.csv), face-crop
    datasets for training, and contact sheets. Everything it makes is synthetic.

    [bold]Example:[/] rat-monitor synth --minutes 2 --seed 7 --schedule onset --out videos/onset.mp4
    (a training set: rat-monitor synth --dataset faces/ --subjects 6 --per-subject 60)
    """
    from .. import synth as sy

    cage = sy.VideoSpec(coat=coat, schedule=schedule, rats=rats)
    cage.check()
    steps = sy.parse_schedule(cage.schedule_of(0))
    if out_path is not None and dataset is None and steps[-1][0] >= minutes:
        late = ", ".join(f"level {lv} from minute {start:g}" for start, lv in steps if start >= minutes)
        out.print(f"[yellow]note:[/] the video is {minutes:g} min long: the schedule's {late} will not be in it",
                  highlight=False, soft_wrap=True)
    if dataset is not None and rats > 1:
        raise ConfigError("--dataset writes face crops of one animal at a time: leave out --rats")
    if dataset is not None:
        with progress_bars() as progress:
            task = progress.add_task("crops", total=subjects * per_subject, rate="")
            manifest = sy.write_dataset(dataset, subjects, per_subject, seed=seed, coat=coat,
                                        progress=lambda i, n: progress.update(task, completed=i))
        out.print(f"dataset: {subjects} subjects × {per_subject} crops → {manifest}", highlight=False)
    if contact_sheet is not None and beside_real is not None:
        from ..detect.train import yolo_samples
        from ..synth.compare import side_by_side

        real = [(smp.image, smp.boxes) for smp in yolo_samples(beside_real)]
        out.print(f"synthetic beside real → {side_by_side(contact_sheet, real, seed=seed)}", highlight=False)
    elif contact_sheet is not None:
        out.print(f"contact sheet → {sy.contact_sheet(contact_sheet, subject=subject, coat=coat)}", highlight=False)
    elif beside_real is not None:
        raise ConfigError("--beside-real draws into --contact-sheet FILE.png: give both")
    if lab_frames is not None:
        from ..synth.compare import lab_sheet

        out.print(f"lab frames → {lab_sheet(lab_frames, seed=seed)}", highlight=False)
    if dataset is not None or ((contact_sheet or lab_frames) is not None and out_path is None):
        return
    if out_path is None:
        raise ConfigError("give --out NAME.mp4 (or --dataset DIR / --contact-sheet FILE.png)")
    if out_path.suffix.lower() != ".mp4":
        out_path = out_path / (f"synth_seed{seed}_rat{subject}.mp4" if rats == 1 else f"synth_seed{seed}_{rats}rats.mp4")
    w, h = _parse_size(size)
    if minutes <= 0 or not (1 <= fps <= 240):
        raise ConfigError("--minutes must be positive and --fps between 1 and 240")
    spec = sy.VideoSpec(width=w, height=h, fps=fps, minutes=minutes, seed=seed, subject=subject, coat=coat,
                        schedule=schedule, low_light=low_light, fast=fast, bars=bars, rats=rats)
    t0 = time.perf_counter()
    with progress_bars() as progress:
        task = progress.add_task(out_path.name, total=spec.n_frames, rate="")
        paths = sy.write_video(spec, out_path, progress=lambda i, n: progress.update(task, completed=i), crf=crf)
    dt = time.perf_counter() - t0
    out.print(f"{spec.n_frames} frames ({spec.n_frames / dt:.0f} frames/s) → {paths['video']}, "
              f"{paths['truth'].name}, {paths['minutes'].name}", highlight=False)
