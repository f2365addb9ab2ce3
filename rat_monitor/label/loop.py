"""One turn of the labelling loop: fine-tune the face detector on the project's labelled frames (from its last
detector, or the bundled one), put the new detector's boxes on the frames nobody has labelled yet, and train a
pain classifier on the scored crops once there are enough of them, evaluated by animal. Needs torch (the
'train' extra) for the detector."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError, DatasetError
from .export import export_manifest, export_yolo
from .figures import MIN_HELD_OUT_FACES, not_worse, verdict, write_check
from .project import Project

MIN_CROPS, MIN_ANIMALS = 20, 3  # below this a classifier's by-animal figures mean nothing
PRETRAINED_BELOW = 50  # scored crops per animal below which mobilenet-linear is trained (learning curve, README)


def fine_tune_detector(yolo: Path, out: Path, init: Path, epochs: int, seed: int = 0, synthetic: int = 0,
                       progress: Callable[[int, int, float], None] | None = None,
                       extra_card: dict | None = None, camera_size: bool = True) -> dict:
    """The detector of INIT fine-tuned on a YOLO folder (detect.train.fine_tune); returns its card."""
    from ..detect.train import fine_tune, yolo_samples

    samples = yolo_samples(yolo)
    turned_down = sum(len(s.negatives) for s in samples if s.negatives is not None)
    what = f"{len(samples)} labelled frames ({yolo})" + (f", {turned_down} turned-down proposals weighed as "
                                                        "not faces" if turned_down else "")
    return fine_tune(samples, out, init, epochs, what, seed, synthetic, progress, extra_card, camera_size)


HELD_OUT_SHARE = 0.25  # of each video's decided frames, kept out of every fine-tune to check them
MIN_FRAMES_TO_HOLD_OUT = 4  # a video's decided frames before one of them is held out


def ancestors(detector: Path) -> list[Path]:
    """The detectors DETECTOR was fine-tuned from, nearest first, as far as their cards can be read."""
    from ..models import read_card

    chain, seen = [], {Path(detector).resolve()}
    current = Path(detector)
    while True:
        try:
            parent = read_card(current).get("training", {}).get("fine_tuned_from")
        except Exception:  # noqa: BLE001 - a missing or damaged ancestor ends the chain; what is known counts
            return chain
        if not parent or Path(parent).resolve() in seen or not Path(parent).is_dir():
            return chain
        current = Path(parent)
        seen.add(current.resolve())
        chain.append(current)


def learnt_frames(detectors: list[Path]) -> set[str]:
    """Every frame id that the cards of DETECTORS say they learnt from."""
    from ..models import read_card

    out: set[str] = set()
    for d in detectors:
        try:
            out.update(read_card(d).get("training", {}).get("frames", []))
        except Exception:  # noqa: BLE001 - an unreadable card names no frame
            continue
    return out


def split_held_out(project: Project, never_held: set[str] = frozenset()) -> tuple[list[str], list[str], str]:
    """(training frame ids, held-out frame ids, how). Held out within each video (camera): about a quarter of
    its decided frames once it has MIN_FRAMES_TO_HOLD_OUT of them, so every camera is both learnt and checked
    (holding a whole camera out measured one camera on another's training). A frame's side is chosen once and
    kept in the project (split.json): a frame held out stays held out, and a frame any detector learnt from
    (NEVER_HELD: the frames of the starting detector and its ancestors) is never held out."""
    import hashlib
    import json

    from ..models import atomic_write_text

    decided = [f for f in project.frames() if f["status"] != "unlabelled"]
    path = project.root / "split.json"
    try:
        sides = json.loads(path.read_text()) if path.exists() else {}
        sides = {k: v for k, v in sides.items() if v in ("train", "held_out")} if isinstance(sides, dict) else {}
    except (OSError, ValueError):
        sides = {}  # a damaged split is chosen again; learnt frames still never become held out
    for frame_id in never_held:
        if sides.get(frame_id) == "held_out" or frame_id not in sides:
            sides[frame_id] = "train"
    by_video: dict[str, list[dict]] = {}
    for f in decided:
        by_video.setdefault(f["video"], []).append(f)
    for frames in by_video.values():
        if len(frames) < MIN_FRAMES_TO_HOLD_OUT:
            continue
        want = round(HELD_OUT_SHARE * len(frames))
        have = sum(sides.get(f["id"]) == "held_out" for f in frames)
        new = sorted((f for f in frames if f["id"] not in sides),
                     key=lambda f: hashlib.sha256(f["id"].encode()).hexdigest())  # a fixed, unbiased order
        for f in new:
            sides[f["id"]] = "held_out" if have < want else "train"
            have += sides[f["id"]] == "held_out"
    for f in decided:
        sides.setdefault(f["id"], "train")
    atomic_write_text(path, json.dumps(sides, indent=1, sort_keys=True) + "\n")
    train = [f["id"] for f in decided if sides[f["id"]] == "train"]
    held = [f["id"] for f in decided if sides[f["id"]] == "held_out"]
    small = [Path(v).name for v, fs in by_video.items() if len(fs) < MIN_FRAMES_TO_HOLD_OUT]
    how = (f"within each video: {len(held)} of {len(decided)} decided frames held out, never learnt from"
           + (f"; {len(small)} video(s) with fewer than {MIN_FRAMES_TO_HOLD_OUT} decided frames hold none out yet"
              if small else ""))
    return train, held, how


def labels_digest(project: Project, frame_ids: list[str]) -> str:
    """What a fine-tune would learn from (its frames' boxes and turned-down proposals): the same digest means
    nothing changed since the detector that recorded it."""
    import hashlib
    import json

    records = [project.frame(i) for i in sorted(frame_ids)]
    text = json.dumps([[r["id"], r["status"], r["boxes"], r["rejected"]] for r in records])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_round(project: Project, epochs: int = 30, synthetic: int = 0, seed: int = 0,
                progress: Callable[[int, int, float], None] | None = None, detector: bool = True,
                classifier: bool = True, pilot: bool = False, self_train: bool = False) -> dict:
    """One turn of the loop, training only what changed: detector-N fine-tuned from the project's recommended
    detector (or the bundled one) when the labelled frames changed since it, checked on held-out frames against
    the detector it started from, and recommended only if it is not worse there; the unlabelled frames'
    proposals refilled from the recommended detector; classifier-N when the scores changed and MIN_CROPS crops
    of MIN_ANIMALS animals are scored (with pilot, on fewer too: trained without a by-animal check, and its card
    says so). self_train: the detector also learns from the project's videos themselves (detect.selftrain), and
    is held to the same held-out check. Returns what it did."""
    result: dict = {"detector": None, "classifier": None}
    if detector:
        result.update(_detector_round(project, epochs, synthetic, seed, progress, self_train))
    if classifier:
        result["classifier"] = _train_classifier(project, pilot)
    return result


def _detector_round(project: Project, epochs: int, synthetic: int, seed: int,
                    progress: Callable[[int, int, float], None] | None, self_train: bool = False) -> dict:
    from ..detect import load_detector
    from ..detect.evaluate import evaluate_yolo
    from ..models import read_card, record_figures

    init = project.recommended_detector()
    lineage = [init, *ancestors(init)]
    train_ids, held_ids, how = split_held_out(project, learnt_frames(lineage))
    if not train_ids:
        raise ConfigError(f"{project.root}: no labelled frame to learn from yet (hold-outs aside): label more")
    digest = labels_digest(project, train_ids) + ("+self-trained" if self_train else "")
    latest = project.detectors()[-1] if project.detectors() else None
    if latest is not None and read_card(latest).get("training", {}).get("labels_digest") == digest:
        return {"unchanged": f"no labelled frame changed since {latest.name}: not fine-tuned again",
                "recommended": init, "held_out": how}
    number = int(latest.name.split("-")[1]) + 1 if latest else 1
    yolo = project.root / "train" / f"yolo-{number}"
    counts = export_yolo(project, yolo, train_ids)
    out = project.root / "models" / f"detector-{number}"
    provenance = {"project": str(project.root), "frames": train_ids, "held_out_frames": held_ids, "held_out": how,
                  "labels_digest": digest, "ancestors_frames": sorted(learnt_frames(lineage))}
    if self_train:
        card, rounds = _self_train(project, yolo, out, init, epochs, seed, progress, provenance)
    else:
        card, rounds = fine_tune_detector(yolo, out, init, epochs, seed, synthetic, progress, extra_card=provenance), []
    checked = None
    if held_ids:
        held = project.root / "train" / f"held-out-{number}"
        export_yolo(project, held, held_ids)
        checked = {"after": evaluate_yolo(load_detector(out), held), "before": evaluate_yolo(load_detector(init), held),
                   "how": how}
        for name, figures in (("held_out", checked["after"]), (f"held_out_{init.name}", checked["before"])):
            record_figures(out, name, {**figures, "data": str(held)})
    better = _not_worse(checked)
    _write_caveat(out, f"{len(train_ids)} labelled frames of one project" +
                  (" and its own sure detections in the project's videos (self-trained)" if self_train else ""),
                  checked, how)
    recommended = out if better else init
    project.recommend_detector(recommended, "" if better else
                               f"{out.name} found fewer held-out faces than {init.name}: {init.name} stays")
    from ..detect import load_detector

    refilled = refill(project, load_detector(recommended))
    return {"trained": out, "from": init, "frames": counts, "seconds": card["training"]["seconds"],
            "input_size": card["input_size"], "refilled": refilled, "checked": checked, "held_out": how,
            "recommended": recommended, "kept_better": better, "self_training": rounds}


def _self_train(project: Project, yolo: Path, out: Path, init: Path, epochs: int, seed: int,
                progress: Callable[[int, int, float], None] | None, provenance: dict) -> tuple[dict, list[dict]]:
    """The detector fine-tuned on the labelled frames of YOLO plus pseudo-labels of the project's own videos."""
    from ..detect.selftrain import runs_of_footage, self_train
    from ..detect.train import yolo_samples

    videos = [Path(v) for v in project.meta()["videos"] if Path(v).is_file()]
    if not videos:
        raise ConfigError(f"{project.root}: none of the project's videos is where it was labelled from; "
                          "self-training reads them")
    return self_train(init, runs_of_footage(videos), out, yolo_samples(yolo), epochs=epochs, seed=seed,
                      progress=progress, what=f"{len(videos)} video(s) of the project", extra_card=provenance)


def _not_worse(checked: dict | None) -> bool:
    """Whether the new detector may replace the one it started from: not worse on the held-out frames (AP@0.5,
    then faces found less false boxes), or no figure to say otherwise (the newer learnt from more labels)."""
    if not checked or checked["after"]["faces"] < MIN_HELD_OUT_FACES:
        return True
    return not_worse(checked["after"], checked["before"])


def refill(project: Project, detector) -> int:
    """New proposals from DETECTOR (an OnnxFaceDetector) on every frame nobody has decided yet. Returns how
    many."""
    import cv2

    refilled = 0
    for frame in project.frames():
        if frame["status"] == "unlabelled":
            found = detector.detect(cv2.imread(str(project.frame_image(frame["id"]))))
            refilled += project.suggest(frame["id"], found.boxes, detector.name)
    return refilled


def _write_caveat(out: Path, trained_on: str, checked: dict | None, how: str) -> None:
    """The card says what the fine-tune learnt from (TRAINED_ON) and was checked on, or that it was not checked."""
    figures = checked["after"] if checked else None
    write_check(out, f"fine-tuned on {trained_on}; {verdict(figures)} ({how}); "
                     "few frames of few videos: check it on more of your footage before relying on it", figures)


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


def _train_classifier(project: Project, pilot: bool = False) -> dict:
    """A binary classifier on the consensus scores, when there are enough and they changed since the last one,
    with its leave-one-animal-out figures (the kind by classifier_kind); 'skipped' says why not. pilot: with too
    few animals (or crops) to validate by animal, it is trained all the same, and its card says why it was not
    validated: every run, report and screen that uses it then says 'NOT validated by animal'."""
    import filecmp

    from ..classify.evaluate import Trainer, train_and_save
    from ..data import load_dataset

    earlier = sorted((p for p in (project.root / "models").glob("classifier-*") if p.name.split("-")[1].isdigit()),
                     key=lambda p: int(p.name.split("-")[1]))
    number = int(earlier[-1].name.split("-")[1]) + 1 if earlier else 1
    manifest = project.root / "train" / f"scores-{number}.csv"
    try:
        counts = export_manifest(project, manifest)
    except ConfigError:
        return {"skipped": "no crop is scored yet"}
    last = project.root / "train" / f"scores-{number - 1}.csv"
    if earlier and last.exists() and filecmp.cmp(manifest, last, shallow=False):
        manifest.unlink()
        return {"skipped": f"no score changed since {earlier[-1].name}: not trained again"}
    too_few = f"{counts['crops']} scored crops of {counts['animals']} animal(s); validating a classifier by " \
              f"animal needs {MIN_CROPS} of {MIN_ANIMALS} or more"
    if (counts["crops"] < MIN_CROPS or counts["animals"] < MIN_ANIMALS) and not pilot:
        return {"skipped": too_few, "pilot_possible": True}
    data = load_dataset(manifest)
    try:
        data.targets("binary")
    except Exception as exc:  # noqa: BLE001 - one class only: say so, the detector round still counts
        return {"skipped": str(exc)}
    out = project.root / "models" / f"classifier-{number}"
    kind, why = classifier_kind(counts["crops"] / counts["animals"])
    trainer = Trainer(kind, "binary", n_jobs=2)
    description = f"crops scored in the labelling project {project.root}"
    unvalidated = too_few if counts["crops"] < MIN_CROPS or counts["animals"] < MIN_ANIMALS else None
    try:
        card = train_and_save(data, trainer, out, loso=unvalidated is None, synthetic=False, description=description,
                              unvalidated=unvalidated)
    except DatasetError as exc:  # e.g. one class per animal: say why, the detector round still counts
        if not pilot or unvalidated is not None:
            return {"skipped": str(exc), "pilot_possible": not pilot}
        unvalidated = str(exc)
        try:
            card = train_and_save(data, trainer, out, loso=False, synthetic=False, description=description,
                                  unvalidated=unvalidated)
        except DatasetError as again:
            return {"skipped": str(again)}
    return {"classifier": out, "kind": kind, "why": why, "metrics": card.get("metrics", {}), "crops": counts["crops"],
            "animals": counts["animals"], "unvalidated": unvalidated}
