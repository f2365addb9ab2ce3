"""Self-training on a camera's own unlabelled footage (issue 38): the camera is fixed and the animal moves.

The footage is read as short runs of nearby frames spread over it (a still image is a run of one). On each run
the detector's boxes are linked into tracks. A track the detector is sure of (a box scored SURE or more) that
persists over the run is a face, and its frame becomes a pseudo-labelled frame. A box that comes back at one
place in most runs across the footage is something of the scene: where the detector doubts it (a pellet, a
marker, an LED's glare half taken for a face) it is taught as not a face; where the detector is sure of it, it
may as well be a head-fixed or sleeping animal, so those runs teach nothing, unless a labelled face sits
there. A run with any other box above UNSURE (a flicker, a doubtful face) teaches nothing either: it is left
out rather than guessed. The detector is then fine-tuned on the labelled frames plus the pseudo-labelled ones,
and the next round pseudo-labels with the detector just made."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..imaging import iou
from .train import Sample

SURE, UNSURE = 0.5, 0.2  # detector scores: a pseudo-label's track reaches SURE; any box above UNSURE is weighed
RUN_FRAMES, RUN_STEP = 6, 3  # a run: 6 frames, 3 apart (0.6 s at 30 fps), long enough to see a face persist
RUNS = 48  # runs spread over the footage
PERSIST = 0.6  # of a run's frames its track is found on
FIXED_SHARE = 0.5  # of the runs a place is found in (IoU >= FIXED_IOU) for it to be a fixed thing, not an animal
FIXED_IOU = 0.6
MIN_RUNS_FOR_FIXED = 4  # fewer runs cannot tell a fixed thing from an animal that stayed put
LINK_IOU = 0.3  # boxes of consecutive frames overlapping this much are one track
MAX_PSEUDO = 48  # pseudo-labelled frames per round: more than the labels, fewer than to drown them


@dataclass
class Pseudo:
    """One round's pseudo-labels and what was left out."""

    samples: list[Sample] = field(default_factory=list)  # frames with their faces and fixed things (negatives)
    runs_left_out: int = 0  # a box the detector doubted, or a face that did not persist

    @property
    def faces(self) -> int:
        return sum(len(s.boxes) for s in self.samples)

    @property
    def fixed(self) -> int:
        """Boxes taught as not faces: found at one place across the footage, and doubted."""
        return sum(len(s.negatives) for s in self.samples if s.negatives is not None)

    def summary(self) -> dict:
        return {"frames": len(self.samples), "faces": self.faces, "fixed_boxes": self.fixed,
                "runs_left_out": self.runs_left_out}


def runs_of_video(video: Path, runs: int = RUNS, frames: int = RUN_FRAMES, step: int = RUN_STEP
                  ) -> list[list[np.ndarray]]:
    """RUNS runs of FRAMES frames, STEP apart, spread evenly over VIDEO. Each run is sought, so an hour of footage
    costs what a minute does (the frames between runs are never decoded); a file only ffmpeg can deinterlace is
    read in one pass."""
    import cv2

    from ..sources import CaptureSource

    with CaptureSource(video=video) as source:  # the file is checked and described as for any analysis
        total = source.info.frame_count or int((source.info.duration_s or 0) * source.info.fps) or runs * frames * step
        starts = sorted({int(s) for s in np.linspace(0, max(total - frames * step, 0), runs)})
        if source.deinterlaced:
            return _runs_in_one_pass(source, starts, frames, step)
    cap = cv2.VideoCapture(str(video))
    out = []
    try:
        for start in starts:
            run: list[np.ndarray] = []
            if cap.set(cv2.CAP_PROP_POS_FRAMES, start):
                for k in range(frames * step):
                    if not cap.grab():
                        break
                    if k % step == 0:
                        ok, image = cap.retrieve()
                        if ok:
                            run.append(image)
            if run:
                out.append(run)
    finally:
        cap.release()
    return out


def _runs_in_one_pass(source, starts: list[int], frames: int, step: int) -> list[list[np.ndarray]]:
    wanted = {start + k * step: n for n, start in enumerate(starts) for k in range(frames)}
    out: list[list[np.ndarray]] = [[] for _ in starts]
    for f in source:
        if f.index in wanted:
            out[wanted[f.index]].append(f.image)
        if f.index >= max(wanted):
            break
    return [run for run in out if run]


