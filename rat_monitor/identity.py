"""Which animal each face is, with several rats in one cage (`--animals N`).

A track (track.py) follows a face while it stays in view; an animal is whom it belongs to. Tracks break when rats
cross, pile up or leave the view, and where two faces touch, a tracker can hand one rat's face to the other's
track. So a face's frames count for an animal only while its identity is sure:

- a track whose face touches another face, or beside which another face just vanished (hidden behind it, or it
  behind the other), loses its identity: its frames count for no animal until it is known again; faces that
  only brushed (boxes overlapping little, nothing vanished) get theirs back as they part, the tracker having
  kept them apart;
- a track without an identity is matched, on how its face looks (a colour histogram of the face crop, learnt per
  animal from its sure frames), to the animals no other track holds; it takes one only when the match is clear;
- a track that starts where one free animal's face was last seen, moments after it vanished, with no other face
  involved, is that animal (a detector miss, not a new animal);
- before an animal has been seen, new faces take the unseen animals' numbers from left to right.

With one animal, every face is that animal, as before (this stage does not run).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .imaging import iou
from .types import Candidate

UNKNOWN = 0  # Candidate.animal of a face whose animal is not sure: scored for no animal
HUE_BINS, SAT_BINS, VALUE_BINS = 12, 4, 8
LOOK_FRAMES = 5  # frames of a face's look gathered before it is matched to an animal
LOOK_KEPT = 30  # the most recent frames of a pending face's look that are kept
LOOK_RATE = 0.05  # how fast an animal's look follows its sure frames (lighting drifts, the head turns)
MATCH_MAX = 0.45  # a look farther than this (Hellinger distance, 0..1) from an animal's is not that animal
MARGIN = 0.12  # the best animal's look must be this much nearer than the next free animal's
TOUCH_GROW = 0.1  # faces whose boxes, grown by this share of their size, overlap are touching
REJOIN_S = 2.0  # a track starting within this time ...
REJOIN_SIZES = 1.0  # ... and this many face sizes of where a free animal was last sure is that animal
# Faces that only brushed (their boxes overlapping by at most this IoU, no face vanishing beside them) were kept
# apart by the tracker: their tracks keep their animals once apart (so rats that look alike stay known).
BRUSH_IOU = 0.3


def look_of(crop: np.ndarray) -> np.ndarray:
    """A face crop's look: hue x saturation and value histograms of its HSV pixels, as one distribution."""
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    hs = cv2.calcHist([hsv], [0, 1], None, [HUE_BINS, SAT_BINS], [0, 180, 0, 256]).ravel()
    v = cv2.calcHist([hsv], [2], None, [VALUE_BINS], [0, 256]).ravel()
    h = np.concatenate([hs / max(hs.sum(), 1.0), v / max(v.sum(), 1.0)]) / 2
    return h.astype(np.float64)


