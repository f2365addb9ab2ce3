"""A run folder read back as untrusted input (by the report and by resume): it may be damaged, edited by hand, cut
short by a crash or planted. Every file read is a regular file inside the folder (a link is never followed), every
table has the columns rat-monitor writes and every number cell is empty or a finite number in its range; anything
else is a DamagedRun that names the file and the line, so one bad folder is told apart from the others."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

from ..errors import ConfigError
from ..tables import read_table
from ..types import AU_FIELDS
from .files import FRAME_COLUMNS, TIMELINE_COLUMNS

LEVELS = ("none", "pain", "moderate", "severe", "unknown")
# column -> (low, high, whole number); every other column is text (escaped wherever it is shown)
_COUNT = (0, math.inf, True)
_TIME = (0, math.inf, False)
_PROB = (0, 1, False)
_AU = (0, 2, False)
TIMELINE_NUMBERS = {
    "minute": _COUNT, "start_s": _TIME, "end_s": _TIME, "frames": _COUNT, "dropped_frames": _COUNT,
    "face_frames": _COUNT, "scored_frames": _COUNT, "pain_prob": _PROB, "pain_score": (0, 10, False),
    "pain_prob_smoothed": _PROB, "alert": (0, 1, True), "pain_prob_low": _PROB, "pain_prob_high": _PROB,
    "smoothed_low": _PROB, "smoothed_high": _PROB, "share_none": _PROB, "share_moderate": _PROB,
    "share_severe": _PROB, "refused_frames": _COUNT, **{k: _AU for k in AU_FIELDS}}
_ANY = (-math.inf, math.inf, False)
FRAME_NUMBERS = {
    "frame": _COUNT, "t_s": _TIME, "x0": _ANY, "y0": _ANY, "x1": _ANY, "y1": _ANY, "sharpness": _ANY,
    "quality": _ANY, "p_none": _PROB, "p_moderate": _PROB, "p_severe": _PROB, "pain_prob": _PROB,
    "track_id": (-1, math.inf, True), "motion": _ANY, "confidence": _PROB, "size_px": _TIME, "pose_weight": _ANY,
    "exposure": _ANY, "refused": (0, 1, True), "familiarity": _ANY, **{k: _AU for k in AU_FIELDS}}
# cells never empty in a row rat-monitor wrote (an unknown minute still counts its frames)
TIMELINE_REQUIRED = ("minute", "start_s", "end_s", "frames", "dropped_frames", "face_frames", "scored_frames",
                     "pain_level")
FRAME_REQUIRED = ("frame", "t_s")


class DamagedRun(ConfigError):
    """A run folder holds a file that is not as rat-monitor wrote it (damaged, edited, cut short or planted)."""


def own_file(folder: Path, name: str) -> Path | None:
    """FOLDER/NAME when it is a regular file of the folder itself; None when it is absent. A link (even one that
    points inside) or anything but a regular file is refused: a planted link would make the report read outside."""
    path = _not_a_link(Path(folder) / name)
    if not path.exists():
        return None
    if not path.is_file():
        raise DamagedRun(f"{path} is not a regular file")
    return path


def read_info(folder: Path) -> dict:
    """run.json as a dict ({} when the run never closed); its parts the report reads are checked for type."""
    path = own_file(folder, "run.json")
    if path is None:
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DamagedRun(f"{path} is not readable JSON ({type(exc).__name__}); it was cut short or edited") from None
    if not isinstance(info, dict):
        raise DamagedRun(f"{path} holds a JSON {type(info).__name__}, not the object rat-monitor writes")
    for key in ("models", "inputs"):
        if not isinstance(info.get(key, {}), dict):
            raise DamagedRun(f"{path}: '{key}' is not an object")
    if not all(isinstance(m, dict) for m in info.get("models", {}).values()):
        raise DamagedRun(f"{path}: a model entry is not an object")
    start = info.get("inputs", {}).get("start_time")
    if start is not None and not (isinstance(start, (int, float)) and math.isfinite(start)):
        raise DamagedRun(f"{path}: inputs.start_time is not a finite number")
    return info


def read_minutes(folder: Path) -> list[dict[str, str]]:
    """timeline.csv's rows, every cell checked (the four AU columns and rgs come all together or not at all)."""
    path = own_file(folder, "timeline.csv")
    if path is None:
        raise ConfigError(f"{folder} is not a run folder (no timeline.csv)")
    header, rows = _checked_table(path, TIMELINE_COLUMNS, TIMELINE_NUMBERS, TIMELINE_REQUIRED)
    if 0 < sum(k in header for k in AU_FIELDS) < len(AU_FIELDS):
        raise DamagedRun(f"{path} has some action-unit columns but not all of {', '.join(AU_FIELDS)}")
    for line, row in enumerate(rows, start=2):
        if row["pain_level"] not in LEVELS:
            raise DamagedRun(f"{path}:{line}: pain_level {row['pain_level'][:40]!r} is not one of {', '.join(LEVELS)}")
        if row["start_time"]:
            try:
                dt.datetime.fromisoformat(row["start_time"]).timestamp()
            except (ValueError, OverflowError, OSError):
                raise DamagedRun(f"{path}:{line}: start_time {row['start_time'][:40]!r} is not a clock time") from None
    return rows


