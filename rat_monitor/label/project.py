"""A labelling project on disk: the frames picked for labelling with their face boxes, the face crops cut from
the labelled boxes, and each rater's grimace scores. One small JSON file per frame, crop and score, each written
atomically, so a crash, a kill -9 or a power cut loses at most the change being made; nothing is cached in
memory, so the files are the truth for the server, the exports and the training loop alike.

    DIR/project.json              the videos and the animal each one shows
    DIR/frames/<id>.jpg, .json    a picked frame; boxes [x0, y0, x1, y1] in its pixels (the person's); the
                                  detector's proposals (never a label until the person accepts them) and the
                                  proposals the person turned down (hard negatives); status
    DIR/crops/<cid>.jpg, .json    a face crop of a labelled box (cid reveals neither video nor time)
    DIR/scores/<rater>/<cid>.json one rater's scores of one crop
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError
from ..imaging import read_image, square_crop
from ..names import RULE as NAME_RULE
from ..names import is_safe_name
from ..models import atomic_write_text
from ..types import ACTION_UNITS
from ..web import RequestError
from .figures import MIN_HELD_OUT_FACES, plateau, verdict

STATUSES = ("unlabelled", "labelled", "no_face")
LEVELS = ("none", "moderate", "severe")
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,120}$")
CROP_SIZE = 160
MIN_BOX_PX = 4


class LabelError(RequestError):
    """A change the project refuses, with its reason in one line (the server answers 4xx with it)."""


def _video_id(video: Path) -> str:
    """The video's name made safe for ids, with a short hash of its full path: rat7/day1.mp4 and rat8/day1.mp4
    stay apart."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", video.stem)[:60] or "video"
    return f"{stem}-{hashlib.sha256(str(video.resolve()).encode()).hexdigest()[:6]}"


MAX_BOXES = 20  # faces per frame: more is a mistake or an attack (1,000 boxes made 1,000 crop files)


