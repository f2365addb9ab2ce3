"""The run folder: timeline.csv (a row per minute, flushed as each closes), frames.csv (a row per scored
frame), crops/ (the scored face crops, for audit), alerts.jsonl, and run.json (written atomically)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import shutil
from pathlib import Path

import cv2

from ..errors import ConfigError, RunExists
from ..imaging import CROP_JPEG_QUALITY
from ..locking import exclusive
from ..models import atomic_write_text
from ..tables import read_rows, read_table
from ..timeline import AU_DIGITS, PROB_DIGITS
from ..types import AU_FIELDS, MinuteSummary, Prediction, ScoredFrame

TIMELINE_COLUMNS = ["minute", "start_s", "end_s", "start_time", "frames", "dropped_frames", "face_frames",
                    "scored_frames", "pain_prob", "pain_score", "pain_prob_smoothed", "pain_level", "alert", "status",
                    "pain_prob_low", "pain_prob_high", "smoothed_low", "smoothed_high", "share_none",
                    "share_moderate", "share_severe", "refused_frames", "alert_rule"]
# refused = 1: the crop was unlike the model's training faces (familiarity below the model's floor); its
# probability and AU cells stay empty and it counts in no minute. familiarity is empty when the model cannot tell.
FRAME_COLUMNS = ["frame", "t_s", "x0", "y0", "x1", "y1", "sharpness", "quality", "p_none", "p_moderate", "p_severe",
                 "model", "pain_prob", "track_id", "motion", "confidence", "size_px", "pose_weight", "exposure", "crop",
                 "refused", "familiarity"]
RUN_FILES = ("timeline.csv", "frames.csv", "run.json", "alerts.jsonl", "annotated.mp4")
# Models with action-unit heads add AU_FIELDS (au_orbital, au_nose, au_ears, au_whiskers, rgs) at the end of
# both files; pain-only models leave the columns out altogether (absent, never zero).
# A run of several animals (--animals N) puts an `animal` column (the animal's name) first in both files, and
# timeline.csv then holds a row per minute per animal; a run of one animal writes the files as before.
ANIMAL_COLUMN = "animal"


def timeline_columns(action_units: bool, animals: bool = False) -> list[str]:
    return [ANIMAL_COLUMN] * animals + TIMELINE_COLUMNS + list(AU_FIELDS) * action_units


def frame_columns(action_units: bool, animals: bool = False) -> list[str]:
    return [ANIMAL_COLUMN] * animals + FRAME_COLUMNS + list(AU_FIELDS) * action_units


def _num(v, digits: int = PROB_DIGITS) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def run_state(path: Path) -> str:
    """'new' (no run here), 'complete' (run.json says it finished) or 'partial' (interrupted: resumable)."""
    path = Path(path)
    if not (path / "timeline.csv").exists():
        return "new"
    try:
        if json.loads((path / "run.json").read_text()).get("complete") is True:
            return "complete"
    except (OSError, ValueError, AttributeError):  # damaged: resuming it checks each file and says which
        pass
    return "partial"


def recorded_source(path: Path) -> str | None:
    """The source a run folder's run.json says it analysed, or None when it does not say."""
    try:
        source = json.loads((Path(path) / "run.json").read_text()).get("inputs", {}).get("source")
    except (OSError, ValueError, AttributeError):
        return None
    return source if isinstance(source, str) else None


PAIN_LEVELS = ("pain", "moderate", "severe")


def pain_levels(info: dict, rows: list[dict]) -> tuple[str, ...]:
    """The pain levels the run's classifier can give: ('pain',) for a binary model, ('moderate', 'severe') for a
    3-class one; from run.json, else from the levels in the timeline; all three when neither tells. A summary
    leaves the others' counts empty: a binary model's "0 severe minutes" would claim what it cannot know."""
    task = info.get("models", {}).get("classifier", {}).get("task")
    seen = {r.get("pain_level") for r in rows}
    if task == "binary" or (task is None and "pain" in seen):
        return ("pain",)
    if task == "3class" or (task is None and seen & {"moderate", "severe"}):
        return ("moderate", "severe")
    return PAIN_LEVELS


