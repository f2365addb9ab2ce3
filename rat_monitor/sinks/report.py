"""The welfare report: one self-contained HTML file (no CDN, works offline) over one or more run folders,
plus the timeline plot as PNG. It reads the run folders only; it never re-runs anything."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..classify.familiarity import unfamiliar_advice
from ..errors import ConfigError, first_line
from .files import ANIMAL_COLUMN, pain_levels
from .readback import DamagedRun, crop_file, read_alerts, read_frames, read_info, read_minutes
from ..models import SYNTHETIC_CAVEAT
from ..timeline import RGS_INTERVENTION, RGS_SOURCE, RULE_NAMES
from ..types import ACTION_UNITS, AU_FIELDS

MAX_THUMBNAILS = 600  # per run; every crop stays in the run folder
THUMB = 144  # px an audit crop is shown at (the crops are 112 px; at 72 the eyes of a dark rat were not seen)


@dataclass
class RunData:
    folder: Path
    name: str
    timeline: list[dict]
    frames: list[dict]
    info: dict
    alerts: list[dict] = field(default_factory=list)  # the alerts raised (alerts.jsonl)
    summary: dict = field(default_factory=dict)
    attention: dict = field(default_factory=dict)

    @property
    def action_units(self) -> bool:
        """Made with a classifier that scores the four action units (the columns exist)."""
        return bool(self.timeline) and "rgs" in self.timeline[0]


def load_runs(folder: Path) -> list[RunData]:
    """One run folder, every file checked as untrusted input (readback); a damaged one raises DamagedRun. A run of
    several animals is read as one run each ("FOLDER · NAME"): its own timeline, plot, faces and alerts."""
    folder = Path(folder)
    minutes, frames, info = read_minutes(folder), read_frames(folder), read_info(folder)
    alerts = [e for e in read_alerts(folder) if e.get("event") == "raised"]
    animals = list(dict.fromkeys(r.get(ANIMAL_COLUMN, "") for r in minutes)) or [""]
    runs = []
    for animal in animals:
        mine = (lambda row: row.get(ANIMAL_COLUMN, "") == animal) if animal else (lambda row: True)
        run = RunData(folder, f"{folder.name} · {animal}" if animal else folder.name,
                      [r for r in minutes if mine(r)], [f for f in frames if mine(f)], info,
                      alerts=[e for e in alerts if mine(e)])
        run.summary = summarise(run)
        runs.append(run)
    return runs


def run_folders(paths: list[Path]) -> list[Path]:
    """Run folders from what the user gave: run folders themselves, or folders holding runs (what `analyze`
    writes for several videos: one run per video, summary.csv beside them), in name order."""
    found = []
    for path in map(Path, paths):
        if _holds_run(path):
            found.append(path)
            continue
        # a linked folder inside is not followed: it may point anywhere
        inside = sorted(p for p in path.iterdir() if not p.is_symlink() and _holds_run(p)) if path.is_dir() else []
        if not inside:
            raise ConfigError(f"{path} is neither a run folder (no timeline.csv) nor a folder of run folders")
        found += inside
    return found


def _holds_run(folder: Path) -> bool:
    """FOLDER has a timeline.csv (a link there counts too: the folder is then reported as damaged)."""
    return (folder / "timeline.csv").exists() or (folder / "timeline.csv").is_symlink()


def _f(v: str) -> float | None:
    return float(v) if v not in ("", None) else None


def summarise(run: RunData) -> dict:
    rows = run.timeline
    shown = ("none", *pain_levels(run.info, rows), "unknown")  # a level the model cannot give stays empty
    levels = {k: sum(r["pain_level"] == k for r in rows) if k in shown else ""
              for k in ("none", "pain", "moderate", "severe", "unknown")}
    frames = sum(int(r["frames"]) for r in rows)
    faces = sum(int(r["face_frames"]) for r in rows)
    models = run.info.get("models", {})
    refused = sum(f.get("refused") == "1" for f in run.frames)
    scored = sum(int(r["scored_frames"]) for r in rows)
    return {
        "minutes": len(rows), "observed": len(rows) - levels["unknown"], **levels,
        "alerts": len(run.alerts),
        "coverage": 100.0 * faces / frames if frames else 0.0,
        "scored": scored,
        "refused": refused,
        "advice": unfamiliar_advice(refused, scored),
        "camera": _camera_line(run.info.get("camera")),
        "dropped": sum(int(r["dropped_frames"]) for r in rows),
        "source": run.info.get("inputs", {}).get("source", ""),
        "classifier": models.get("classifier", {}).get("name", "?"),
        "synthetic": any(m.get("synthetic") for m in models.values()),
        "model_status": [_model_status(m) for m in models.values() if isinstance(m, dict)],
        # a "no pain" or an alert of a pain model that was not validated by animal is marked so wherever it is shown
        "validated": _model_status(models.get("classifier") or {})["level"] == "by-animal",
        "unvalidated": _unvalidated_words(_model_status(models.get("classifier") or {})["level"]),
        "mean_pain": _mean([_f(r["pain_prob"]) for r in rows]),
        "mean_rgs": _mean([_f(r.get("rgs")) for r in rows]),
    }


def _model_status(entry: dict) -> dict:
    """A run.json model entry's validation status (models.validation_status, written by the run): name, level
    and line; a run made before runs recorded it says so."""
    name = str(entry.get("name", "?"))
    status = entry.get("status")
    if isinstance(status, dict) and isinstance(status.get("line"), str) and isinstance(status.get("level"), str):
        return {"name": name, "level": status["level"], "line": status["line"]}
    return {"name": name, "level": "synthetic" if entry.get("synthetic") else "not-recorded",
            "line": "how far this model was checked is not recorded (a run made by an earlier rat-monitor)"}


def _unvalidated_words(level: str) -> str:
    """What a run's conclusion says first when its pain model was not validated by animal on real animals."""
    if level == "by-animal":
        return ""
    if level == "synthetic":
        return "The pain model was trained on synthetic faces only: what follows is a demonstration, not a finding."
    return "The pain model was not validated by animal: what follows is unconfirmed."