class Project:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.frames_dir = self.root / "frames"
        self.crops_dir = self.root / "crops"
        self.scores_dir = self.root / "scores"
        # One writer at a time in this process: two people saving at once raced while the crops were synced.
        self.lock = threading.RLock()
        self.writer_lock = None  # the held lock file when this process is the project's one writer (open(writer=))

    # -- creation ----------------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path, create: bool = False, writer: bool = False) -> Project:
        """The project at ROOT (made when CREATE). WRITER: this process becomes its one writer before anything
        is mended or written (take_writer), held while the process runs."""
        project = cls(root)
        if writer and project.root.is_dir():
            project.writer_lock = project.take_writer()
        if not (project.root / "project.json").exists():
            if not create:
                raise ConfigError(f"{root} is not a labelling project (no project.json); start one with "
                                  "rat-monitor label VIDEO --project DIR")
            for d in (project.frames_dir, project.crops_dir, project.scores_dir):
                d.mkdir(parents=True, exist_ok=True)
            atomic_write_text(project.root / "project.json",
                              json.dumps({"version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                          "videos": {}}, indent=2) + "\n")
            if writer and project.writer_lock is None:
                project.writer_lock = project.take_writer()
        project.rebuild_crops()
        return project

    def take_writer(self):
        """This process becomes the project's one writer (a second `label` server or `label train` on it is
        refused in one line: two servers saving the same frames left orphan crops). Returns the held lock; close
        it to release (the process's end does too)."""
        from ..locking import exclusive

        return exclusive(self.root / ".writer.lock", f"{self.root} is open in another rat-monitor label (server or "
                                                     "train); stop that one first")

    def rebuild_crops(self) -> int:
        """Makes the crops what the frames say they are (after a crash between a frame's record and its crops,
        or a crop file lost): one pass over the crops, then each frame whose crops differ from its boxes mended
        (missing ones made, those of boxes no longer there removed). Returns how many crops were made. Damaged
        frame records are left alone (they say so when asked for)."""
        with self.lock:
            by_frame: dict[str, set[str]] = {}
            for crop in self._crop_records(drop_damaged=True):  # derived data: a damaged one is made again below
                if crop.get("frame"):
                    if not (self.crops_dir / f"{crop['id']}.jpg").exists():
                        (self.crops_dir / f"{crop['id']}.json").unlink(missing_ok=True)  # made again if wanted
                        continue
                    by_frame.setdefault(crop["frame"], set()).add(crop["id"])
            made = 0
            for frame_id in self.frame_ids():
                try:
                    record = self.frame(frame_id)
                except LabelError:
                    continue
                if set(_crop_ids(record)) != by_frame.get(frame_id, set()):
                    made += self._sync_crops(record, by_frame.get(frame_id, set()))
            return made

    def meta(self) -> dict:
        return json.loads((self.root / "project.json").read_text())

    def add_frame(self, video: Path, subject: str, index: int, t_s: float, image: np.ndarray,
                  suggested: np.ndarray, detector: str) -> str | None:
        """Stores one picked frame with the detector's boxes as suggestions; a frame already in the project is
        left as it is (adding videos never changes what was labelled). Returns its id, or None when present."""
        video = Path(video).resolve()
        frame_id = f"{_video_id(video)}-{index:07d}"
        if (self.frames_dir / f"{frame_id}.json").exists():
            return None
        h, w = image.shape[:2]
        if not cv2.imwrite(str(self.frames_dir / f"{frame_id}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92]):
            raise ConfigError(f"cannot write {self.frames_dir / frame_id}.jpg")
        record = {"id": frame_id, "video": str(video), "frame": int(index), "t_s": round(float(t_s), 3),
                  "subject": subject, "width": w, "height": h, "status": "unlabelled", "boxes": [],
                  "proposals": _proposed(suggested, w, h), "proposals_from": detector, "rejected": [], "updated": None}
        atomic_write_text(self.frames_dir / f"{frame_id}.json", json.dumps(record, indent=1) + "\n")
        meta = self.meta()
        meta["videos"].setdefault(str(video), {"subject": subject})
        atomic_write_text(self.root / "project.json", json.dumps(meta, indent=2) + "\n")
        return frame_id

    # -- frames --------------------------------------------------------------------------------------------
    def frame_indices(self, video: Path) -> set[int]:
        """The frame numbers of VIDEO already in the project."""
        prefix = _video_id(Path(video).resolve()) + "-"
        return {int(i[len(prefix):]) for i in self.frame_ids() if i.startswith(prefix) and i[len(prefix):].isdigit()}

    def frame_ids(self) -> list[str]:
        return _ids(self.frames_dir)

    def frame(self, frame_id: str) -> dict:
        return _with_proposals(_record(self.frames_dir, "frame", frame_id))

    def frames(self) -> list[dict]:
        """Every readable frame record; a damaged one is left out (damaged() names it)."""
        out = []
        for i in self.frame_ids():
            try:
                out.append(self.frame(i))
            except LabelError:
                continue
        return out

    def damaged(self) -> list[str]:
        """One line per record the project cannot use as it is (cut short, edited by hand, planted) and per
        decided frame whose picture is missing: each is left out of the pages, exports and training, never
        the reason the project cannot be opened."""
        lines = []
        records = [(self.frames_dir, "frame", i) for i in self.frame_ids()]
        records += [(self.crops_dir, "crop", i) for i in self.crop_ids()]
        records += [(p.parent, "score", p.stem) for rater in self.raters()
                    for p in sorted((self.scores_dir / rater).glob("*.json"))]
        for folder, kind, item in records:
            try:
                _record(folder, kind, item)
            except LabelError as exc:
                lines.append(str(exc))
                continue
            if kind == "frame" and not self.has_picture(item):
                lines.append(f"the picture of frame {item} is missing ({folder / item}.jpg)")
        return lines

    def has_picture(self, frame_id: str) -> bool:
        """Whether the frame's picture is there, as a regular file of the project (not a link)."""
        path = self.frames_dir / f"{frame_id}.jpg"
        return path.is_file() and not path.is_symlink()

    def frame_image(self, frame_id: str) -> Path:
        self.frame(frame_id)  # validates the id
        return self.frames_dir / f"{frame_id}.jpg"

    def save_frame(self, frame_id: str, body: object) -> dict:
        """A person's boxes and status for one frame: checked completely, then written at once. 'no_face'
        clears the boxes; 'labelled' with no boxes is refused (that is 'no_face'). Crops follow the boxes."""
        with self.lock:
            return self._save_frame(frame_id, body)

    def _save_frame(self, frame_id: str, body: object) -> dict:
        record = self.frame(frame_id)
        if not isinstance(body, dict):
            raise LabelError("the body must be a JSON object {boxes, status}")
        status = body.get("status", "labelled")
        if status not in STATUSES:
            raise LabelError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        boxes = _checked_boxes(body.get("boxes", []), record["width"], record["height"])
        proposals = record["proposals"]
        if "proposals" in body:  # the page turns proposals down one by one: only ones the frame has may stay
            kept = _checked_boxes(body["proposals"], record["width"], record["height"])
            if any(p not in proposals for p in kept):
                raise LabelError("proposals can only be turned down, not added: draw a box instead")
            proposals = kept
        if status == "no_face":
            boxes = []
        elif status == "labelled" and not boxes:
            raise LabelError("a labelled frame needs at least one box; mark it no_face instead")
        # a proposal gone from the list is turned down, unless the person kept it (perhaps adjusted) as a box
        rejected = [p for p in record["proposals"] if p not in proposals and not _kept(p, boxes)]
        if status != "unlabelled":  # decided: a proposal the person did not keep as a box is not a face
            rejected += [p for p in proposals if not _kept(p, boxes)]
            proposals = []
        had = set(_crop_ids(record))  # the crops this frame has: the project is consistent (mended on open)
        record.update(status=status, boxes=boxes, proposals=proposals,
                      rejected=_unique(record["rejected"] + rejected),
                      boxes_from="person" if boxes or status != "unlabelled" else None,
                      updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
        # The picture its new crops are cut from is read before anything is written: a save answered with an
        # error has changed nothing.
        image = self._picture(record) if any(not self._has_crop(cid) for cid in _crop_ids(record)) else None
        atomic_write_text(self.frames_dir / f"{frame_id}.json", json.dumps(record, indent=1) + "\n")
        self._sync_crops(record, had, image)
        return record

    def suggest(self, frame_id: str, boxes: np.ndarray, detector: str) -> bool:
        """New detector proposals for a frame nobody has decided yet (after `label train`, or a project reopened
        with another detector): the person's own boxes on it stay, and a proposal the person turned down is not
        offered again. False when the frame is decided."""
        with self.lock:  # read and written under the lock: a person's save in between is never overwritten
            record = self.frame(frame_id)
            if record["status"] != "unlabelled":
                return False
            offered = [p for p in _proposed(boxes, record["width"], record["height"])
                       if not _kept(p, record["rejected"]) and not _kept(p, record["boxes"])]
            record.update(proposals=offered, proposals_from=detector)
            atomic_write_text(self.frames_dir / f"{frame_id}.json", json.dumps(record, indent=1) + "\n")
            return True

    def progress(self) -> dict:
        counts = {s: 0 for s in STATUSES}
        for f in self.frames():
            counts[f["status"]] += 1
        crops = self.crop_ids()
        raters = {r: len(self._scores_of(r)) for r in self.raters()}
        return {"frames": sum(counts.values()), **counts, "done": counts["labelled"] + counts["no_face"],
                "crops": len(crops), "scored_by": raters, "detector": self.detector_check()}

    def detectors(self) -> list[Path]:
        """The project's fine-tuned detectors (models/detector-N), oldest first."""
        # a round cut short (Ctrl-C while it trained) leaves a folder without its card: not a detector
        found = [p for p in (self.root / "models").glob("detector-*") if re.fullmatch(r"detector-\d+", p.name)
                 and (p / "card.json").is_file()]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def recommended_detector(self) -> Path:
        """The detector the project proposes boxes with and fine-tunes from: the one `label train` kept for being
        no worse on the held-out frames (project.json), else the latest, else the bundled one."""
        from ..models import DEFAULT_DETECTOR, resolve

        name = (self.meta().get("detector") or {}).get("name")
        found = {p.name: p for p in self.detectors()}
        if name in found:
            return found[name]
        return self.detectors()[-1] if found else resolve(DEFAULT_DETECTOR, "face-detector")

    def recommend_detector(self, folder: Path, why: str = "") -> None:
        with self.lock:
            meta = self.meta()
            meta["detector"] = {"name": Path(folder).name, "why": why}
            atomic_write_text(self.root / "project.json", json.dumps(meta, indent=2) + "\n")

    def detector_check(self) -> dict | None:
        """What the recommended fine-tuned detector was checked on (its card's held-out figures, in words, and
        caveat) and the learning curve of every fine-tune so far (held-out AP against labelled frames), for the
        boxes page; None before the first `label train`."""
        found = self.detectors()
        if not found:
            return None
        best = self.recommended_detector()
        curve = []
        for folder in found:
            try:
                card = json.loads((folder / "card.json").read_text())
            except (OSError, ValueError):
                continue
            held = (card.get("metrics") or {}).get("held_out")
            curve.append({"name": folder.name, "frames": len(card.get("training", {}).get("frames", [])),
                          "held_out_faces": held["faces"] if held else 0,
                          "ap50": held["ap50"] if held and held["faces"] >= MIN_HELD_OUT_FACES else None})
        try:
            card = json.loads((best / "card.json").read_text())
        except (OSError, ValueError):
            return {"name": best.name, "held_out": None, "verdict": "its card.json cannot be read", "curve": curve,
                    "caveat": "its card.json cannot be read"}
        held = (card.get("metrics") or {}).get("held_out")
        return {"name": best.name, "held_out": held, "verdict": verdict(held), "caveat": card.get("caveat", ""),
                "curve": curve, "why": (self.meta().get("detector") or {}).get("why", ""),
                "plateau": plateau(curve)}

    def _crop_records(self, drop_damaged: bool = False):
        """The readable crop records; a damaged one (cut short) is skipped, or removed with drop_damaged."""
        for path in self.crops_dir.glob("*.json"):
            try:
                yield _record(self.crops_dir, "crop", path.stem)
            except LabelError:
                if drop_damaged:
                    path.unlink(missing_ok=True)

    # -- crops and scores -------------------------------------------------------------------------------
    def _has_crop(self, cid: str) -> bool:
        return (self.crops_dir / f"{cid}.json").exists() and (self.crops_dir / f"{cid}.jpg").exists()

    def _picture(self, record: dict) -> np.ndarray:
        image = cv2.imread(str(self.frames_dir / f"{record['id']}.jpg"))
        if image is None:
            raise LabelError(f"the picture of frame {record['id']} is missing or damaged", 500)
        return image

    def _sync_crops(self, record: dict, had: set[str], image: np.ndarray | None = None) -> int:
        """The crops of a frame are those of its labelled boxes: new boxes get a crop, removed boxes (of HAD, the
        crops it had) lose theirs (their scores stay on disk but no longer count). Only this frame's files are
        touched: a save costs the same in a project of ten crops or ten thousand. Returns how many were made."""
        wanted = _crop_ids(record)
        for cid in had - set(wanted):
            (self.crops_dir / f"{cid}.json").unlink(missing_ok=True)
            (self.crops_dir / f"{cid}.jpg").unlink(missing_ok=True)
        made = 0
        for cid, box in wanted.items():
            if self._has_crop(cid):
                continue
            if image is None:
                image = self._picture(record)
            crop = cv2.resize(square_crop(image, np.array(box, np.float32)), (CROP_SIZE, CROP_SIZE),
                              interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(self.crops_dir / f"{cid}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 92])
            atomic_write_text(self.crops_dir / f"{cid}.json", json.dumps(
                {"id": cid, "frame": record["id"], "box": box, "subject": record["subject"]}) + "\n")
            made += 1
        return made

    def add_crop(self, image: Path, subject: str, source: str) -> str | None:
        """A face crop from elsewhere (a `curate` folder) for scoring; None when it is already in the project."""
        picture, why = read_image(image)  # before reading its bytes: a FIFO is never opened
        if picture is None:
            raise ConfigError(f"cannot read image {image}: {why}")
        cid = hashlib.sha256(Path(image).read_bytes()).hexdigest()[:16]
        if (self.crops_dir / f"{cid}.json").exists():
            return None
        crop = cv2.resize(picture, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(self.crops_dir / f"{cid}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 92])
        atomic_write_text(self.crops_dir / f"{cid}.json", json.dumps(
            {"id": cid, "frame": None, "box": None, "subject": subject, "source": source}) + "\n")
        return cid

    def crop_ids(self) -> list[str]:
        return _ids(self.crops_dir)

    def crop(self, cid: str) -> dict:
        return _record(self.crops_dir, "crop", cid)

    def crop_image(self, cid: str) -> Path:
        self.crop(cid)
        return self.crops_dir / f"{cid}.jpg"

    def raters(self) -> list[str]:
        return sorted(p.name for p in self.scores_dir.iterdir() if p.is_dir()) if self.scores_dir.is_dir() else []

    def _scores_of(self, rater: str) -> dict[str, dict]:
        """The rater's readable scores of the project's crops (a damaged one is left out: damaged() names it)."""
        folder = self.scores_dir / rater
        live = set(self.crop_ids())
        scores = {}
        for path in folder.glob("*.json") if folder.is_dir() else []:
            if path.stem in live:
                try:
                    scores[path.stem] = _record(folder, "score", path.stem)
                except LabelError:
                    continue
        return scores

    def blind_queue(self, rater: str) -> list[dict]:
        """The crops for one rater, blind (an id and an image: no video, time or animal) and in an order of
        their own (shuffled per rater, stable across reloads), each with the rater's score so far."""
        _check_rater(rater)
        scores = self._scores_of(rater)
        order = sorted(self.crop_ids(), key=lambda c: hashlib.sha256(f"{rater}|{c}".encode()).hexdigest())
        return [{"id": c, "score": scores.get(c)} for c in order]

    def save_score(self, rater: str, cid: str, body: object) -> dict:
        """One rater's scores of one crop: each AU 0/1/2, a pain level, or not scorable (then nothing else)."""
        with self.lock:
            return self._save_score(rater, cid, body)

    def _save_score(self, rater: str, cid: str, body: object) -> dict:
        _check_rater(rater)
        self.crop(cid)
        if not isinstance(body, dict):
            raise LabelError("the body must be a JSON object {orbital, nose, ears, whiskers, level, not_scorable}")
        flag = body.get("not_scorable", False)
        if not isinstance(flag, bool):  # a value is what the page sends: "no" is not a yes
            raise LabelError(f"not_scorable must be true or false, not {flag!r}")
        if flag:
            score = {"not_scorable": True}
        else:
            score = {"not_scorable": False}
            for au in ACTION_UNITS:
                value = body.get(au)
                if value not in (0, 1, 2) or isinstance(value, bool):
                    raise LabelError(f"{au} must be 0, 1 or 2, not {value!r}")
                score[au] = value
            if body.get("level") not in LEVELS:
                raise LabelError(f"level must be one of {', '.join(LEVELS)}, not {body.get('level')!r}")
            score["level"] = body["level"]
        score["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        (self.scores_dir / rater).mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.scores_dir / rater / f"{cid}.json", json.dumps(score) + "\n")
        return score

    def agreement(self) -> dict:
        """Inter-rater agreement over crops that two or more raters scored (not scorable by either: left out):
        quadratic-weighted kappa per action unit and for the level (mean over rater pairs), and ICC(2,1) of the
        RGS score (the mean of the four AUs) over crops every rater scored."""
        from sklearn.metrics import cohen_kappa_score

        from ..classify.metrics import icc_2_1

        raters = self.raters()
        scores = {r: {c: s for c, s in self._scores_of(r).items() if not s.get("not_scorable")} for r in raters}
        pairs = [(a, b) for i, a in enumerate(raters) for b in raters[i + 1:]]
        out: dict = {"raters": raters, "pairs": len(pairs)}
        for name in (*ACTION_UNITS, "level"):
            kappas, agree, n = [], [], 0
            for a, b in pairs:
                common = sorted(set(scores[a]) & set(scores[b]))
                if len(common) < 2:
                    continue
                value = (lambda s: LEVELS.index(s["level"])) if name == "level" else (lambda s: s[name])
                ya, yb = [value(scores[a][c]) for c in common], [value(scores[b][c]) for c in common]
                with warnings.catch_warnings():  # undefined (NaN) when both gave one value throughout: left out
                    warnings.simplefilter("ignore")
                    kappas.append(float(cohen_kappa_score(ya, yb, labels=[0, 1, 2], weights="quadratic")))
                agree.append(float(np.mean(np.equal(ya, yb))))
                n = max(n, len(common))
            finite = [k for k in kappas if np.isfinite(k)]  # undefined when a rater gave one value to every crop
            if kappas:
                out[name] = {"qwk": float(np.mean(finite)) if finite else None, "agreement": float(np.mean(agree)),
                             "crops": n}
                if not finite:
                    out[name]["why_no_kappa"] = ("every rater gave one value to every crop: kappa compares "
                                                 "agreement with chance and is undefined without variation")
        everyone = sorted(set.intersection(*(set(s) for s in scores.values()))) if len(raters) >= 2 else []
        if len(everyone) >= 2:
            rgs = np.array([[np.mean([scores[r][c][au] for au in ACTION_UNITS]) for r in raters] for c in everyone])
            with np.errstate(divide="ignore", invalid="ignore"):
                icc = icc_2_1(rgs)
            # undefined (0/0) when every rater gave every crop one and the same score: None, never NaN in JSON
            out["rgs"] = {"icc_2_1": icc if np.isfinite(icc) else None, "crops": len(everyone)}
        return out

    def consensus(self) -> list[dict]:
        """Per crop with any usable score: the mean of its raters' AU scores (rounded) and the most severe level
        that most raters gave; a crop most raters found not scorable is left out."""
        raters = self.raters()
        by_crop: dict[str, list[dict]] = {}
        for r in raters:
            for cid, s in self._scores_of(r).items():
                by_crop.setdefault(cid, []).append(s)
        out = []
        for cid, scores in sorted(by_crop.items()):
            usable = [s for s in scores if not s.get("not_scorable")]
            if not usable or len(usable) * 2 < len(scores):
                continue
            votes = [LEVELS.index(s["level"]) for s in usable]
            counts = np.bincount(votes, minlength=3)
            level = int(np.flatnonzero(counts == counts.max()).max())  # a tie goes to the more severe level
            aus = {au: int(np.clip(np.rint(np.mean([s[au] for s in usable])), 0, 2)) for au in ACTION_UNITS}
            try:
                crop = self.crop(cid)
            except LabelError:  # damaged: damaged() names it
                continue
            out.append({"crop": cid, **crop, "level": level, **aus, "raters": len(usable)})
        return out


PROPOSAL_KEPT_IOU = 0.5  # a label overlapping a proposal this much is that proposal accepted (perhaps adjusted)


def _proposed(boxes, width: int, height: int) -> list[list[float]]:
    """Detector boxes as proposals: clipped to the image (a face at the edge is found partly outside it), rounded
    as the page sends them back, and those smaller than a label may be left out."""
    out = []
    for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4):
        box = [round(max(0.0, x0), 1), round(max(0.0, y0), 1), round(min(float(width), x1), 1),
               round(min(float(height), y1), 1)]
        if box[2] - box[0] >= MIN_BOX_PX and box[3] - box[1] >= MIN_BOX_PX:
            out.append(box)
    return out


def _unique(boxes: list[list[float]]) -> list[list[float]]:
    return [b for k, b in enumerate(boxes) if b not in boxes[:k]]


def _kept(box: list[float], among: list[list[float]]) -> bool:
    """Whether a box is matched by one of AMONG (IoU >= PROPOSAL_KEPT_IOU)."""
    from ..imaging import iou

    return bool(among) and float(iou(np.array([box]), np.array(among)).max()) >= PROPOSAL_KEPT_IOU


def _with_proposals(record: dict) -> dict:
    """A frame record with its proposals apart from its labels. Projects made before proposals were kept apart
    stored an undecided frame's suggestions as its boxes: they are proposals, never labels."""
    if "proposals" not in record:
        undecided = record.get("status") == "unlabelled" and record.get("boxes_from") != "person"
        record["proposals"] = record.get("boxes", []) if undecided else []
        record["proposals_from"] = record.get("boxes_from") if undecided else None
        if undecided:
            record["boxes"] = []
    record.setdefault("rejected", [])
    return record


def _crop_ids(record: dict) -> dict[str, list]:
    """The crop id of each labelled box of a frame record -> the box."""
    return {hashlib.sha256(f"{record['id']}|{box}".encode()).hexdigest()[:16]: box
            for box in (record["boxes"] if record.get("status") == "labelled" else [])}


def _ids(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.json"))


def _record(folder: Path, kind: str, item: str) -> dict:
    """The JSON record FOLDER/ITEM.json, checked as untrusted input (a file cut short, edited by hand or
    planted); a malformed id is a 400 (nothing outside FOLDER is ever read), a missing one a 404, a damaged one
    a 500 for this record only, never for the whole project."""
    if not ID_PATTERN.match(item or ""):
        raise LabelError(f"not a {kind} id: {item!r}", 400)
    path = folder / f"{item}.json"
    try:
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise ValueError("not a regular file")
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabelError(f"no {kind} {item}", 404) from None
    except (OSError, ValueError):
        raise LabelError(f"the record of {kind} {item} is damaged ({path})", 500) from None
    if not (isinstance(record, dict) and RECORD_CHECKS[kind](record, item)):
        raise LabelError(f"the record of {kind} {item} is damaged ({path}): not what rat-monitor writes", 500)
    return record


def _stored_boxes(boxes: object, width: int, height: int) -> bool:
    """Boxes as a record keeps them: a list of [x0, y0, x1, y1] inside the image."""
    return isinstance(boxes, list) and len(boxes) <= 10 * MAX_BOXES and all(
        isinstance(b, list) and len(b) == 4 and all(_pixel(v) for v in b) and -0.5 <= b[0] < b[2] <= width + 0.5
        and -0.5 <= b[1] < b[3] <= height + 0.5 for b in boxes)


def _frame_ok(r: dict, item: str) -> bool:
    w, h = r.get("width"), r.get("height")
    return (r.get("id") == item and r.get("status") in STATUSES and isinstance(r.get("subject"), str)
            and isinstance(r.get("video"), str) and isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0
            and _pixel(r.get("t_s")) and all(_stored_boxes(r.get(k, []), w, h) for k in ("boxes", "proposals",
                                                                                        "rejected")))


def _crop_ok(r: dict, item: str) -> bool:
    return (r.get("id") == item and isinstance(r.get("subject"), str) and isinstance(r.get("frame"), (str, type(None)))
            and (r.get("box") is None or (isinstance(r["box"], list) and len(r["box"]) == 4
                                          and all(_pixel(v) for v in r["box"]))))


def _score_ok(r: dict, item: str) -> bool:
    if r.get("not_scorable") is True:
        return True
    return (r.get("not_scorable") is False and r.get("level") in LEVELS
            and all(r.get(au) in (0, 1, 2) and not isinstance(r.get(au), bool) for au in ACTION_UNITS))


RECORD_CHECKS = {"frame": _frame_ok, "crop": _crop_ok, "score": _score_ok}


def _check_rater(rater: str) -> None:
    if not is_safe_name(rater, 40):
        raise LabelError(f"give a rater name ({NAME_RULE}, up to 40)")


def _pixel(v: object) -> bool:
    """A finite number of pixels (an integer of hundreds of digits is not one: it overflowed a float)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e7 and math.isfinite(v)


def _checked_boxes(boxes: object, width: int, height: int) -> list[list[float]]:
    if not isinstance(boxes, list):
        raise LabelError("boxes must be a list of [x0, y0, x1, y1]")
    if len(boxes) > MAX_BOXES:
        raise LabelError(f"{len(boxes)} boxes on one frame; at most {MAX_BOXES}")
    out = []
    for k, box in enumerate(boxes):
        if not (isinstance(box, list) and len(box) == 4 and all(_pixel(v) for v in box)):
            raise LabelError(f"box {k} must be four numbers [x0, y0, x1, y1]")
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (x1 - x0 >= MIN_BOX_PX and y1 - y0 >= MIN_BOX_PX):
            raise LabelError(f"box {k} is inverted or smaller than {MIN_BOX_PX} px: {box}")
        if x0 < -0.5 or y0 < -0.5 or x1 > width + 0.5 or y1 > height + 0.5:
            raise LabelError(f"box {k} lies outside the {width}x{height} image: {box}")
        out.append([round(max(0.0, x0), 1), round(max(0.0, y0), 1), round(min(float(width), x1), 1),
                    round(min(float(height), y1), 1)])
    return out
