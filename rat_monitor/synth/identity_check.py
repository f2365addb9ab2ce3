"""How well a run of several animals (--animals N) told them apart, against a synthetic video's truth
(`synth --rats N`): the share of scored frames given to the right animal, identity switches per hour, minutes
holding a wrong animal's frame, and each animal's minute-level agreement with its own pain course."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..imaging import iou
from ..tables import read_rows

MATCH_IOU = 0.3  # a scored crop belongs to the truth face it overlaps this much (else it is no rat's face)


def identity_figures(run_dir: Path, truth_csv: Path, minutes_csv: Path, fps: float) -> dict:
    run_dir = Path(run_dir)
    truth = read_rows(truth_csv)
    boxes: dict[int, list[tuple[int, np.ndarray]]] = {}  # frame -> (truth animal, box) of its visible faces
    for r in truth:
        if r["visible"] == "1":
            boxes.setdefault(int(r["frame"]), []).append(
                (int(r["animal"]), np.array([float(r[k]) for k in ("x0", "y0", "x1", "y1")])))
    frames = sorted(read_rows(run_dir / "frames.csv"), key=lambda r: int(r["frame"]))
    names = sorted({r["animal"] for r in frames})
    animals = sorted({int(r["animal"]) for r in truth})
    pairs = []  # (run's animal name, truth animal or 0, minute), in frame order
    for r in frames:
        faces = boxes.get(int(r["frame"]), [])
        box = np.array([[float(r[k]) for k in ("x0", "y0", "x1", "y1")]])
        overlap = iou(box, np.stack([b for _, b in faces]))[0] if faces else np.zeros(0)
        who = faces[int(overlap.argmax())][0] if len(overlap) and overlap.max() >= MATCH_IOU else 0
        pairs.append((r["animal"], who, int(float(r["t_s"]) // 60)))
    # the run's names are its own: each is matched to the truth animal it agrees with most
    counts = np.array([[sum(1 for n, w, _ in pairs if n == name and w == a) for a in animals] for name in names])
    rows, cols = linear_sum_assignment(counts, maximize=True) if len(names) else ([], [])
    truth_of = {names[i]: animals[j] for i, j in zip(rows, cols)}
    on_a_face = [(n, w, m) for n, w, m in pairs if w]
    right = sum(truth_of.get(n) == w for n, w, _ in on_a_face)
    wrong_minutes = {(n, m) for n, w, m in on_a_face if truth_of.get(n) != w}
    switches = 0
    for name in names:
        seq = [w for n, w, _ in on_a_face if n == name]
        switches += sum(a != b for a, b in zip(seq, seq[1:]))
    hours = len({int(r["frame"]) for r in truth}) / fps / 3600
    # per animal: its minutes' pain (none or not) against its own truth, where the run knew the minute
    level = {(int(r["animal"]), int(r["minute"])): int(r["pain_level"]) for r in read_rows(minutes_csv)}
    agree, known, total = {}, {}, {}
    for r in read_rows(run_dir / "timeline.csv"):
        a = truth_of.get(r["animal"])
        if a is None:
            continue
        total[a] = total.get(a, 0) + 1
        if r["pain_level"] in ("unknown", ""):
            continue
        known[a] = known.get(a, 0) + 1
        agree[a] = agree.get(a, 0) + ((r["pain_level"] != "none") == (level[(a, int(r["minute"]))] > 0))
    return {
        "scored_frames": len(pairs), "scored_on_a_face": len(on_a_face),
        "right_animal_share": round(right / len(on_a_face), 4) if on_a_face else None,
        "wrong_animal_frames": len(on_a_face) - right, "minutes_with_a_wrong_frame": len(wrong_minutes),
        "identity_switches": switches, "switches_per_hour": round(switches / hours, 2) if hours else None,
        "minutes_known": {f"rat {a}": f"{known.get(a, 0)}/{total.get(a, 0)}" for a in animals},
        "minute_agreement": {f"rat {a}": round(agree[a] / known[a], 3) if known.get(a) else None for a in animals},
        "names": {n: f"rat {a}" for n, a in truth_of.items()},
    }