def _camera_line(check: object) -> str:
    """The run's word on whether its detector knew the camera (run.json's camera), or ''."""
    if not isinstance(check, dict):
        return ""
    line = check.get("line")
    return line if isinstance(line, str) else ""


def _start_label(row: dict) -> str:
    """A minute's start as the report's tables show it: the clock time when the run has one, else the time into
    the video as m:ss (one kind of value per column)."""
    clock = row.get("start_time", "")
    if len(clock) >= 19:
        return clock[11:19]
    seconds = int(round(float(row.get("start_s") or 0)))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _minute_label(row: dict) -> str:
    """'minute 3' or, when the run has clock time, 'minute 3 (14:05)'."""
    clock = row.get("start_time", "")
    return f"minute {row['minute']}" + (f" ({clock[11:16]})" if len(clock) >= 16 else "")


def attention(run: RunData) -> dict:
    """What a reader must see first about one run: its alert episodes (raised -> cleared, or still on at the
    end), its worst minutes (highest P(pain), worst first), how much of it was unknown, and whether its last
    minute was partial. `concern` orders runs: alerts, then pain minutes, then the worst P(pain)."""
    rows = run.timeline
    episodes, open_at, rules = [], None, set()
    for r in rows:
        if r["alert"] == "1" and open_at is None:
            open_at, rules = r, set()
        if r["alert"] == "1":
            rules |= set(filter(None, r.get("alert_rule", "").split("+")))
        elif open_at is not None:
            episodes.append(f"{_minute_label(open_at)} to {_minute_label(r)}{_rule_words(rules)}")
            open_at = None
    if open_at is not None:
        episodes.append(f"from {_minute_label(open_at)}, still on at the end{_rule_words(rules)}")
    known = [r for r in rows if _f(r["pain_prob"]) is not None]
    pain = [r for r in known if r["pain_level"] in ("pain", "moderate", "severe")]
    worst = sorted(pain, key=lambda r: -_f(r["pain_prob"]))[:3]
    last = rows[-1] if rows else None
    partial = bool(last) and float(last["end_s"]) - float(last["start_s"]) < 59.5
    unknown = 100.0 * (len(rows) - len(known)) / len(rows) if rows else 100.0
    top = max((_f(r["pain_prob"]) for r in known), default=0.0)
    return {"episodes": episodes, "pain_minutes": len(pain), "unknown_pct": unknown, "known_minutes": len(known),
            "unknown_why": _unknown_why([r for r in rows if _f(r["pain_prob"]) is None]),
            "worst": [f"{_minute_label(r)}: P(pain) {_f(r['pain_prob']):.2f}" for r in worst],
            "partial_last": f"the last minute ({last['minute']}) covers only "
                            f"{float(last['end_s']) - float(last['start_s']):.0f} s" if partial else "",
            "needs_attention": bool(episodes or pain),
            "concern": (len(episodes), len(pain), top)}


