"""One turn of the labelling loop: fine-tune the face detector on the project's labelled frames (from its last
detector, or the bundled one), put the new detector's boxes on the frames nobody has labelled yet, and train a
pain classifier on the scored crops once there are enough of them, evaluated by animal. Needs torch (the
'train' extra) for the detector."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from .export import export_manifest, export_yolo
from .project import Project

FRAMES_PER_EPOCH = 64  # a few labelled frames are shown several times per epoch
MIN_CROPS, MIN_ANIMALS = 20, 3  # below this a classifier's by-animal figures mean nothing
PRETRAINED_BELOW = 50  # scored crops per animal below which mobilenet-linear is trained (learning curve, README)


def fine_tune_detector(yolo: Path, out: Path, init: Path, epochs: int, seed: int = 0, synthetic: int = 0,
                       progress: Callable[[int, int, float], None] | None = None,
                       extra_card: dict | None = None) -> dict:
    """The detector of INIT fine-tuned on a YOLO folder (plus SYNTHETIC randomised lab frames, which keep what
    it knew); returns its card."""
    from ..detect.train import input_size_of, prepare, render_prepared, train_detector, yolo_samples

    samples = yolo_samples(yolo)
    size = input_size_of(init)
    data = prepare(samples * max(1, math.ceil(FRAMES_PER_EPOCH / len(samples))), *size)
    parts = [f"{len(samples)} labelled frames ({yolo})"]
    if synthetic > 0:
        data = data + render_prepared(synthetic, seed, size=size)
        parts.append(f"{synthetic} randomised synthetic lab frames")
    return train_detector(data, out, epochs=epochs, init=init, seed=seed, description="; ".join(parts),
                          progress=progress, extra_card=extra_card)


HELD_OUT_SHARE = 0.25  # of the labelled frames, kept out of the fine-tune to check it
MIN_FRAMES_TO_HOLD_OUT = 4


def split_held_out(frames: list[dict]) -> tuple[list[str], list[str], str]:
    """(training frame ids, held-out frame ids, how): the decided frames of whole videos when there are
    several (the last videos in name order, about a quarter of the frames), else the last quarter of the
    video's frames in time, so that no held-out frame has training frames on both sides of it."""
    decided = [f for f in frames if f["status"] != "unlabelled"]
    if len(decided) < MIN_FRAMES_TO_HOLD_OUT:
        return [f["id"] for f in decided], [], (f"{len(decided)} labelled frames: too few to hold any out "
                                                f"({MIN_FRAMES_TO_HOLD_OUT} needed)")
    want = max(1, round(HELD_OUT_SHARE * len(decided)))
    held_videos, held_count = set(), 0
    for video in sorted({f["video"] for f in decided}, reverse=True)[:-1]:  # one video at least stays to train
        if held_count >= want:
            break
        held_videos.add(video)
        held_count += sum(f["video"] == video for f in decided)
    if held_count >= want:
        return ([f["id"] for f in decided if f["video"] not in held_videos],
                [f["id"] for f in decided if f["video"] in held_videos],
                f"by video: the {held_count} labelled frames of {len(held_videos)} video(s) held out")
    in_time = sorted(decided, key=lambda f: (f["video"], f["t_s"]))
    held = in_time[-want:]
    return ([f["id"] for f in in_time[:-want]], [f["id"] for f in held],
            f"by time: the last {len(held)} labelled frames (from {held[0]['t_s']:.1f} s) held out")