def make_dir(path: Path) -> Path:
    """Creates an output folder (and its parents); a path that cannot be one is a settings error."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {path}: {exc.strerror}") from None
    return path


_LOCKS: dict[Path, object] = {}  # run folder -> its open lock file, held while this process writes it


def lock_run_dir(path: Path) -> None:
    """One writer per run folder: an exclusive lock on RUN/.lock, held until the writer closes (or the process
    ends: the system drops it even after kill -9). A second process gets a one-line error, and touches nothing."""
    key = Path(path).resolve()
    if key in _LOCKS:
        return
    _LOCKS[key] = exclusive(key / ".lock", f"{path} is being written by another rat-monitor process; wait for it "
                                           "or choose another --out")


def unlock_run_dir(path: Path) -> None:
    handle = _LOCKS.pop(Path(path).resolve(), None)
    if handle is not None:
        handle.close()


def prepare_run_dir(path: Path, overwrite: bool = False) -> Path:
    """Creates the run folder and locks it; refuses to mix with an earlier run unless overwrite is set, which
    removes the earlier run's files and crops. A folder inside another run's folder is refused: its files would
    be read as part of that run (and deleted by its --overwrite)."""
    outer = next((p for p in Path(path).resolve().parents
                  if (p / "timeline.csv").is_file() or (p / "run.json").is_file()), None)
    if outer is not None:
        raise ConfigError(f"{path} is inside the run folder {outer}; choose an --out outside it")
    path = make_dir(path)
    if not os.access(path, os.W_OK):
        raise ConfigError(f"output folder {path} is not writable")
    lock_run_dir(path)
    existing = [f for f in RUN_FILES if (path / f).exists()]
    if existing and not overwrite:
        unlock_run_dir(path)
        raise RunExists(f"{path} already holds a run ({', '.join(existing)}); choose another --out, add --overwrite, "
                          "or --resume (analyze) to finish an interrupted one")
    for f in existing:
        (path / f).unlink()
    if (path / "crops").is_symlink():  # a planted link: removed itself, never what it points to
        (path / "crops").unlink()
    shutil.rmtree(path / "crops", ignore_errors=True)  # the earlier run's crops are not this run's audit images
    return path


class RunWriter:
    """Appends rows as they are produced and flushes them, so a crash loses at most the current minute.
    With resume=True it continues the files of an interrupted run instead of starting them. action_units: the
    classifier scores the four RGS action units, so both files carry AU_FIELDS. animals: the names of several
    animals (Candidate.animal 1 is the first), so both files start with an animal column; None with one animal."""

    def __init__(self, run_dir: Path, resume: bool = False, action_units: bool = False,
                 animals: list[str] | None = None):
        self.dir = Path(run_dir)
        self.action_units = action_units
        self.animals = animals
        lock_run_dir(self.dir)
        (self.dir / "crops").mkdir(exist_ok=True)
        mode = "a" if resume else "w"
        self._timeline = open(self.dir / "timeline.csv", mode, newline="")
        self._frames = open(self.dir / "frames.csv", mode, newline="")
        self._tw = csv.writer(self._timeline)
        self._fw = csv.writer(self._frames)
        if not resume:
            self._tw.writerow(timeline_columns(action_units, bool(animals)))
            self._fw.writerow(frame_columns(action_units, bool(animals)))
        # alerts.jsonl is there from the start, empty while no alert fired: its absence never has to be read
        self._alerts = open(self.dir / "alerts.jsonl", "a")
        self._sync(self._timeline)
        self._sync(self._frames)
        self._sync(self._alerts)

    @staticmethod
    def _sync(f) -> None:
        f.flush()
        os.fsync(f.fileno())

    def minute(self, m: MinuteSummary) -> None:
        self._tw.writerow(timeline_row(m, self.action_units))
        self._sync(self._timeline)
        event = m.alert_event
        if event:
            self._alerts.write(json.dumps(alert_record(m, event)) + "\n")
            self._sync(self._alerts)

    def scored(self, frames: list[ScoredFrame]) -> None:
        for s in frames:
            c, p, q = s.candidate, s.prediction, s.candidate.quality
            crop_name = f"crops/f{c.frame:07d}_r{c.track_id}.jpg"
            if s.jpeg:
                (self.dir / crop_name).write_bytes(s.jpeg)
            else:
                cv2.imwrite(str(self.dir / crop_name), c.crop, [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY])
            probs, pain = prediction_cells(p)
            row = [c.frame, f"{c.t_s:.3f}", *(f"{v:.1f}" for v in c.box), _num(q.sharpness), _num(q.score), *probs,
                   p.model, pain, c.track_id, _num(q.motion), _num(q.confidence), f"{q.size_px:.1f}",
                   _num(q.pose_weight, 2), _num(q.exposure, 3), crop_name, int(p.refused), _num(p.familiarity, 3)]
            if self.action_units:
                row += _au_cells(None if p.refused else p.au_values)
            if self.animals:
                row.insert(0, self.animals[c.animal - 1])
            self._fw.writerow(row)
        if frames:
            self._frames.flush()

    def _close_files(self) -> None:
        for f in (self._timeline, self._frames, self._alerts):
            if f is not None and not f.closed:
                self._sync(f)
                f.close()

    def close(self, run_info: dict) -> None:
        """The end of a run: files flushed and closed, then run.json written (atomically)."""
        self._close_files()
        atomic_write_text(self.dir / "run.json", json.dumps(run_info, indent=2, default=str) + "\n")
        unlock_run_dir(self.dir)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc) -> None:
        """Whatever ended the run, the rows written so far are flushed and the files closed; without close()
        there is no run.json, so the run reads as interrupted and can be resumed."""
        self._close_files()
        unlock_run_dir(self.dir)


def prediction_cells(p: Prediction) -> tuple[list[str], str]:
    """(p_none, p_moderate, p_severe) and pain_prob cells. A binary model fills only p_none and pain_prob; a refused
    crop fills none: it is never a score."""
    if p.refused:
        return ["", "", ""], ""
    probs = [_num(v) for v in p.probs] if not p.binary else [_num(p.probs[0]), "", ""]
    return probs, _num(p.pain_prob)


SCORE_COLUMNS = ["path", "refused", "familiarity", "pain_prob", "p_none", "p_moderate", "p_severe"]


BOX_COLUMNS = ["x0", "y0", "x1", "y1"]


def score_columns(action_units: bool, boxes: bool = False) -> list[str]:
    """Columns of `predict`'s scores.csv: the face's box after the path when faces were found in whole frames,
    AU_FIELDS for AU models, then the error of an unreadable file or a frame without a face."""
    return SCORE_COLUMNS[:1] + (BOX_COLUMNS if boxes else []) + SCORE_COLUMNS[1:] + \
        (list(AU_FIELDS) if action_units else []) + ["error"]


def score_row(path: str, p: Prediction | None, error: str, action_units: bool, boxes: bool = False,
              box=None) -> list:
    """One row of scores.csv: a face's prediction, or only its path and error."""
    box_cells = ([f"{v:.1f}" for v in box] if box is not None else [""] * 4) if boxes else []
    if p is None:
        return [path, *box_cells] + [""] * (len(score_columns(action_units)) - 2) + [error]
    probs, pain = prediction_cells(p)
    aus = _au_cells(None if p.refused else p.au_values) if action_units else []
    return [path, *box_cells, int(p.refused), _num(p.familiarity, 3), pain, *probs, *aus, error]


