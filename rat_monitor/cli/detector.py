"""The commands around the face detector: detector train, self-train, quantize and evaluate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError, SourceError
from ..models import DEFAULT_DETECTOR
from .app import DETECTOR_HELP, detector_app, friendly_errors, out, progress_bars, refuse_to_replace_model


@detector_app.command("train")
@friendly_errors
def detector_train(
    out_dir: Path = typer.Option(..., "--out", "-o", help="Detector folder to write."),
    synthetic: int = typer.Option(4000, help="Randomised synthetic frames to train on (0 for none)."),
    yolo: Optional[list[Path]] = typer.Option(None, help="Annotated frames in YOLO layout (images/ + labels/); "
                                                         "repeat for several folders."),
    init: Optional[str] = typer.Option(None, help="Fine-tune from this detector (name or folder)."),
    epochs: int = typer.Option(16, help="Training epochs."),
    seed: int = typer.Option(1, help="Seed of the synthetic frames."),
    repeat_yolo: int = typer.Option(1, help="Show each annotated frame this many times per epoch."),
    workers: int = typer.Option(1, help="Processes rendering the synthetic frames (the frames are the same "
                                        "for any number)."),
    overwrite: bool = typer.Option(False, help="Replace the detector folder --out if it exists."),
):
    """Train the face detector on synthetic frames and/or your annotated frames; or fine-tune the bundled one.

    [bold]Example:[/] rat-monitor detector train --yolo my_boxes/ --init rat-face-detector --synthetic 0 --epochs 30 --out models/my-detector
    """
    from ..detect.train import (PHOTO_SHARE, input_size_of, prepare, render_prepared, require_training_packages,
                                train_detector, yolo_samples)
    from ..models import mixed_detector_caveat, read_card, resolve
    from ..synth.photos import photo_names

    require_training_packages(fine_tune=init is not None)
    if synthetic <= 0 and not yolo:
        raise ConfigError("nothing to train on: give --synthetic N and/or --yolo DIR")
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    refuse_to_replace_model(out_dir, overwrite)
    init_dir = resolve(init, "face-detector") if init else None
    size = input_size_of(init_dir)  # frames are prepared once, at the network input they will meet
    parts, real = [], 0
    with progress_bars() as progress:
        data = None
        if synthetic > 0:
            task = progress.add_task("rendering", total=synthetic, rate="")
            data = render_prepared(synthetic, seed, workers, progress=lambda i, n: progress.update(task, completed=i),
                                   size=size)
            parts.append(f"{synthetic} randomised synthetic lab frames (synth.lab, seed {seed}; "
                         f"{PHOTO_SHARE:.0%} of them on real photographs)")
        for folder in yolo or []:
            ys = yolo_samples(folder)
            real += len(ys)
            annotated = prepare(ys * max(1, repeat_yolo), *size)
            data = annotated if data is None else data + annotated
            parts.append(f"{len(ys)} annotated frames from {folder}" +
                         (f" (each shown {repeat_yolo} times per epoch)" if repeat_yolo > 1 else ""))
        # Synthetic only when every frame it learns from, its starting detector's included, was synthetic.
        synthetic_only = not yolo and (init_dir is None or bool(read_card(init_dir).get("synthetic")))
        task = progress.add_task("epochs", total=epochs, rate="")
        extra = {"photographs": photo_names()} if synthetic > 0 else {}
        licences = [f"{folder}: {_licence_note(folder)}" for folder in yolo or [] if _licence_note(folder)]
        if licences:  # the card names each real source's licence and its notes (e.g. commercial use)
            extra["annotated_sources"] = licences
        mixed = mixed_detector_caveat(synthetic, real) if synthetic > 0 and yolo and init_dir is None else None
        card = train_detector(data, out_dir, epochs=epochs, init=init_dir, seed=seed, description="; ".join(parts),
                              synthetic=synthetic_only, extra_card=extra or None, caveat=mixed,
                              progress=lambda e, n, loss: progress.update(task, completed=e,
                                                                           description=f"epochs (loss {loss:.3f})"))
    out.print(f"detector → {out_dir} ({card['training']['seconds']} s)", highlight=False)


@detector_app.command("self-train")
@friendly_errors
def detector_self_train(
    footage: list[Path] = typer.Argument(..., help="Unlabelled videos of one camera, or folders of its stills."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Detector folder to write."),
    init: str = typer.Option(DEFAULT_DETECTOR, help="The detector to start from (name or folder)."),
    yolo: Optional[Path] = typer.Option(None, help="A few labelled frames of this camera (YOLO layout), learnt "
                                                   "beside the pseudo-labels."),
    check: Optional[Path] = typer.Option(None, help="Labelled frames of this camera that it never learns from (YOLO "
                                                    "layout): the new detector is measured on them against --init."),
    rounds: int = typer.Option(2, help="Rounds of pseudo-labelling and fine-tuning."),
    epochs: int = typer.Option(30, help="Epochs of each fine-tune."),
    overwrite: bool = typer.Option(False, help="Replace the detector folder --out if it exists."),
):
    """Teach a detector your camera from its own unlabelled footage (self-training), with or without a few labels.

    Faces the detector is sure of that persist over nearby frames become labels; boxes that sit at one place
    through the footage (pellets, markers, glare) are taught as not faces; frames with a doubtful box are left out.
    Check it with --check on labelled frames it never saw before relying on it: pseudo-labels teach the detector's
    own mistakes too.

    [bold]Example:[/] rat-monitor detector self-train cage3_day1.mp4 --yolo my_boxes/ --check my_held_out/ --out models/cage3-detector
    """
    from ..detect import load_detector
    from ..detect.evaluate import evaluate_yolo
    from ..detect.selftrain import runs_of_footage, self_train
    from ..detect.train import require_training_packages, yolo_samples
    from ..label.figures import verdict, write_check
    from ..models import record_figures, resolve

    require_training_packages(fine_tune=True)
    for folder in (f for f in (yolo, check) if f is not None):
        if not folder.is_dir():
            raise ConfigError(f"no such folder: {folder}")
    runs = runs_of_footage(footage)  # the footage is read before anything is written
    refuse_to_replace_model(out_dir, overwrite)
    init_dir = resolve(init, "face-detector")
    labelled = yolo_samples(yolo) if yolo else []
    with progress_bars() as progress:
        task = progress.add_task("epochs", total=epochs, rate="")
        card, history = self_train(init_dir, runs, out_dir, labelled, rounds, epochs,
                                   what=", ".join(f.name for f in footage),
                                   progress=lambda e, n, loss: progress.update(task, completed=e,
                                                                                description=f"epochs (loss {loss:.3f})"))
    for r in history:
        out.print(f"round {r['round']}: {r['faces']} pseudo-labelled faces on {r['frames']} frames, {r['fixed_boxes']} "
                  f"fixed boxes taught as not faces, {r['runs_left_out']} doubtful runs left out", highlight=False)
    figures = None
    if check:
        figures, before = (evaluate_yolo(load_detector(d), check) for d in (out_dir, init_dir))
        record_figures(out_dir, "held_out", {**figures, "data": str(check)})
    write_check(out_dir, f"self-trained on its own sure detections in unlabelled footage"
                         f"{f' and {len(labelled)} labelled frames' if labelled else ''}; {verdict(figures)}", figures)
    out.print(f"detector → {out_dir} (input {card['input_size'][0]}x{card['input_size'][1]}, "
              f"{card['training']['seconds']} s for its last round)", highlight=False)
    if figures is None:
        out.print("[yellow]not checked: give --check DIR (labelled frames it never learnt from) before relying on "
                  "it[/]", highlight=False)
        return
    _say_check(figures, before, init_dir.name)


def _say_check(after: dict, before: dict, start: str) -> None:
    """A new detector's held-out figures beside those of the one it came from (START), and a warning when worse."""
    from ..label.figures import not_worse, verdict

    out.print(f"held-out check: {verdict(after)}", highlight=False)
    out.print(f"  {start} on the same frames: {before['true_positives']} of {before['faces']} found, "
              f"{before['false_positives']} false (AP@0.5 {before['ap50']:.2f})", highlight=False)
    if not not_worse(after, before):
        out.print(f"[yellow]worse than {start} on the held-out frames: keep using {start}[/]", highlight=False)