def _unknown_why(rows: list[dict]) -> str:
    """Why minutes are unknown, in words: faces refused, no face seen, no sharp face, no frames."""
    counts = {"refused": 0, "no face": 0, "blurred": 0, "no frames": 0}
    for r in rows:
        if r.get("status") == "unfamiliar":
            counts["refused"] += 1
        elif r.get("status") in ("no_frames", "source_lost") or not int(r.get("frames") or 0):
            counts["no frames"] += 1
        elif not int(r.get("face_frames") or 0):
            counts["no face"] += 1
        else:
            counts["blurred"] += 1
    words = {"refused": "the faces seen were all refused as unlike the classifier's training faces",
             "no face": "no face was found", "blurred": "no face frame was sharp and steady enough to score",
             "no frames": "there were no frames (source lost or ended)"}
    return "; ".join(f"in {n} minute(s) {words[k]}" for k, n in counts.items() if n)


def _rule_words(rules: set[str]) -> str:
    """' (P(pain) rule and RGS rule)': which rules held an alert episode on; '' for runs that did not record it."""
    names = [f"{name} rule" for key, name in RULE_NAMES.items() if key in rules]
    return f" ({' and '.join(names)})" if names else ""


def thresholds(runs: list[RunData]) -> str:
    """The rules behind levels and alerts, in words (from the runs' settings; the defaults when not recorded)."""
    rule = next((r.info.get("settings", {}).get("alert") for r in runs if r.info.get("settings", {}).get("alert")),
                {"threshold": 0.7, "minutes": 3, "clear_below": 0.5, "rgs_above": RGS_INTERVENTION})
    return (f"A minute is \"pain\" when the mean P(pain) of its scored face frames is 0.50 or more, \"none\" below. "
            f"An alert is raised when the smoothed P(pain) (this minute pooled with the three before it) is "
            f"{rule['threshold']:.2f} or more for {rule['minutes']} known minutes in a row, and clears when it drops "
            f"below {rule['clear_below']:.2f}. A minute without a scored face is unknown: it neither raises nor clears "
            f"an alert." + _rgs_words(rule, runs))


def _rgs_words(rule: dict, runs: list[RunData]) -> str:
    above = rule.get("rgs_above")  # absent from runs made before the RGS rule existed
    if above is None or not any(r.action_units for r in runs):
        return ""
    return (f" The RGS rule (the model scores action units): an alert is also raised when a minute's RGS score "
            f"(mean of its scored frames) is above {above:.2f} for {rule['minutes']} known minutes in a row, and "
            f"that rule clears at the first known minute at or below it. {above:.2f} is the Rat Grimace Scale's "
            f"analgesic intervention threshold ({RGS_SOURCE}; sensitivity 84.6%, specificity 88.6% against "
            f"analgesia given by experts), set for human scorers; here the scores are the model's. Each alert "
            f"names the rule that raised it.")