def runs_of_images(folder: Path) -> list[list[np.ndarray]]:
    """Each still of FOLDER (or FOLDER/images) a run of one frame: no motion to see, only the detector's sureness
    and the places boxes keep coming back to."""
    from ..errors import DatasetError
    from ..imaging import images_in, read_image

    folder = Path(folder)
    root = folder / "images" if (folder / "images").is_dir() else folder
    out = []
    for path in images_in(root):
        image, why = read_image(path)
        if image is None:
            raise DatasetError(f"cannot read image {path}: {why}")
        out.append([image])
    if not out:
        raise DatasetError(f"no images found under {root}")
    return out


def runs_of_footage(footage: list[Path]) -> list[list[np.ndarray]]:
    """Runs from videos of one camera (RUNS in all, spread over each) and folders of its stills; none from none."""
    from ..errors import SourceError

    for item in footage:
        if not item.exists():
            raise SourceError(f"no such video or folder: {item}")
    per_video = max(8, RUNS // max(1, len(footage)))
    return [run for item in footage
            for run in (runs_of_images(item) if item.is_dir() else runs_of_video(item, runs=per_video))]


def _tracks(found: list) -> list[list[tuple[int, np.ndarray, float]]]:
    """Boxes of consecutive frames linked by overlap: each track a list of (frame, box, score)."""
    tracks: list[list[tuple[int, np.ndarray, float]]] = []
    for i, dets in enumerate(found):
        open_tracks = [t for t in tracks if t[-1][0] == i - 1]
        taken: set[int] = set()
        for box, score in sorted(zip(dets.boxes, dets.scores), key=lambda p: -p[1]):
            overlaps = [(float(iou(t[-1][1][None], box[None])[0, 0]), n) for n, t in enumerate(open_tracks)
                        if n not in taken]
            best = max(overlaps, default=(0.0, -1))
            if best[0] >= LINK_IOU:
                taken.add(best[1])
                open_tracks[best[1]].append((i, box, float(score)))
            else:
                tracks.append([(i, box, float(score))])
    return tracks


def _fixed_places(found_per_run: list[list], share: float = FIXED_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """Boxes found at one place in at least SHARE of the runs (things of the scene, or an animal that never moves)
    and the detector's median score there."""
    firsts = [dets[0] for dets in found_per_run]  # a run's first frame stands for the run
    fixed, scores = [], []
    if len(firsts) < MIN_RUNS_FOR_FIXED:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    for dets in firsts:
        for box in dets.boxes:
            if any(iou(box[None], f[None])[0, 0] >= FIXED_IOU for f in fixed):
                continue
            there = []  # the detector's score at this place in each run that has a box there
            for other in (o for o in firsts if len(o)):
                overlap = iou(box[None], other.boxes)[0]
                if overlap.max() >= FIXED_IOU:
                    there.append(float(other.scores[overlap.argmax()]))
            if len(there) >= share * len(firsts):
                fixed.append(box)
                scores.append(float(np.median(there)))
    return np.array(fixed, np.float32).reshape(-1, 4), np.array(scores, np.float32)


def _overlaps(box: np.ndarray, boxes: np.ndarray, at_least: float) -> bool:
    return bool(len(boxes)) and float(iou(box[None], boxes).max()) >= at_least


def pseudo_label(detector, runs: list[list[np.ndarray]], max_frames: int = MAX_PSEUDO,
                 labelled_faces: np.ndarray | None = None) -> Pseudo:
    """One round's pseudo-labelled frames from RUNS (detector: an OnnxFaceDetector; its threshold is restored).
    LABELLED_FACES: boxes of this camera's labelled frames (frame pixels): a fixed place among them is an animal."""
    kept = detector.threshold
    detector.threshold = UNSURE
    try:
        found_per_run = [detector.detect_batch(run) for run in runs]
    finally:
        detector.threshold = kept
    fixed, fixed_scores = _fixed_places(found_per_run)
    labelled_faces = np.zeros((0, 4), np.float32) if labelled_faces is None else labelled_faces
    animal = np.array([_overlaps(b, labelled_faces, FIXED_IOU) for b in fixed], bool)
    things = fixed[~animal & (fixed_scores < SURE)]  # fixed and doubted: not a face
    unknown = fixed[~animal & (fixed_scores >= SURE)]  # fixed and sure: a thing, or an animal that never moves
    out = Pseudo()
    for run, found in zip(runs, found_per_run):
        faces, fixed_here, doubtful = [], [], False
        for track in _tracks(found):
            box = track[len(track) // 2][1]
            if _overlaps(box, things, FIXED_IOU):
                fixed_here.append(track)
            elif _overlaps(box, unknown, FIXED_IOU):
                doubtful = True
            elif max(s for _, _, s in track) >= SURE and len(track) >= PERSIST * len(run):
                faces.append(track)
            else:
                doubtful = True
        if doubtful or not (faces or fixed_here):
            out.runs_left_out += doubtful
            continue
        middle = len(run) // 2  # the frame the pseudo-label is taken from: every face track must be on it
        at = lambda tracks: [b for t in tracks for i, b, _ in t if i == middle]  # noqa: E731
        face_boxes, thing_boxes = at(faces), at(fixed_here)
        if len(face_boxes) < len(faces):
            out.runs_left_out += 1
            continue
        out.samples.append(Sample(run[middle], np.array(face_boxes, np.float32).reshape(-1, 4),
                                  negatives=np.array(thing_boxes, np.float32).reshape(-1, 4) if thing_boxes else None))
    if len(out.samples) > max_frames:  # spread over the footage, not its first runs
        out.samples = [out.samples[int(i)] for i in np.linspace(0, len(out.samples) - 1, max_frames)]
    return out


def self_train(init: Path, runs: list[list[np.ndarray]], out: Path, labelled: list[Sample] = (), rounds: int = 2,
               epochs: int = 30, seed: int = 0, what: str = "unlabelled footage",
               progress: Callable[[int, int, float], None] | None = None,
               extra_card: dict | None = None) -> tuple[dict, list[dict]]:
    """The detector of INIT fine-tuned on LABELLED frames plus pseudo-labels of RUNS (of WHAT), ROUNDS times, each
    round pseudo-labelling with the last round's detector (the first with INIT fine-tuned on LABELLED, or INIT
    itself without labels). Writes OUT; returns its card and each round's pseudo-label counts (also in the card,
    under training.self_training). Raises DatasetError when nothing in the footage was sure enough to learn from
    and no frame is labelled."""
    from ..errors import DatasetError
    from . import load_detector
    from .train import fine_tune

    labelled = list(labelled)
    with tempfile.TemporaryDirectory(prefix="self-train-") as tmp:
        current, history = Path(init), []
        if labelled:
            current = Path(tmp) / "labelled"
            fine_tune(labelled, current, init, epochs, f"{len(labelled)} labelled frames", seed, progress=progress,
                      extra_card=extra_card)
        labelled_faces = np.concatenate([s.boxes for s in labelled] or [np.zeros((0, 4), np.float32)])
        for r in range(1, rounds + 1):
            pseudo = pseudo_label(load_detector(current), runs, labelled_faces=labelled_faces)
            history.append({"round": r, **pseudo.summary()})
            if not pseudo.samples:
                break
            described = (f"{len(labelled)} labelled frames; " if labelled else "") + \
                f"self-trained, round {r} of {rounds}: {pseudo.faces} pseudo-labelled faces on " \
                f"{len(pseudo.samples)} frames of {what}, {pseudo.fixed} fixed boxes taught as not faces"
            current = Path(tmp) / f"round-{r}"
            fine_tune(labelled + pseudo.samples, current, init, epochs, described, seed, progress=progress,
                      extra_card={**(extra_card or {}), "self_training": history})
        if current == Path(init):  # nothing learnt: no label, and nothing in the footage sure enough
            raise DatasetError(f"nothing in {what} was sure enough to learn from (no face the detector was sure of "
                               "persisted over a run): label a few frames first")
        if Path(out).exists():
            shutil.rmtree(out)
        shutil.copytree(current, out)
    from ..models import read_card, write_card

    card = {**read_card(out), "name": Path(out).name}
    return write_card(out, card, list(card.get("files", {}))), history