def look_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Hellinger distance between two looks: 0 the same, 1 nothing in common."""
    return float(np.sqrt(max(0.0, 1.0 - np.sqrt(a * b).sum())))


def _grown(box: np.ndarray) -> np.ndarray:
    size = max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0)
    return box + TOUCH_GROW * size * np.array([-1, -1, 1, 1])


def touching(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = _grown(a), _grown(b)
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _centre_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Centre distance in face sizes (the larger face's)."""
    size = max(float(a[2] - a[0]), float(a[3] - a[1]), float(b[2] - b[0]), float(b[3] - b[1]), 1.0)
    return float(np.hypot(*((a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2))) / size


@dataclass
class _Pending:
    """A track without a sure identity: its looks since it was last touched, and whether it may rejoin."""

    first_t: float
    first_box: np.ndarray
    may_rejoin: bool  # born clear of other faces: a detector miss may have split one animal's track
    looks: list[np.ndarray] = field(default_factory=list)
    held: int = UNKNOWN  # the animal the track held before it touched another face
    clean: bool = False  # since then, every touch was a brush (boxes overlapping little, no face vanished)


class Identities:
    """Feed each frame's candidates (every tracked face with its crop) in time order; get them back with their
    animal (1..N, or UNKNOWN). touches counts sure identities given up at a touch; unknown counts face frames
    that counted for no animal."""

    def __init__(self, animals: int, brush_iou: float | None = BRUSH_IOU):
        self.animals = animals
        self.brush_iou = brush_iou  # None: every touch costs the identity, however light
        self._animal_of: dict[int, int] = {}  # track id -> animal, while sure
        self._pending: dict[int, _Pending] = {}
        self._looks: dict[int, np.ndarray] = {}  # animal -> its look, from its sure frames
        self._last_sure: dict[int, tuple[float, np.ndarray]] = {}  # animal -> (t_s, box) of its last sure frame
        self._boxes: dict[int, np.ndarray] = {}  # track id -> its box on the previous frame
        self.touches = 0
        self.unknown = 0

    def assign(self, candidates: list[Candidate], t_s: float) -> list[Candidate]:
        boxes = {c.track_id: c.box for c in candidates}
        touched = self._touched(boxes)
        self._forget_ended(boxes)
        for c in candidates:
            if c.track_id in touched:
                # its looks start again; what it held before its first touch is kept, and whether every touch
                # since was a brush
                held, clean = self._animal_of.pop(c.track_id, None), True
                if held is not None:
                    self.touches += 1
                else:
                    before = self._pending.get(c.track_id)
                    touched_before = before is not None and not before.may_rejoin
                    held, clean = (before.held, before.clean) if touched_before else (UNKNOWN, False)
                brush = self.brush_iou is not None and touched[c.track_id] <= self.brush_iou
                self._pending[c.track_id] = _Pending(t_s, c.box, may_rejoin=False, held=held, clean=clean and brush)
            elif c.track_id not in self._animal_of and c.track_id not in self._pending:
                self._pending[c.track_id] = _Pending(t_s, c.box, may_rejoin=True)
        looks = {c.track_id: look_of(c.crop) for c in candidates if c.track_id not in touched}
        for tid, look in looks.items():
            if tid in self._pending:
                p = self._pending[tid]
                p.looks = (p.looks + [look])[-LOOK_KEPT:]
        self._resolve(boxes, t_s, touched)
        out = []
        for c in candidates:
            animal = UNKNOWN if c.track_id in touched else self._animal_of.get(c.track_id, UNKNOWN)
            if animal != UNKNOWN:
                old = self._looks.get(animal)
                look = looks[c.track_id]
                self._looks[animal] = look if old is None else (1 - LOOK_RATE) * old + LOOK_RATE * look
                self._last_sure[animal] = (t_s, c.box)
            else:
                self.unknown += 1
            out.append(replace(c, animal=animal))
        self._boxes = boxes
        return out

    def _forget_ended(self, boxes: dict[int, np.ndarray]) -> None:
        for tid in set(self._boxes) - set(boxes):
            self._animal_of.pop(tid, None)
            self._pending.pop(tid, None)

    def _touched(self, boxes: dict[int, np.ndarray]) -> dict[int, float]:
        """The faces touching another -> how much they overlap it (IoU; 1 beside a face that vanished)."""
        ids = list(boxes)
        touched: dict[int, float] = {}
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                if touching(boxes[a], boxes[b]):
                    overlap = float(iou(boxes[a][None], boxes[b][None])[0, 0])
                    for k in (a, b):
                        touched[k] = max(touched.get(k, 0.0), overlap)
        # a face that vanished beside a face followed since before: hidden behind it, or that face behind it (a
        # track born this frame where a face vanished is the same face found again: the rejoin rule takes it)
        for gone in (self._boxes[tid] for tid in set(self._boxes) - set(boxes)):
            touched |= {a: 1.0 for a in ids if a in self._boxes and touching(boxes[a], gone)}
        return touched

    def _free(self) -> list[int]:
        held = set(self._animal_of.values())
        return [a for a in range(1, self.animals + 1) if a not in held]

    def _resolve(self, boxes: dict[int, np.ndarray], t_s: float, touched: dict[int, float]) -> None:
        waiting = [tid for tid in self._pending if tid in boxes and tid not in touched]
        # apart again after a brush: the tracker kept the two faces apart all along, each track keeps its animal
        for tid in waiting:
            p = self._pending[tid]
            if p.clean and p.held in self._free():
                self._take(tid, p.held)
        waiting = [tid for tid in waiting if tid in self._pending]
        # a split track: it starts where exactly one free animal was last sure, moments ago
        for tid in waiting:
            p = self._pending[tid]
            if not p.may_rejoin or t_s - p.first_t > REJOIN_S:
                continue
            near = [a for a in self._free() if a in self._last_sure
                    and 0 <= p.first_t - self._last_sure[a][0] <= REJOIN_S
                    and _centre_distance(p.first_box, self._last_sure[a][1]) <= REJOIN_SIZES]
            if len(near) == 1:
                self._take(tid, near[0])
        # by look: the clearest match first, then the others among the animals still free
        while True:
            ready = [tid for tid in waiting if tid in self._pending and len(self._pending[tid].looks) >= LOOK_FRAMES]
            free = self._free()
            if not ready or not free:
                return
            choice = self._clearest(ready, free, boxes)
            if choice is None:
                return
            self._take(*choice)

    def _clearest(self, ready: list[int], free: list[int], boxes: dict[int, np.ndarray]) -> tuple[int, int] | None:
        seen = [a for a in free if a in self._looks]
        unseen = [a for a in free if a not in self._looks]
        best = None  # (margin, track id, animal)
        looks = {tid: np.mean(self._pending[tid].looks, axis=0) for tid in ready}
        for tid, look in looks.items():
            d = sorted((look_distance(look, self._looks[a]), a) for a in seen)
            if d and d[0][0] <= MATCH_MAX:
                # an unseen animal could be anyone: it counts as a rival at the matching limit
                rivals = ([d[1][0]] if len(d) > 1 else []) + ([MATCH_MAX] if unseen else [])
                margin = min(rivals, default=1.0) - d[0][0]
                if margin >= MARGIN and (best is None or margin > best[0]):
                    best = (margin, tid, d[0][1])
        if best is not None:
            return best[1], best[2]
        # a face like none of the free animals seen so far: the first unseen animal, the leftmost face first
        if unseen:
            strangers = [tid for tid, look in looks.items()
                         if all(look_distance(look, self._looks[a]) > MATCH_MAX for a in seen)]
            if strangers:
                return min(strangers, key=lambda tid: float(boxes[tid][0] + boxes[tid][2])), unseen[0]
        return None

    def _take(self, tid: int, animal: int) -> None:
        self._animal_of[tid] = animal
        self._pending.pop(tid, None)