def _opt(v: str) -> float | None:
    return float(v) if v not in ("", None) else None


def read_timeline(path: Path) -> list[MinuteSummary]:
    """The minutes of a timeline.csv, back as MinuteSummary rows (to show a finished run, or resume one). Also as a
    spreadsheet saves it; a row cut short or edited into something else is refused with its line number."""
    rows = []
    for line, r in enumerate(read_rows(path, ConfigError), start=2):
        try:
            m = MinuteSummary(minute=int(r["minute"]), start_s=float(r["start_s"]), end_s=float(r["end_s"]),
                              start_time=r["start_time"], frames=int(r["frames"]),
                              dropped_frames=int(r["dropped_frames"]), face_frames=int(r["face_frames"]),
                              scored_frames=int(r["scored_frames"]), pain_prob=_opt(r["pain_prob"]),
                              pain_score=_opt(r["pain_score"]), pain_level=r["pain_level"], status=r["status"],
                              pain_prob_smoothed=_opt(r["pain_prob_smoothed"]), alert=int(r["alert"] or 0),
                              smoothed_low=_opt(r.get("smoothed_low")), smoothed_high=_opt(r.get("smoothed_high")),
                              pain_prob_low=_opt(r.get("pain_prob_low")), pain_prob_high=_opt(r.get("pain_prob_high")),
                              share_none=_opt(r.get("share_none")), share_moderate=_opt(r.get("share_moderate")),
                              share_severe=_opt(r.get("share_severe")), refused_frames=int(r.get("refused_frames") or 0),
                              alert_rule=r.get("alert_rule") or "", animal=r.get(ANIMAL_COLUMN) or "")
            if r.get("rgs"):
                m.action_units = {k: float(r[k]) for k in AU_FIELDS}
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}:{line}: not a timeline row rat-monitor wrote ({type(exc).__name__}: {exc}); "
                              "it was cut short or edited. Analyse the video again with --overwrite") from None
        if m.pain_prob is not None:
            m.pain_sum = m.pain_prob * m.scored_frames
        rows.append(m)
    for animal in dict.fromkeys(m.animal for m in rows):  # each animal's minutes (one animal: all of them)
        minutes = [m.minute for m in rows if m.animal == animal]
        if minutes != list(range(len(minutes))):
            raise ConfigError(f"{path} does not hold consecutive minutes from 0; cannot resume it")
    return rows