def _column(rows: list[dict], key: str) -> np.ndarray:
    """One timeline column as floats for plotting; an empty cell (unknown) is NaN, a gap in the line."""
    return np.array([np.nan if _f(r.get(key)) is None else _f(r[key]) for r in rows], float)


def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def run_start(run: RunData) -> float | None:
    """The clock time (epoch seconds) of a run's minute 0: run.json's, else its first minute's; None when the
    source did not say (analyze --start-time gives it)."""
    start = run.info.get("inputs", {}).get("start_time")
    if isinstance(start, (int, float)):
        return float(start)
    first = run.timeline[0].get("start_time", "") if run.timeline else ""
    return dt.datetime.fromisoformat(first).timestamp() if first else None


def _clock(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def time_axis(runs: list[RunData], align: float | None = None) -> tuple[dict[str, float], str]:
    """One time axis for all runs: per run folder, where its minute 0 lies (in minutes), and the axis label.
    With ALIGN (a clock time, e.g. the end of surgery) minutes after it; else, when every run has clock time,
    minutes after the earliest start, so that runs recorded side by side line up; else each run's own minutes."""
    starts = {str(r.folder): run_start(r) for r in runs}
    if align is not None:
        missing = [r.name for r in runs if starts[str(r.folder)] is None]
        if missing:
            raise ConfigError(f"--align needs the clock time of every run; {', '.join(missing)} has none (analyze "
                              "it with --start-time)")
        return {k: (v - align) / 60.0 for k, v in starts.items()}, f"minutes after {_clock(align)}"
    if len(runs) > 1 and all(v is not None for v in starts.values()):
        first = min(starts.values())
        return {k: (v - first) / 60.0 for k, v in starts.items()}, f"minutes after {_clock(first)} (earliest start)"
    return {k: 0.0 for k in starts}, "minute of the run"


AU_LABELS = {"orbital": "orbital tightening", "nose": "nose/cheek flattening", "ears": "ear changes",
             "whiskers": "whisker change"}


def plot_runs(runs: list[RunData], path: Path | None = None,
              axis: tuple[dict[str, float], str] | None = None) -> bytes:
    """Per run: P(pain) per minute (raw with interval, smoothed with band, unknown minutes shaded, alert minutes
    marked); for AU-capable models the four action-unit scores and the RGS score per minute under it; face
    coverage at the bottom. All panels share one time axis (time_axis, or AXIS when given: the whole report's).
    Returns PNG bytes (and writes them when path is given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(run, kind) for run in runs for kind in ("pain", "aus", "coverage")
              if kind != "aus" or run.action_units]
    ratios = {"pain": 3, "aus": 2, "coverage": 1}
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, sum(0.9 * ratios[k] + 0.75 for _, k in panels) + 0.1),
                             squeeze=False, gridspec_kw={"height_ratios": [ratios[k] for _, k in panels]})
    axes_of = {(id(run), kind): axes[i, 0] for i, (run, kind) in enumerate(panels)}
    offsets, xlabel = axis or time_axis(runs)
    shown = [offsets[str(r.folder)] for r in runs]
    xlim = (min(shown, default=0.0), max((offsets[str(r.folder)] + len(r.timeline) - 1 + _spans(r.timeline)[-1]
                                          for r in runs if r.timeline), default=1.0))
    for run in runs:
        ax, cov = axes_of[(id(run), "pain")], axes_of[(id(run), "coverage")]
        rows = run.timeline
        m = np.array([int(r["minute"]) for r in rows]) + offsets[str(run.folder)]
        span = _spans(rows)  # a partial last minute is drawn as long as it lasted
        raw, lo, hi = (_column(rows, k) for k in ("pain_prob", "pain_prob_low", "pain_prob_high"))
        sm, slo, shi = (_column(rows, k) for k in ("pain_prob_smoothed", "smoothed_low", "smoothed_high"))
        x = m + span / 2
        unknown = np.array([r["pain_level"] == "unknown" for r in rows], bool)
        _shade(ax, m, span, unknown, (0, 1.05), color="0.85", label="unknown (no face scored, or all refused)")
        _shade(ax, m, span, np.array([r["alert"] == "1" for r in rows], bool), (0.98, 0.07), color="crimson",
               label="alert")
        per = _bin_size(len(rows))  # a long run's lines are drawn as means of PER minutes (the page is ~1000 px)
        ax.fill_between(_binned(x, per), _binned(slo, per), _binned(shi, per), color="tab:blue", alpha=0.2, lw=0,
                        label="smoothed 95% interval")
        ax.plot(_binned(x, per), _binned(sm, per), color="tab:blue", lw=2, label="smoothed P(pain)")
        if per == 1:
            ax.errorbar(x, raw, yerr=[np.clip(raw - lo, 0, None), np.clip(hi - raw, 0, None)], fmt="o", color="k",
                        ms=4, lw=1, capsize=2, label="per-minute P(pain), 95% interval")
        else:
            ax.plot(_binned(x, per), _binned(raw, per), ".", color="k", ms=3,
                    label=f"P(pain), mean of each {per} minutes")
        ax.axhline(0.7, color="crimson", ls="--", lw=1, label="alert threshold")
        ax.set_ylim(0, 1.05)
        ax.set_xlim(*xlim)
        ax.set_ylabel("P(pain)")
        ax.set_title(f"{run.name}", loc="left", fontsize=11)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, framealpha=0.8)
        frames = np.array([max(1, int(r["frames"])) for r in rows])
        coverage = 100 * np.array([int(r["face_frames"]) for r in rows]) / frames
        if per == 1:
            cov.bar(x, coverage, width=0.9 * span, color="tab:green")
        else:  # a bar per minute took minutes to draw for a year-long run
            cov.fill_between(_binned(x, per), _binned(coverage, per), color="tab:green", lw=0)
        cov.set_ylim(0, 100)
        cov.set_xlim(ax.get_xlim())
        cov.set_ylabel("face %")
        cov.set_xlabel(xlabel)
        if run.action_units:
            _plot_action_units(axes_of[(id(run), "aus")], rows, m, span, ax.get_xlim())
    # Fixed margins (the legends sit right of the panels): tight_layout drew every figure twice and took half
    # the time of a 500-run report.
    height, gap = fig.get_figheight(), 0.75  # inches between panels: an x label and the next run's title
    axes_height = (height - 0.85 - gap * (len(panels) - 1)) / len(panels)
    fig.subplots_adjust(left=0.065, right=0.70, top=1 - 0.3 / height, bottom=0.55 / height,
                        hspace=gap / max(axes_height, 0.1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    png = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(png)
    return png


MAX_DRAWN = 2000  # points per line in a plot about 1000 px wide: more minutes are drawn as means of several


def _bin_size(minutes: int) -> int:
    return max(1, -(-minutes // MAX_DRAWN))


def _binned(values: np.ndarray, per: int) -> np.ndarray:
    """The mean of each PER consecutive values (unknown, NaN, ones left out; a stretch of only NaN stays NaN)."""
    if per == 1:
        return values
    padded = np.full(-(-len(values) // per) * per, np.nan)
    padded[:len(values)] = values
    blocks = padded.reshape(-1, per)
    counts = np.isfinite(blocks).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.nansum(blocks, axis=1) / np.maximum(counts, 1), np.nan)


def _shade(ax, minutes: np.ndarray, span: np.ndarray, marked: np.ndarray, rows: tuple[float, float], color: str,
           label: str | None = None) -> None:
    """The marked minutes as shaded stretches (consecutive ones joined), drawn as one collection: a patch per
    minute took minutes to draw for a year-long run. ROWS: (bottom, height) in data units."""
    if not marked.any():
        return
    edges = np.diff(np.concatenate([[0], marked.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    ranges = np.column_stack([minutes[starts], minutes[stops] + span[stops] - minutes[starts]])
    ax.broken_barh(ranges, rows, color=color, lw=0, label=label, zorder=0)


def _spans(rows: list[dict]) -> np.ndarray:
    """Each minute's length in minutes (1, or less for a partial last minute), for drawing it to scale."""
    return np.array([min(1.0, max(0.02, (float(r.get("end_s") or 60.0 * (int(r["minute"]) + 1))
                                         - float(r.get("start_s") or 60.0 * int(r["minute"]))) / 60.0))
                     for r in rows])


def _plot_action_units(ax, rows: list[dict], minutes: np.ndarray, span: np.ndarray, xlim) -> None:
    """The per-AU panel: mean score of each action unit per minute (0 absent, 1 moderate, 2 severe) and the RGS
    score; minutes without a scored face are gaps, never zeros."""
    x, per = minutes + span / 2, _bin_size(len(rows))
    for au in ACTION_UNITS:
        ax.plot(_binned(x, per), _binned(_column(rows, f"au_{au}"), per), marker=".", lw=1, ms=4, label=AU_LABELS[au])
    ax.plot(_binned(x, per), _binned(_column(rows, "rgs"), per), color="k", lw=2.2, label="RGS score (mean)")
    ax.axhline(RGS_INTERVENTION, color="crimson", ls="--", lw=1,
               label=f"RGS intervention threshold {RGS_INTERVENTION} ({RGS_SOURCE.split(',')[0]})")
    _shade(ax, minutes, span, np.array([r["pain_level"] == "unknown" for r in rows], bool), (-0.05, 2.1),
           color="0.85")
    ax.set_ylim(-0.05, 2.05)
    ax.set_yticks([0, 1, 2])
    ax.set_xlim(xlim)
    ax.set_ylabel("AU score")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, framealpha=0.8)