@detector_app.command("quantize")
@friendly_errors
def detector_quantize(
    detector: str = typer.Argument(..., help="The detector to quantize (name or folder)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Detector folder to write."),
    frames: Optional[list[Path]] = typer.Option(None, help="Videos of the camera, or folders of its stills, to "
                                                           "calibrate on (repeat for several); randomised lab "
                                                           "frames are added."),
    check: Optional[Path] = typer.Option(None, help="Labelled frames of the camera (YOLO layout): both detectors "
                                                    "are measured on them."),
    overwrite: bool = typer.Option(False, help="Replace the detector folder --out if it exists."),
):
    """An int8 copy of a detector: 0.4-0.7 of the cost per call on a CPU (a calibrated camera's larger input gains
    most), its value ranges learnt from your camera's frames. Check it with --check before relying on it.

    [bold]Example:[/] rat-monitor detector quantize labels/models/detector-3 --frames cage3/rat7_day1.mp4 --check my_held_out/ --out models/cage3-int8
    """
    from ..detect import load_detector
    from ..detect.evaluate import evaluate_yolo
    from ..detect.quantize import calibration_frames, call_ms, quantize_detector
    from ..detect.selftrain import runs_of_footage
    from ..models import record_figures, resolve

    if check is not None and not check.is_dir():
        raise ConfigError(f"no such folder: {check}")
    camera = [image for run in runs_of_footage(frames or []) for image in run[:1]]
    refuse_to_replace_model(out_dir, overwrite)
    source = resolve(detector, "face-detector")
    calibration = calibration_frames(camera)
    quantize_detector(source, out_dir, calibration,
                      f"{len(calibration) - len(camera)} randomised lab frames" +
                      (f" and {len(camera)} of {', '.join(f.name for f in frames)}" if camera else ""))
    pair = [load_detector(source), load_detector(out_dir)]
    costs = [call_ms(det, calibration[0]) for det in pair]  # the same frame through each
    out.print(f"detector → {out_dir} (int8, calibrated on {len(calibration)} frames): {costs[1]:.1f} ms a call, "
              f"{costs[0]:.1f} ms for {source.name} ({costs[1] / costs[0]:.2f} of it)", highlight=False)
    if check is None:
        out.print("[yellow]not checked: give --check DIR (labelled frames of the camera) before relying on it[/]",
                  highlight=False)
        return
    before, after = (evaluate_yolo(det, check) for det in pair)
    record_figures(out_dir, "held_out", {**after, "data": str(check)})
    _say_check(after, before, source.name)


