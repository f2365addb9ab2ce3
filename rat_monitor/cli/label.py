"""The labelling loop: `label` (pick frames, serve the pages), `label export` and `label train`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from .app import app, friendly_errors, out, progress_bars, warn


class _DefaultToOpen(TyperGroup):
    """`rat-monitor label VIDEO... --project DIR` is `label open ...`: the subcommand may be left out."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["open", *args]
        return super().parse_args(ctx, args)


label_app = typer.Typer(cls=_DefaultToOpen, no_args_is_help=True, rich_markup_mode="rich",
                        help="Label your own footage in the browser: face boxes and grimace scores; export them "
                             "and fine-tune on them.\n\n[bold]Example:[/] rat-monitor label "
                             "sample_videos/albino_onset.mp4 --project my_labels/ --subject rat1")
app.add_typer(label_app, name="label")


@label_app.command("open")
@friendly_errors
def label_open(
    videos: list[Path] = typer.Argument(None, help="Videos to pick frames from (added to the project; frames "
                                                   "already in it are never changed)."),
    project_dir: Path = typer.Option(..., "--project", "-p", help="The project folder (made when new)."),
    frames: int = typer.Option(20, help="Frames to pick per video: one from each equal stretch of it, the least "
                                        "alike, and where the detector is least sure."),
    subject: Optional[str] = typer.Option(None, help="The animal the videos show (its id in exports)."),
    subject_from: Optional[str] = typer.Option(None, help="Regular expression finding the animal in each video's "
                                                          "path (first group), e.g. '(rat\\d+)'."),
    crops: Optional[Path] = typer.Option(None, help="Also put the face crops of a `curate` folder on the scoring "
                                                    "page (their animal from its manifest or key)."),
    detector: Optional[str] = typer.Option(None, help="The detector that proposes boxes: a bundled name or a "
                                                      "folder. Default: the project's recommended one (after "
                                                      "`label train`), else the bundled one. Given on a project, its "
                                                      "proposals replace those of every frame not yet decided."),
    host: str = typer.Option("127.0.0.1", help="Address to serve on (0.0.0.0 opens it to the network)."),
    port: int = typer.Option(8765, help="Port to serve on (0: any free one)."),
    serve: bool = typer.Option(True, help="Serve the pages after adding the videos (--no-serve: only add)."),
    train_every: int = typer.Option(3, help="Fine-tune the detector in the background after every N frames decided "
                                            "on the boxes page, and refill the proposals from it (0: only when "
                                            "asked on the page). Needs the 'train' extra."),
    epochs: int = typer.Option(30, help="Fine-tuning epochs of each background round."),
):
    """Calibrate a camera: pick frames from videos into a labelling project and serve its pages. The boxes page
    shows the detector's proposals (accept with Enter, turn down with Delete, draw or fix boxes; 'no face' with
    N; ←/→ move), fine-tunes the detector in the background every few decided frames, refills the proposals from
    it and shows its held-out figure and learning curve; the scoring page takes blind RGS scores of several raters
    and shows their agreement. Every change is saved at once. Ctrl-C stops the server. The detector it made is
    PROJECT/models/detector-N (the recommended one is named on the page): analyze --detector takes it.

    [bold]Example:[/] rat-monitor label open sample_videos/albino_onset.mp4 --project my_labels/ --subject rat1
    (`rat-monitor label VIDEO ...` is the same command)
    """
    from ..curate import subject_of
    from ..detect import load_detector
    from ..errors import ConfigError, SourceError
    from ..label.export import import_curated
    from ..label.loop import refill
    from ..label.pick import pick
    from ..label.project import Project
    from ..label.server import LabelServer

    if frames < 1:
        raise ConfigError("--frames must be at least 1")
    videos = videos or []
    for video in videos:  # every video checked before the project is made or changed
        if not video.is_file():
            raise SourceError(f"no such video file: {video}")
    subjects = {v: subject_of(v, subject, subject_from) for v in videos}
    project = Project.open(project_dir, create=bool(videos) or crops is not None, writer=True)
    if crops is not None:
        out.print(f"{import_curated(project, crops)} face crops added from {crops}", highlight=False)
    det = load_detector(detector or project.recommended_detector())
    if detector is not None:
        refilled = refill(project, det)
        if refilled:
            out.print(f"{refilled} undecided frames now show the proposals of {det.name}", highlight=False)
    if videos:
        added_by_video = {}
        with progress_bars() as progress:
            task = progress.add_task("picking frames", total=len(videos), rate="")
            for video in videos:
                taken = project.frame_indices(video)
                added_by_video[video] = (sum(project.add_frame(video, subjects[video], p.index, p.t_s, p.image,
                                                               p.boxes, det.name) is not None
                                             for p in pick(video, frames, det, taken)), len(taken))
                progress.advance(task)
        for video, (added, before) in added_by_video.items():  # after the bar: never glued to its line
            hint = " (every frame of it is in the project already)" if not added and before else ""
            out.print(f"{video.name}: {added} frames added ({subjects[video]}; {before + added} in the project, "
                      f"proposals by {det.name}){hint}", highlight=False)
    state = project.progress()
    out.print(f"{project_dir}: {state['frames']} frames ({state['done']} done), {state['crops']} face crops",
              highlight=False)
    say_damaged(project)
    if not serve:
        return
    from ..label.background import BackgroundTrainer

    trainer = BackgroundTrainer(project, epochs=epochs, auto_every=train_every)
    server = LabelServer(project, host, port, trainer=trainer)
    if trainer.unavailable:
        out.print(f"[yellow]note:[/] no fine-tuning from the page: {trainer.unavailable}", highlight=False)
    out.print(f"boxes page: {server.url()}\nscoring page: {server.url('/score')}\n"
              "(the token in the address is the key: share it only with your raters; Ctrl-C stops)",
              highlight=False, soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def say_damaged(project) -> None:
    """One warning per record the project leaves out (cut short, edited, planted; a frame's picture missing)."""
    for line in project.damaged():
        warn(line, "left out")


@label_app.command("export")
@friendly_errors
def label_export(
    project_dir: Path = typer.Argument(..., help="The project folder."),
    yolo: Optional[Path] = typer.Option(None, help="Write the decided frames as a YOLO folder (detector train "
                                                   "--yolo)."),
    manifest: Optional[Path] = typer.Option(None, help="Write the scored crops as a manifest CSV (train / "
                                                       "evaluate --data), the raters' consensus per crop."),
):
    """Export a project's labels in the formats the trainers read.

    [bold]Example:[/] rat-monitor label export my_labels/ --yolo my_boxes/ --manifest my_scores.csv
    """
    from ..errors import ConfigError
    from ..label.export import export_manifest, export_yolo
    from ..label.project import Project

    if yolo is None and manifest is None:
        raise ConfigError("give --yolo DIR and/or --manifest FILE.csv")
    project = Project.open(project_dir)
    say_damaged(project)
    if yolo is not None:
        c = export_yolo(project, yolo)
        out.print(f"{c['frames']} frames ({c['boxes']} boxes, {c['no_face']} without a face) → {yolo}",
                  highlight=False)
    if manifest is not None:
        c = export_manifest(project, manifest)
        out.print(f"{c['crops']} scored crops of {c['animals']} animal(s) → {manifest}", highlight=False)


@label_app.command("train")
@friendly_errors
def label_train(
    project_dir: Path = typer.Argument(..., help="The project folder."),
    epochs: int = typer.Option(30, help="Fine-tuning epochs."),
    synthetic: int = typer.Option(0, help="Also train on this many randomised synthetic lab frames."),
    detector: bool = typer.Option(True, help="Fine-tune the detector (--no-detector: the classifier alone)."),
    classifier: bool = typer.Option(True, help="Train the pain classifier (--no-classifier: the detector alone)."),
    pilot: bool = typer.Option(False, help="Train the classifier even on too few animals to validate it by animal (a "
                                           "one-animal pilot): its card, every run and every report say it is NOT "
                                           "validated."),
    self_train: bool = typer.Option(False, "--self-train", help="The detector also learns from the project's "
                                    "videos themselves: its sure, persisting faces as labels, boxes fixed in place "
                                    "as not faces; held to the same held-out check."),
):
    """One turn of the loop, training only what changed since the last one. The detector: fine-tuned on the
    project's labelled frames (from its recommended detector, else the bundled one) into PROJECT/models/detector-N,
    at an input size chosen for the camera's frames and faces, checked on held-out frames of every video (never
    frames it or its ancestors learnt from), and recommended only if it is not worse there than the one it started
    from; the undecided frames then get its proposals. The classifier: trained when enough crops of enough animals
    are scored (evaluated by animal; --pilot trains it on fewer, marked NOT validated everywhere): mobilenet-linear
    (ImageNet features) below 50 scored crops per animal when its weights are installed, else lbp-svm.

    [bold]Example:[/] rat-monitor label train my_labels/
    """
    from ..detect.train import require_training_packages
    from ..label.figures import MIN_HELD_OUT_FACES, verdict
    from ..label.loop import train_round
    from ..label.project import Project

    if detector:
        require_training_packages(fine_tune=True)
    project = Project.open(project_dir, writer=True)
    with progress_bars() as progress:
        task = progress.add_task("epochs", total=epochs, rate="", visible=detector)
        done = train_round(project, epochs, synthetic, detector=detector, classifier=classifier, pilot=pilot,
                           self_train=self_train, progress=lambda e, n, loss: progress.update(task, completed=e,
                                                                        description=f"epochs (loss {loss:.3f})"))
    if "unchanged" in done:
        out.print(f"detector: {done['unchanged']}", highlight=False)
    elif done.get("trained"):
        f = done["frames"]
        out.print(f"detector → {done['trained']} (from {done['from'].name}; {f['frames']} frames, {f['boxes']} boxes, "
                  f"input {done['input_size'][0]}x{done['input_size'][1]}, {done['seconds']} s)", highlight=False)
        for r in done["self_training"]:
            out.print(f"  self-training round {r['round']}: {r['faces']} pseudo-labelled faces on {r['frames']} "
                      f"frames of the videos, {r['fixed_boxes']} fixed boxes taught as not faces, "
                      f"{r['runs_left_out']} doubtful runs left out", highlight=False)
        checked = done["checked"]
        out.print(f"held-out check: {verdict(checked['after'] if checked else None)} ({done['held_out']})",
                  highlight=False)
        if checked and checked["after"]["faces"] >= MIN_HELD_OUT_FACES:
            b = checked["before"]
            out.print(f"  {done['from'].name} on the same frames: {b['true_positives']} of {b['faces']} found, "
                      f"{b['false_positives']} false (AP@0.5 {b['ap50']:.2f})", highlight=False)
        if not done["kept_better"]:
            out.print(f"[yellow]{done['trained'].name} was worse on the held-out frames: {done['recommended'].name} "
                      "stays the recommended detector[/]", highlight=False)
        out.print(f"new proposals on {done['refilled']} undecided frames", highlight=False)
    clf = done["classifier"]
    if clf and "skipped" in clf:
        out.print(f"classifier: not trained: {clf['skipped']}", highlight=False)
        if clf.get("pilot_possible"):
            out.print(f"  a pilot on these animals: rat-monitor label train {project_dir} --pilot (trained without a "
                      "by-animal check; every run and report made with it says 'NOT validated by animal')",
                      highlight=False, soft_wrap=True)
    elif clf and clf.get("unvalidated"):
        out.print(f"[yellow]classifier → {clf['classifier']} ({clf['kind']}; {clf['crops']} crops of {clf['animals']} "
                  f"animal(s)): a pilot, NOT validated by animal ({clf['unvalidated']}); every run and report made "
                  "with it says so[/]", highlight=False, soft_wrap=True)
    elif clf:
        m = clf["metrics"]
        out.print(f"classifier → {clf['classifier']} ({clf['kind']}: {clf['why']}; {clf['crops']} crops of "
                  f"{clf['animals']} animals; by animal: macro-F1 {m.get('macro_f1', float('nan')):.3f})",
                  highlight=False)
    if done.get("recommended") is not None:
        out.print(f"use it: rat-monitor analyze VIDEO --detector {done['recommended']}", highlight=False)
