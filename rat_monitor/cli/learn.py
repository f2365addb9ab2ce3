"""The commands around pain models: train, evaluate, predict, models."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError, SourceError
from ..models import DEFAULT_CLASSIFIER, DEFAULT_DETECTOR
from .app import (DEFAULT_KIND, DETECTOR_HELP, KIND_HELP, MODEL_HELP, app, caveat, err,
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