def _licence_note(folder: Path) -> str:
    """A YOLO folder's LICENSE file in brief, for the card: the licence's title (its first line) and the lines
    that say where the frames came from, under what notes (e.g. commercial users to contact the authors) and
    what was changed."""
    path = Path(folder) / "LICENSE"
    if not path.is_file():
        return ""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    said = [line for line in lines[1:] if line.split(" ")[0].rstrip(":") in ("Source", "Note", "Modifications",
                                                                             "Licence", "License", "Copyright")]
    return " ".join(lines[:1] + said)[:1500]


@detector_app.command("evaluate")
@friendly_errors
def detector_evaluate(
    video: Optional[Path] = typer.Option(None, help="A video with NAME.truth.csv beside it."),
    yolo: Optional[Path] = typer.Option(None, help="A YOLO folder (images/ + labels/)."),
    detector: str = typer.Option(DEFAULT_DETECTOR, help=DETECTOR_HELP),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write precision, recall, ap50, frames, "
                                                                 "ms_per_frame as JSON."),
    every: int = typer.Option(1, help="Evaluate every Nth frame of the video."),
    record: bool = typer.Option(False, help="Write the figures into the detector's card (metrics.<data name>)."),
    sheet: Optional[Path] = typer.Option(None, help="With --yolo: also draw every frame with its labelled boxes "
                                                    "(green) and what the detector found (red) into this PNG."),
):
    """Precision, recall and AP at IoU 0.5 of a detector on a video with truth, or on annotated frames.

    [bold]Example:[/] rat-monitor detector evaluate --video sample_videos/albino_onset.mp4
    (real frames beside what it found: --yolo ../shared/real/reachbox --sheet local/found.png)
    """
    from ..detect import load_detector
    from ..detect.evaluate import evaluate_video, evaluate_yolo

    if (video is None) == (yolo is None):
        raise ConfigError("give exactly one of --video or --yolo")
    if video is not None and not video.is_file():
        raise SourceError(f"no such video file: {video}")
    if yolo is not None and not yolo.is_dir():
        raise ConfigError(f"no such folder: {yolo}")
    if sheet is not None and yolo is None:
        raise ConfigError("--sheet draws the frames of --yolo DIR: give both")
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
    if sheet is not None:
        from ..detect.evaluate import found_on_yolo
        from ..synth.compare import found_sheet

        drawn = found_sheet(sheet, found_on_yolo(det, yolo), f"{det.name} on {yolo.resolve().name}")
        out.print(f"frames and what it found → {drawn}", highlight=False)
    if record:
        from ..models import record_figures, resolve

        data = Path(video or yolo)
        name = data.stem if video else data.resolve().name
        record_figures(resolve(detector, "face-detector"), name, {**result, "data": str(data)})
        out.print(f"recorded in the card of {detector} as metrics.{name}", highlight=False)