def train_round(project: Project, epochs: int = 30, synthetic: int = 0, seed: int = 0,
                progress: Callable[[int, int, float], None] | None = None) -> dict:
    """Fine-tunes detector-N from the latest one (or the bundled detector), refills the unlabelled frames'
    boxes, and trains classifier-N when MIN_CROPS crops of MIN_ANIMALS animals are scored. Returns what it did."""
    from ..detect import load_detector
    from ..models import DEFAULT_DETECTOR, resolve

    earlier = project.detectors()
    number = int(earlier[-1].name.split("-")[1]) + 1 if earlier else 1
    init = earlier[-1] if earlier else resolve(DEFAULT_DETECTOR, "face-detector")
    train_ids, held_ids, how = split_held_out(project.frames())
    yolo = project.root / "train" / f"yolo-{number}"
    counts = export_yolo(project, yolo, train_ids)
    out = project.root / "models" / f"detector-{number}"
    provenance = {"project": str(project.root), "frames": train_ids, "held_out_frames": held_ids, "held_out": how}
    card = fine_tune_detector(yolo, out, init, epochs, seed, synthetic, progress, extra_card=provenance)
    detector = load_detector(out)
    checked = None
    if held_ids:
        from ..detect.evaluate import evaluate_yolo
        from ..models import record_figures

        held = project.root / "train" / f"held-out-{number}"
        export_yolo(project, held, held_ids)
        checked = {"after": evaluate_yolo(detector, held), "before": evaluate_yolo(load_detector(init), held),
                   "how": how}
        for name, figures in (("held_out", checked["after"]), (f"held_out_{init.name}", checked["before"])):
            record_figures(out, name, {**figures, "data": str(held)})
    _write_caveat(out, len(train_ids), checked, how)
    refilled = 0
    for frame in project.frames():
        if frame["status"] == "unlabelled":
            import cv2

            found = detector.detect(cv2.imread(str(project.frame_image(frame["id"]))))
            refilled += project.suggest(frame["id"], found.boxes, detector.name)
    result = {"detector": out, "from": init, "frames": counts, "seconds": card["training"]["seconds"],
              "refilled": refilled, "classifier": None, "checked": checked, "held_out": how}
    result["classifier"] = _train_classifier(project, number)
    return result


def _write_caveat(out: Path, trained_on: int, checked: dict | None, how: str) -> None:
    """The card says what the fine-tune was checked on, or that it was not checked at all."""
    from ..models import read_card, write_card

    card = read_card(out)
    if checked:
        a = checked["after"]
        card["caveat"] = (f"fine-tuned on {trained_on} labelled frames of one project; checked on "
                          f"{a['frames']} held-out frames ({how}): {a['true_positives']} of {a['faces']} faces found, "
                          f"{a['false_positives']} false boxes; few frames of few videos: check it on more of "
                          f"your footage before relying on it")
    else:
        card["caveat"] = (f"fine-tuned on {trained_on} labelled frames and not checked on any held-out frame "
                          f"({how}): label more frames")
    write_card(out, card, list(card.get("files", {})))


def classifier_kind(crops_per_animal: float) -> tuple[str, str]:
    """Which kind `label train` fits on a project's scored crops, and why (the learning curve in the README)."""
    from .. import pretrained
    from ..classify.registry import missing_packages

    if crops_per_animal >= PRETRAINED_BELOW:
        return "lbp-svm", (f"{crops_per_animal:.0f} scored crops per animal: from {PRETRAINED_BELOW} per animal "
                           "LBP+SVM did as well as ImageNet features by animal on synthetic crops, and better "
                           "from 100")
    if missing_packages("mobilenet-linear") or not pretrained.available():
        return "lbp-svm", (f"{crops_per_animal:.0f} scored crops per animal suit mobilenet-linear better, but its "
                           f"ImageNet weights or torch are not installed ({pretrained.MOBILENET_V2.install_hint})")
    return "mobilenet-linear", (f"{crops_per_animal:.0f} scored crops per animal: below {PRETRAINED_BELOW} per "
                                "animal ImageNet features did better than LBP+SVM by animal on synthetic crops")


def _train_classifier(project: Project, number: int) -> dict | None:
    """A binary classifier on the consensus scores, when there are enough, with its leave-one-animal-out figures
    (the kind by classifier_kind); None (and why, in 'skipped') when not."""
    from ..classify.evaluate import Trainer, train_and_save
    from ..data import load_dataset

    manifest = project.root / "train" / f"scores-{number}.csv"
    try:
        counts = export_manifest(project, manifest)
    except ConfigError:
        return {"skipped": "no crop is scored yet"}
    if counts["crops"] < MIN_CROPS or counts["animals"] < MIN_ANIMALS:
        return {"skipped": f"{counts['crops']} scored crops of {counts['animals']} animal(s); a classifier needs "
                           f"{MIN_CROPS} of {MIN_ANIMALS} or more"}
    data = load_dataset(manifest)
    try:
        data.targets("binary")
    except Exception as exc:  # noqa: BLE001 - one class only: say so, the detector round still counts
        return {"skipped": str(exc)}
    out = project.root / "models" / f"classifier-{number}"
    kind, why = classifier_kind(counts["crops"] / counts["animals"])
    card = train_and_save(data, Trainer(kind, "binary", n_jobs=2), out, loso=True, synthetic=False,
                          description=f"crops scored in the labelling project {project.root}")
    return {"classifier": out, "kind": kind, "why": why, "metrics": card.get("metrics", {}), "crops": counts["crops"],
            "animals": counts["animals"]}
