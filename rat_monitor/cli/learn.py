"""The commands around models: train, evaluate, predict, models, detector train/evaluate."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError, SourceError
from ..models import DEFAULT_CLASSIFIER, DEFAULT_DETECTOR
from .app import (DEFAULT_KIND, DETECTOR_HELP, KIND_HELP, MODEL_HELP, app, caveat, detector_app, err,
                  friendly_errors, out, print_refusal, progress_bars, refuse_to_replace_model)
from .views import au_table, loso_table, models_table

# Options train and evaluate share (same names, same meaning).
DATA_OPTION = typer.Option(..., help="Dataset: a manifest CSV, a folder with manifest.csv, or ROOT/<subject>/<label>/.")
KIND_OPTION = typer.Option(DEFAULT_KIND, "--kind", "-k", help=KIND_HELP)
TASK_OPTION = typer.Option("binary", help="binary (no pain vs pain) | 3class.")


def warn_grouping(ds) -> None:
    problem = ds.grouping_problem()
    if problem:
        err.print(f"[yellow]warning:[/] {problem}", highlight=False, soft_wrap=True)


@app.command()
@friendly_errors
def models():
    """List the bundled models with what they were trained on.

    [bold]Example:[/] rat-monitor models
    """
    from ..models import list_models, models_dir

    out.print(models_table(list_models(), models_dir()))
    out.print("Bundled models are trained on synthetic faces only: train on RatsPain or your own labelled frames "
              "(rat-monitor train) for real use.")


@app.command()
@friendly_errors
def train(
    data: Path = DATA_OPTION,
    kind: str = KIND_OPTION,
    task: str = TASK_OPTION,
    out_dir: Path = typer.Option(..., "--out", "-o", help="Model folder to write (card.json + weights)."),
    epochs: Optional[int] = typer.Option(None, help="ResNet-18 only: maximum epochs."),
    weights: Optional[Path] = typer.Option(None, help="ResNet-18 only: ImageNet weights file (.pth/.safetensors)."),
    synthetic: bool = typer.Option(False, help="Mark the model as trained on synthetic data."),
    loso: bool = typer.Option(False, help="First run leave-one-subject-out evaluation and record it in the card."),
    description: str = typer.Option("", help="How the training data was made, for the model card."),
    overwrite: bool = typer.Option(False, help="Replace the model folder --out if it exists."),
):
    """Train a pain classifier on all of a dataset and save it (no pickle: safetensors + card.json). When the
    dataset has action-unit columns (orbital, nose, ears, whiskers) the model also learns the four AU scores.

    [bold]Example:[/] rat-monitor train --data faces/ --kind lbp-svm --task binary --out models/my-lab
    (faces/ from the synth example; your own: a curated and labelled folder, or RatsPain's manifest.csv)
    """
    from ..classify.evaluate import Trainer, train_and_save
    from ..data import load_dataset

    trainer = Trainer(kind, task, n_jobs=2, epochs=epochs, weights=weights, log=lambda m: err.print(m))
    refuse_to_replace_model(out_dir, overwrite)
    ds = load_dataset(data)  # after the settings are checked
    aus = " (with action units)" if ds.has_aus else ""
    out.print(f"training {kind} ({task}){aus} on {ds.describe()}", highlight=False, soft_wrap=True)
    warn_grouping(ds)
    card = train_and_save(ds, trainer, out_dir, loso=loso, synthetic=synthetic, description=description)
    if card["metrics"]:
        names = {"accuracy": "accuracy", "macro_f1": "macro-F1", "pain_f1": "pain-F1",
                 "refused_share": "refused as unfamiliar"}
        figures = ", ".join(f"{label} {card['metrics'][k]:.3f}" for k, label in names.items() if k in card["metrics"])
        out.print(f"leave-one-subject-out (before the final fit): {figures} (all figures in {out_dir}/card.json)",
                  highlight=False)
    out.print(f"saved {card['name']} → {out_dir} in {card['training']['seconds']} s", highlight=False)
    fam = card["familiarity"]
    out.print(f"familiarity check: calibrated {fam['calibration']}; crops below {fam['refuse_below']} are refused"
              if "file" in fam else f"familiarity check {fam['why_not']}: this model will score any crop, familiar "
                                    "or not", highlight=False)


@app.command()
@friendly_errors
def evaluate(
    data: Path = DATA_OPTION,
    kind: str = KIND_OPTION,
    task: str = TASK_OPTION,
    protocol: str = typer.Option("loso", help="loso: leave one subject (animal) out. The only honest protocol here."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON."),
    epochs: Optional[int] = typer.Option(None, help="ResNet-18 only: maximum epochs per fold."),
    weights: Optional[Path] = typer.Option(None, help="ResNet-18 only: ImageNet weights file."),
):
    """Leave-one-subject-out evaluation: accuracy, macro-F1, pain-F1 and confusion, per animal and pooled, with
    the share of crops refused as unfamiliar and macro-F1 over the accepted ones; with action-unit labels also
    per AU accuracy, quadratic-weighted kappa, MAE and the RGS score's ICC(2,1).

    [bold]Example:[/] rat-monitor evaluate --data faces/ --kind lbp-svm --protocol loso --json loso.json
    """
    from ..classify.evaluate import Trainer, evaluate_loso
    from ..data import load_dataset

    if protocol != "loso":
        raise ConfigError("only --protocol loso is offered: evaluation is by animal, never by image")
    trainer = Trainer(kind, task, n_jobs=2, epochs=epochs, weights=weights)
    ds = load_dataset(data)
    trainer.prepare(ds)
    out.print(f"LOSO {kind} ({task}) on {ds.describe()}", highlight=False, soft_wrap=True)
    warn_grouping(ds)
    result = evaluate_loso(ds, kind, task, trainer=trainer,
                           progress=lambda s, f: err.print(f"  fold {s}: macro-F1 {f['macro_f1']:.3f}",
                                                           highlight=False))
    out.print(loso_table(result, kind, task))
    if "action_units" in result:
        out.print(au_table(result))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2))
        out.print(f"→ {json_path}", highlight=False)


@app.command()
@friendly_errors
def predict(
    paths: list[Path] = typer.Argument(None, help="Face-crop images, or folders of them (searched recursively); "
                                                  "whole frames with --detect."),
    out_path: Path = typer.Option(..., "--out", "-o", help="CSV to write: one row per face."),
    model: str = typer.Option(DEFAULT_CLASSIFIER, "--model", "-m", help=MODEL_HELP),
    detect: bool = typer.Option(False, "--detect", help="The images are whole frames: find the faces with the "
                                                        "detector first, one row per face with its box."),
    detector: str = typer.Option(DEFAULT_DETECTOR, "--detector", "-d", help=DETECTOR_HELP),
    yolo: Optional[Path] = typer.Option(None, help="Score the faces labelled in this YOLO folder (images/ + "
                                                   "labels/), cut from their boxes, instead of PATHS."),
):
    """Score face crops directly (e.g. the RatsPain crops a lab received): one row per image with path, refused,
    familiarity, pain_prob, p_none, p_moderate, p_severe (and the four AU scores and rgs when the model scores
    them). For whole frames, --detect finds the faces first (or --yolo DIR cuts them from YOLO labels): one row
    per face with its box x0, y0, x1, y1, and a row saying so for a frame without one. A face unlike the
    model's training faces is refused: refused=1, no score. Unreadable files get a row with their error and do
    not stop the run; exit 3 when no image could be read at all.

    [bold]Example:[/] rat-monitor predict runs/demo/crops/ --out scores.csv   (after rat-monitor demo)
    """
    from ..classify import load_classifier
    from ..predict import NO_FACE, expand_images, found_faces, given_crops, labelled_faces, predict_faces
    from ..sinks.files import score_columns, score_row

    if yolo is None and not paths:
        raise ConfigError("give face-crop images or folders (whole frames with --detect), or --yolo DIR")
    if out_path.exists():
        raise ConfigError(f"{out_path} exists; choose another --out or remove it")
    clf = load_classifier(model)
    images = expand_images(paths or [])
    if yolo is None and not images:
        raise SourceError("no images found in " + ", ".join(map(str, paths)))
    if yolo is not None:
        faces, what = labelled_faces(yolo), "faces"
    elif detect:
        from ..detect import load_detector

        faces, what = found_faces(images, load_detector(detector)), "frames"
    else:
        faces, what = given_crops(images), "images"
    boxes = yolo is not None or detect
    out_path.parent.mkdir(parents=True, exist_ok=True)
    counts = {"scored": 0, "refused": 0, "no_face": 0, "unreadable": 0}
    with open(out_path, "w", newline="") as f, progress_bars() as progress:
        task = progress.add_task(what, total=len(images) or None, rate="")
        writer = csv.writer(f)
        writer.writerow(score_columns(clf.action_units, boxes))
        last = None
        for path, box, pred, error in predict_faces(faces, clf):
            writer.writerow(score_row(str(path), pred, error, clf.action_units, boxes, box))
            if pred is None:
                counts["no_face" if error in NO_FACE else "unreadable"] += 1
                progress.console.print(f"[yellow]skipped[/] {path}: {error}", highlight=False)
            else:
                counts["refused" if pred.refused else "scored"] += 1
            if path != last:
                progress.update(task, advance=1)
                last = path
    no_face = f"{counts['no_face']} frame(s) without a face, " if boxes else ""
    out.print(f"{counts['scored']} scored, {counts['refused']} refused as unfamiliar, {no_face}"
              f"{counts['unreadable']} unreadable → {out_path}", highlight=False)
    if clf.familiarity is None:
        out.print("[yellow]note:[/] this model has no familiarity statistics: every face was scored, familiar or not",
                  highlight=False)
    if not boxes and counts["refused"] > counts["scored"]:
        out.print("[yellow]note:[/] predict scores face crops as given; if these are whole frames, find the faces "
                  "first: --detect (or --yolo DIR for frames with YOLO face boxes)", highlight=False, soft_wrap=True)
    else:
        print_refusal(counts["refused"], counts["scored"])
    if note := caveat(clf):
        out.print(f"[dim]{note}[/]", highlight=False)
    if images and counts["unreadable"] == len(images):
        raise SourceError(f"none of the {len(images)} file(s) could be read as an image")


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
    from ..detect.selftrain import RUNS, runs_of_images, runs_of_video, self_train
    from ..detect.train import require_training_packages, yolo_samples
    from ..label.figures import not_worse, verdict, write_check
    from ..models import record_figures, resolve

    require_training_packages(fine_tune=True)
    if not 1 <= rounds <= 5:
        raise ConfigError(f"--rounds must be 1 to 5, got {rounds}")
    if not 1 <= epochs <= 500:
        raise ConfigError(f"--epochs must be 1 to 500, got {epochs}")
    for folder in (f for f in (yolo, check) if f is not None):
        if not folder.is_dir():
            raise ConfigError(f"no such folder: {folder}")
    for item in footage:
        if not item.exists():
            raise SourceError(f"no such video or folder: {item}")
    refuse_to_replace_model(out_dir, overwrite)
    init_dir = resolve(init, "face-detector")
    labelled = yolo_samples(yolo) if yolo else []
    per_video = max(8, RUNS // len(footage))
    runs = [run for item in footage
            for run in (runs_of_images(item) if item.is_dir() else runs_of_video(item, runs=per_video))]
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
    out.print(f"held-out check: {verdict(figures)}", highlight=False)
    out.print(f"  {init_dir.name} on the same frames: {before['true_positives']} of {before['faces']} found, "
              f"{before['false_positives']} false (AP@0.5 {before['ap50']:.2f})", highlight=False)
    if not not_worse(figures, before):
        out.print(f"[yellow]worse than {init_dir.name} on the held-out frames: keep using {init_dir.name}[/]",
                  highlight=False)


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