DARK = 90  # mean brightness (0-255) below which an audit crop is brightened for viewing (a dark coat hid the eyes)


def _thumb(path: Path | None) -> tuple[str, bool] | None:
    """A crop as an embedded JPEG of THUMB px, and whether it was brightened for viewing: a dark crop is lifted
    and its lightness spread out (CLAHE) so that a person can judge the eyes; the crop file, and what was scored,
    are unchanged."""
    img = cv2.imread(str(path)) if path is not None else None
    if img is None:
        return None
    img = cv2.resize(img, (THUMB, THUMB), interpolation=cv2.INTER_CUBIC)
    mean = float(img.mean())
    dark = mean < DARK
    if dark:  # lifted to a mid-grey mean (at most 6 times), then local contrast spread out
        img = cv2.convertScaleAbs(img, alpha=min(6.0, 120.0 / max(mean, 1.0)))
        lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB)
        lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(lab[..., 0])
        img = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return (base64.b64encode(buf.tobytes()).decode(), dark) if ok else None


def _spread(run: RunData, frames: list[dict]) -> list[dict]:
    """At most MAX_THUMBNAILS frames for a long run: three of every alert minute first, then one frame each of
    evenly spaced minutes across the whole run, round after round (not the first ones in time order), returned
    in time order."""
    if len(frames) <= MAX_THUMBNAILS:
        return frames
    by_minute: dict[int, list[dict]] = {}
    for f in frames:
        by_minute.setdefault(int(float(f["t_s"]) // 60), []).append(f)
    alert_minutes = sorted(int(r["minute"]) for r in run.timeline if r.get("alert") == "1")
    chosen = [f for m in alert_minutes for f in by_minute.get(m, [])[:3]][:MAX_THUMBNAILS]
    taken = {id(f) for f in chosen}
    rest = [[f for f in by_minute[m] if id(f) not in taken] for m in sorted(by_minute)]
    while len(chosen) < MAX_THUMBNAILS and any(rest):
        open_minutes = [i for i, queue in enumerate(rest) if queue]
        k = min(MAX_THUMBNAILS - len(chosen), len(open_minutes))
        for j in sorted({int(round(x)) for x in np.linspace(0, len(open_minutes) - 1, k)}):
            chosen.append(rest[open_minutes[j]].pop(0))  # evenly spaced minutes, one frame each per round
    return sorted(chosen, key=lambda f: float(f["t_s"]))


def _thumbnails(run: RunData, refused: bool = False) -> tuple[list[dict], int]:
    """Scored frames (or, with refused, the crops refused as unfamiliar) grouped by minute, as embedded
    thumbnails with time and P(pain) (familiarity for refused crops)."""
    groups: dict[int, list] = {}
    frames = [f for f in run.frames if (f.get("refused") == "1") == refused]
    start = run_start(run)
    value = "familiarity" if refused else "pain_prob"
    for f in _spread(run, [f for f in frames if f.get("crop") and f[value]]):
        thumb = _thumb(crop_file(run.folder, f["crop"]))
        if thumb is None:
            continue
        data, brightened = thumb
        t = float(f["t_s"])
        title = f"frame {f['frame']}, quality {f['quality']}, sharpness {f['sharpness']}"
        if f.get("familiarity"):
            title += f", familiarity {f['familiarity']}"
        if f.get("rgs"):
            title += ", " + ", ".join(f"{k} {f[k]}" for k in AU_FIELDS)
        if brightened:
            title += "; brightened for viewing (the crop scored is as in crops/)"
        # the same time base as the tables: clock time when the run has one, else the time into the video
        when = dt.datetime.fromtimestamp(start + t).strftime("%H:%M:%S") if start is not None else \
            f"{int(t // 60)}:{int(t % 60):02d}"
        caption = (f"{when} fam={float(f['familiarity']):.2f}" if refused else
                   f"{when} P={float(f['pain_prob']):.2f}" + (f" RGS={float(f['rgs']):.1f}" if f.get("rgs") else ""))
        groups.setdefault(int(t // 60), []).append({"data": data, "caption": caption, "title": title})
    return [{"minute": k, "faces": v} for k, v in sorted(groups.items())], len(frames)


MAX_TABLE_MINUTES = 1440  # a day of minutes in the per-minute table; a longer run lists the minutes that matter


def _table_minutes(run: RunData) -> tuple[list[dict], str]:
    """The per-minute table's rows: every minute of a run up to a day long; of a longer one, the minutes with an
    alert or a pain level (the earliest MAX_TABLE_MINUTES of them), with a line that says so (every minute is in
    the plot and in timeline.csv)."""
    if len(run.timeline) <= MAX_TABLE_MINUTES:
        return run.timeline, ""
    marked = [r for r in run.timeline if r["alert"] == "1" or r["pain_level"] not in ("none", "unknown")]
    shown = marked[:MAX_TABLE_MINUTES]
    return shown, (f"{len(shown)} of the run's {len(run.timeline)} minutes are listed: those with an alert or a pain "
                   f"level{' (the earliest ' + str(MAX_TABLE_MINUTES) + ')' if len(marked) > len(shown) else ''}. "
                   f"Every minute is in the plot above and in {run.folder}/timeline.csv.")


PLOTS_IN_PARALLEL_FROM = 16  # runs; fewer are drawn here (starting the worker processes costs about 2 s)


def _plot_one(run: RunData, axis: tuple[dict[str, float], str]) -> bytes:
    return plot_runs([run], axis=axis)


def _each_run_plotted(runs: list[RunData], axis: tuple[dict[str, float], str]):
    """Each run's own plot (PNG bytes), in order: matplotlib takes about 0.2 s a figure, so a report of hundreds of
    runs draws them on every core."""
    cores = os.cpu_count() or 1
    if len(runs) < PLOTS_IN_PARALLEL_FROM or cores < 2:
        yield from (_plot_one(run, axis) for run in runs)
        return
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold threads
    with ProcessPoolExecutor(max_workers=cores, mp_context=context) as pool:
        yield from pool.map(_plot_one, runs, [axis] * len(runs), chunksize=8)


MAX_PLOTTED_TOGETHER = 8  # runs in the PNG beside the report (the most concerning); each run has its own plot


def write_report(run_dirs: list[Path], out: Path, title: str = "Rat welfare report",
                 align: float | None = None, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Writes OUT (HTML) and OUT with .png (the timeline plot of the MAX_PLOTTED_TOGETHER most concerning runs).
    ALIGN: a clock time (epoch seconds) the time axis counts from. progress(stage, done, total) as it reads and
    draws the runs. Returns what it wrote."""
    from jinja2 import Environment, PackageLoader

    if not run_dirs:
        raise ConfigError("give at least one run folder")
    tell = progress or (lambda stage, done, total: None)
    runs, damaged = [], []
    folders = run_folders(run_dirs)
    for k, folder in enumerate(folders, start=1):
        try:
            runs.extend(load_runs(folder))
        except DamagedRun as exc:  # one bad folder is named; the others are reported
            damaged.append({"folder": str(folder), "why": first_line(exc)})
        tell("reading runs", k, len(folders))
    if not runs:
        raise ConfigError(f"no run folder could be read: {damaged[0]['why']}"
                          + (f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""))
    for run in runs:
        run.attention = attention(run)
        for row in run.timeline:
            row["start_label"] = _start_label(row)
    runs.sort(key=lambda r: r.attention["concern"], reverse=True)  # most concerning first
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png_path = out.with_suffix(".png")
    axis = time_axis(runs, align)
    plot_runs(runs[:MAX_PLOTTED_TOGETHER], png_path, axis)
    sections = []
    for k, (run, plot) in enumerate(zip(runs, _each_run_plotted(runs, axis)), start=1):
        tell("drawing runs", k, len(runs))
        thumbs, total = _thumbnails(run)
        refused, refused_total = _thumbnails(run, refused=True)
        table, table_note = _table_minutes(run)
        sections.append({"run": run, "plot": base64.b64encode(plot).decode(), "thumbs": thumbs,
                         "table": table, "table_note": table_note,
                         "thumb_total": total, "thumb_shown": sum(len(g["faces"]) for g in thumbs),
                         "refused": refused, "refused_total": refused_total,
                         "refused_shown": sum(len(g["faces"]) for g in refused),
                         "info_json": json.dumps(run.info, indent=2, default=str)})
    # How far each model was checked, said once for the whole report (not once per run).
    model_status = sorted({(m["name"], m["line"], m["level"] in ("by-animal", "held-out"))
                           for run in runs for m in run.summary["model_status"]})
    # Every template is HTML: escape everything (a video's name or a title is text, never markup).
    env = Environment(loader=PackageLoader("rat_monitor", "sinks/templates"), autoescape=True)
    page = env.get_template("report.html.j2").render(
        title=title, generated=time.strftime("%Y-%m-%d %H:%M"), sections=sections, runs=runs, damaged=damaged,
        thresholds=thresholds(runs), model_status=model_status,
        model_unchecked=not all(checked for _, _, checked in model_status), time_axis=axis[1],
        synthetic=any(r.summary["synthetic"] for r in runs), caveat=SYNTHETIC_CAVEAT, thumb=THUMB)
    out.write_text(page, encoding="utf-8")
    return {"html": out, "png": png_path, "runs": len(runs), "damaged": damaged,
            "plotted": min(len(runs), MAX_PLOTTED_TOGETHER)}