def read_frames(folder: Path) -> list[dict[str, str]]:
    """frames.csv's rows ([] when the run wrote none), every number cell checked."""
    path = own_file(folder, "frames.csv")
    return [] if path is None else _checked_table(path, FRAME_COLUMNS, FRAME_NUMBERS, FRAME_REQUIRED)[1]


def read_alerts(folder: Path) -> list[dict]:
    """alerts.jsonl's events, one JSON object per line."""
    path = own_file(folder, "alerts.jsonl")
    if path is None:
        return []
    events = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedRun(f"{path} cannot be read ({type(exc).__name__})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            raise DamagedRun(f"{path}:{number}: not a JSON line (cut short or edited)") from None
        if not isinstance(event, dict):
            raise DamagedRun(f"{path}:{number}: not a JSON object")
        events.append(event)
    return events


def check_run(folder: Path) -> None:
    """Every file of a run folder as read_* reads it, before resume rewrites them; the crops folder must be the
    folder's own (resume deletes the crops of the minutes it redoes)."""
    read_info(folder)
    read_minutes(folder)
    read_frames(folder)
    read_alerts(folder)
    _not_a_link(Path(folder) / "crops")


def _not_a_link(path: Path) -> Path:
    if path.is_symlink():
        raise DamagedRun(f"{path} is a link; a run folder's files are never followed elsewhere")
    return path


def crop_file(folder: Path, crop: str) -> Path | None:
    """A frame's crop picture when it is a regular file directly in FOLDER/crops; None otherwise (a crop cell
    that names a path elsewhere, or a link, is never opened)."""
    name = crop.removeprefix("crops/")
    if not crop.startswith("crops/") or not name or "/" in name or "\\" in name or name in (".", ".."):
        return None
    path = Path(folder) / "crops" / name
    if path.is_symlink() or (Path(folder) / "crops").is_symlink() or not path.is_file():
        return None
    return path


def _checked_table(path: Path, columns: list[str], numbers: dict[str, tuple],
                   required: tuple[str, ...]) -> tuple[list[str], list[dict]]:
    header, rows = read_table(path, DamagedRun, whole_rows=True)
    missing = [c for c in columns if c not in header]
    if missing:
        raise DamagedRun(f"{path} lacks the column{'s' * (len(missing) > 1)} {', '.join(missing)}; it was edited, "
                         "cut short or written by another version of rat-monitor")
    checked = [c for c in header if c in numbers]
    for line, row in enumerate(rows, start=2):
        empty = [c for c in required if not row[c]]
        if empty:
            raise DamagedRun(f"{path}:{line}: {empty[0]} is empty; the row was cut short or edited")
        for column in checked:
            cell = row[column]
            if cell and not _in_range(cell, *numbers[column]):
                raise DamagedRun(f"{path}:{line}: {column} holds {cell[:40]!r}, not a number rat-monitor writes there")
    return header, rows


def _in_range(cell: str, low: float, high: float, whole: bool) -> bool:
    try:
        value = float(cell)
    except ValueError:
        return False
    return math.isfinite(value) and low <= value <= high and (not whole or value.is_integer())