def prepare_resume(run_dir: Path, action_units: bool,
                   several: bool = False) -> tuple[list[MinuteSummary], float]:
    """An interrupted run folder -> its complete minutes and the time to continue from. frames.csv keeps only
    the frames of those minutes (the unfinished minute is redone); crops of the unfinished minute go.
    The run must go on with the same kind of classifier (with or without AU scores): its columns stay. several:
    the run would go on with several animals; that, or a run of several in the folder, is refused."""
    run_dir = Path(run_dir)
    lock_run_dir(run_dir)
    header = read_table(run_dir / "timeline.csv", ConfigError)[0]
    if several or header[:1] == [ANIMAL_COLUMN]:  # resumed, who is who would be guessed afresh: refused
        raise ConfigError(f"{run_dir}: --resume does not yet continue a run of several animals; analyse the video "
                          "again with --overwrite")
    if header != timeline_columns(action_units):
        if ("rgs" in header) != action_units:
            had = "with" if "rgs" in header else "without"
            raise ConfigError(f"{run_dir} was started with a classifier {had} action-unit scores; resume it with "
                              "the same --model")
        raise ConfigError(f"{run_dir} was written by another version of rat-monitor (other timeline columns); "
                          "analyse it again with --overwrite")
    rows = read_timeline(run_dir / "timeline.csv")
    while rows and rows[-1].end_s - rows[-1].start_s < 59.999:  # a minute closed early by Ctrl-C: redo it
        rows.pop()
    atomic_write_text(run_dir / "timeline.csv", _csv_text([timeline_columns(action_units)]
                                                          + [timeline_row(m, action_units) for m in rows]))
    resume_s = 60.0 * len(rows)
    with open(run_dir / "frames.csv", newline="") as f:
        frames = list(csv.reader(f))
    header, body = frames[0], frames[1:]
    t_col = header.index("t_s")
    keep = [r for r in body if float(r[t_col]) < resume_s]
    atomic_write_text(run_dir / "frames.csv", _csv_text([header] + keep))
    if "crop" in header and (run_dir / "crops").is_dir():
        kept = {r[header.index("crop")] for r in keep}
        for crop in (run_dir / "crops").iterdir():
            if f"crops/{crop.name}" not in kept:
                crop.unlink()
    alerts = run_dir / "alerts.jsonl"
    if alerts.exists():  # the alerts of the kept minutes stay; the redone minutes raise theirs again
        lines = [line for line in alerts.read_text().splitlines(keepends=True)
                 if line.strip() and json.loads(line).get("minute", 0) < len(rows)]
        atomic_write_text(alerts, "".join(lines))
    return rows, resume_s


def recorded_start(run_dir: Path) -> float | None:
    """When a run began (epoch seconds), from run.json or else from its first minute's clock time; None when
    the folder holds no run or does not say."""
    run_dir = Path(run_dir)
    try:
        start = json.loads((run_dir / "run.json").read_text()).get("inputs", {}).get("start_time")
        if isinstance(start, (int, float)):
            return float(start)
    except (OSError, ValueError, AttributeError):
        pass
    if not (run_dir / "timeline.csv").exists():
        return None
    rows = read_timeline(run_dir / "timeline.csv")
    if rows and rows[0].start_time:
        return dt.datetime.fromisoformat(rows[0].start_time).timestamp()
    return None


def _au_cells(values: dict[str, float] | None) -> list[str]:
    """AU_FIELDS cells: empty when nothing was scored (unknown), never zero."""
    return [_num(values[k], AU_DIGITS) if values else "" for k in AU_FIELDS]


def timeline_row(m: MinuteSummary, action_units: bool = False) -> list:
    """A timeline.csv row (timeline_columns): led by the animal's name in a run of several animals."""
    row = [m.animal] * bool(m.animal) + [m.minute, f"{m.start_s:.3f}", f"{m.end_s:.3f}", m.start_time, m.frames, m.dropped_frames, m.face_frames,
           m.scored_frames, _num(m.pain_prob), _num(m.pain_score), _num(m.pain_prob_smoothed), m.pain_level, m.alert,
           m.status, _num(m.pain_prob_low), _num(m.pain_prob_high), _num(m.smoothed_low), _num(m.smoothed_high),
           _num(m.share_none, 3), _num(m.share_moderate, 3), _num(m.share_severe, 3), m.refused_frames, m.alert_rule]
    return row + _au_cells(m.action_units) if action_units else row


def _csv_text(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def alert_record(m: MinuteSummary, event: str) -> dict:
    """One line of alerts.jsonl. rule: the rules holding the alert on as it was raised ("p_pain", "rgs", or
    both); empty on the minute it cleared."""
    return {"event": event, "minute": m.minute, "start_s": m.start_s, "start_time": m.start_time,
            "rule": m.alert_rule, "pain_prob_smoothed": m.pain_prob_smoothed, "pain_prob": m.pain_prob,
            "rgs": (m.action_units or {}).get("rgs"), **({"animal": m.animal} if m.animal else {})}
