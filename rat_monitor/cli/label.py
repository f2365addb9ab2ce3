"""The labelling loop: `label` (pick frames, serve the pages), `label export` and `label train`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from ..models import DEFAULT_DETECTOR
from .app import DETECTOR_HELP, app, friendly_errors, out, progress_bars


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
    detector: str = typer.Option(DEFAULT_DETECTOR, help=DETECTOR_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to serve on (0.0.0.0 opens it to the network)."),
    port: int = typer.Option(8765, help="Port to serve on (0: any free one)."),
    serve: bool = typer.Option(True, help="Serve the pages after adding the videos (--no-serve: only add)."),
):
    """Pick frames from videos into a labelling project and serve its pages: the boxes page (draw, move, resize
    and delete face boxes; 'no face'; keys ←/→, Enter, N, Delete) and the scoring page (blind RGS scores, several
    raters, their agreement). Every change is saved at once. Ctrl-C stops the server.

    [bold]Example:[/] rat-monitor label open sample_videos/albino_onset.mp4 --project my_labels/ --subject rat1
    (`rat-monitor label VIDEO ...` is the same command)
    """
    from ..curate import subject_of
    from ..detect import load_detector
    from ..errors import ConfigError, SourceError
    from ..label.export import import_curated
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
    project = Project.open(project_dir, create=bool(videos) or crops is not None)
    if crops is not None:
        out.print(f"{import_curated(project, crops)} face crops added from {crops}", highlight=False)
    if videos:
        det = load_detector(detector)
        with progress_bars() as progress:
            task = progress.add_task("picking frames", total=len(videos), rate="")
            for video in videos:
                added = sum(project.add_frame(video, subjects[video], p.index, p.t_s, p.image, p.boxes, det.name)
                            is not None for p in pick(video, frames, det))
                progress.console.print(f"{video.name}: {added} frames added ({subjects[video]})", highlight=False)
                progress.advance(task)
    state = project.progress()
    out.print(f"{project_dir}: {state['frames']} frames ({state['done']} done), {state['crops']} face crops",
              highlight=False)
    if not serve:
        return
    server = LabelServer(project, host, port)
    out.print(f"boxes page: {server.url()}\nscoring page: {server.url('/score')}\n"
              "(the token in the address is the key: share it only with your raters; Ctrl-C stops)",
              highlight=False, soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


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
):
    """Fine-tune the face detector on the project's labelled frames (from its last detector, else the bundled
    one) into PROJECT/models/detector-N, refill the boxes of the frames not yet labelled with it, and train a
    pain classifier (evaluated by animal) once enough crops of enough animals are scored: mobilenet-linear
    (ImageNet features) below 50 scored crops per animal when its weights are installed, else lbp-svm.

    [bold]Example:[/] rat-monitor label train my_labels/
    """
    from ..detect.train import require_training_packages
    from ..label.loop import train_round
    from ..label.project import Project

    require_training_packages(fine_tune=True)
    project = Project.open(project_dir)
    with progress_bars() as progress:
        task = progress.add_task("epochs", total=epochs, rate="")
        done = train_round(project, epochs, synthetic,
                           progress=lambda e, n, loss: progress.update(task, completed=e,
                                                                        description=f"epochs (loss {loss:.3f})"))
    f = done["frames"]
    out.print(f"detector → {done['detector']} (from {done['from'].name}; trained on {f['frames']} frames, {f['boxes']} "
              f"boxes, {done['seconds']} s); new boxes on {done['refilled']} unlabelled frames", highlight=False)
    checked = done["checked"]
    if checked:
        a, b = checked["after"], checked["before"]
        out.print(f"checked on {a['frames']} held-out frames ({checked['how']}): {a['true_positives']} of {a['faces']} "
                  f"faces found, {a['false_positives']} false boxes (precision {a['precision']:.2f}, recall "
                  f"{a['recall']:.2f}, AP@0.5 {a['ap50']:.2f}); {done['from'].name} before it: {b['true_positives']} "
                  f"of {b['faces']}, {b['false_positives']} false", highlight=False)
    else:
        out.print(f"[yellow]not checked: {done['held_out']}[/]", highlight=False)
    clf = done["classifier"]
    if clf and "skipped" in clf:
        out.print(f"classifier: not trained: {clf['skipped']}", highlight=False)
    elif clf:
        m = clf["metrics"]
        out.print(f"classifier → {clf['classifier']} ({clf['kind']}: {clf['why']}; {clf['crops']} crops of "
                  f"{clf['animals']} animals; by animal: macro-F1 {m.get('macro_f1', float('nan')):.3f})",
                  highlight=False)
    out.print(f"use it: rat-monitor analyze VIDEO --detector {done['detector']}", highlight=False)
