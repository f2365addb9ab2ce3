"""The run's flow with a fake source, detector and classifier (no video, no model): which minute a scored frame
lands in, window and minute ordering, drop counting, live gaps, the run folder's files, resume, and input
expansion. Fast: these pin the bookkeeping that every real run relies on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import read_rows
from rat_monitor.batch import expand_inputs
from rat_monitor.classify.base import to_predictions
from rat_monitor.errors import ConfigError, SourceError
from rat_monitor.pipeline import Pipeline, Settings
from rat_monitor.sinks import RunWriter, prepare_run_dir
from rat_monitor.types import Detections, Frame, Prediction, SourceInfo

BOX = np.array([[100, 60, 220, 180]], np.float32)


def textured_frame(brighter: int = 0) -> np.ndarray:
    """A mid-grey frame with a sharp, well exposed textured square where the fake detector puts the face;
    BRIGHTER lifts the whole frame (the room's light), so that a crop tells which part of the run it comes from
    while it stays as sharp as before."""
    img = np.full((240, 320, 3), 110 + brighter, np.uint8)
    rng = np.random.default_rng(0)
    img[60:180, 100:220] = rng.integers(40 + brighter, 200 + brighter, (120, 120, 1), dtype=np.uint8)
    return img


LATE_S = 60.0  # from minute 1 on, the face is brighter ...
LATE_CROP_MEAN = 135  # ... and its crop's mean grey is above this (about 118 before, 150 after)


class FakeSource:
    """Frames at the given times (seconds), each with the frames dropped just before it."""

    def __init__(self, times: list[float], dropped: dict[float, int] | None = None, live: bool = False):
        self.times, self.dropped = times, dropped or {}
        self.info = SourceInfo(name="fake", fps=10.0, width=320, height=240, live=live)
        self.early, self.late = textured_frame(), textured_frame(brighter=40)

    def __iter__(self):
        for i, t in enumerate(self.times):
            yield Frame(i, t, self.late if t >= LATE_S else self.early, dropped_before=self.dropped.get(t, 0))

    def close(self) -> None: ...


class FakeDetector:
    name = "fake-detector"
    card = {"kind": "face-detector", "synthetic": True}

    def detect(self, image: np.ndarray) -> Detections:
        return Detections(BOX.copy(), np.array([0.95], np.float32))


class FakeClassifier:
    """P(pain) 0.1 for an early crop, 0.9 for a late one (minute 1 on): a scored frame's minute can be read off
    its probability. With refuse_late, late crops are refused."""

    name, binary, action_units, familiarity = "fake", True, False, None
    card = {"kind": "pain-classifier", "synthetic": True, "caveat": "fake"}

    def __init__(self, refuse_late: bool = False, nan_late: bool = False):
        self.refuse_late, self.nan_late = refuse_late, nan_late

    def predict(self, crops):
        if self.nan_late:  # a broken model: NaN outputs for late crops, through the real prediction path
            probs = np.array([[np.nan] * 3 if c.mean() > LATE_CROP_MEAN else [0.9, 0.1, 0.0] for c in crops])
            return to_predictions(self.name, True, probs, None, None, None)
        out = []
        for crop in crops:
            late = crop.mean() > LATE_CROP_MEAN
            p = 0.9 if late else 0.1
            out.append(Prediction(np.array([1 - p, p, 0.0]), self.name, True, familiarity=0.5,
                                  refused=late and self.refuse_late))
        return out


def run(tmp_path, times, dropped=None, live=False, refuse_late=False, earlier=None, resume_s=0.0,
        nan_late=False):
    source = FakeSource(times, dropped, live)
    writer = RunWriter(prepare_run_dir(tmp_path, overwrite=True) if not earlier else tmp_path, resume=bool(earlier))
    pipe = Pipeline(source, FakeDetector(), FakeClassifier(refuse_late, nan_late), writer, Settings(),
                    earlier=earlier, resume_s=resume_s)
    result = pipe.run()
    writer.close(pipe.run_info({"complete": True}))
    return result


def test_scored_frames_land_in_their_own_minute_and_windows_close_in_order(tmp_path):
    times = list(np.arange(0, 125, 0.5))  # 2 min 5 s at 2 fps
    result = run(tmp_path, times)
    rows = result.rows
    assert [r.minute for r in rows] == [0, 1, 2]
    # 6 windows of 10 s per minute, 3 frames each; the window 50-60 s is scored before minute 0 closes
    assert [r.scored_frames for r in rows[:2]] == [18, 18]
    assert rows[0].pain_prob == pytest.approx(0.1) and rows[1].pain_prob == pytest.approx(0.9)
    assert rows[2].end_s == pytest.approx(124.6, abs=0.01)  # a partial last minute ends at the last frame
    assert [r.frames for r in rows] == [120, 120, 10] and sum(r.face_frames for r in rows) == len(times)
    frames = read_rows(tmp_path / "frames.csv")
    assert len(frames) == result.totals.scored_frames == sum(r.scored_frames for r in rows)
    assert all((float(f["t_s"]) >= 60) == (float(f["pain_prob"]) > 0.5) for f in frames)
    minutes = read_rows(tmp_path / "timeline.csv")
    assert [m["scored_frames"] for m in minutes] == [str(r.scored_frames) for r in rows]


def test_dropped_frames_are_counted_in_the_minute_they_happened(tmp_path):
    times = list(np.arange(0, 90, 1.0))
    result = run(tmp_path, times, dropped={5.0: 3, 70.0: 2, 71.0: 1})
    assert [r.dropped_frames for r in result.rows] == [3, 3]
    assert result.totals.dropped_frames == 6
    assert json.loads((tmp_path / "run.json").read_text())["totals"]["dropped_frames"] == 6


def test_a_live_gap_gives_source_lost_minutes_and_the_run_goes_on(tmp_path):
    times = list(np.arange(0, 10, 0.5)) + list(np.arange(125, 150, 0.5))  # nothing from 10 s to 125 s
    result = run(tmp_path, times, live=True)
    assert [(r.minute, r.status) for r in result.rows] == [(0, "ok"), (1, "source_lost"), (2, "ok")]
    lost = result.rows[1]
    assert lost.frames == 0 and lost.pain_level == "unknown" and lost.pain_prob_smoothed is None
    assert result.rows[2].scored_frames > 0


def test_refused_crops_are_written_but_never_scored(tmp_path):
    result = run(tmp_path, list(np.arange(0, 120, 0.5)), refuse_late=True)
    m0, m1 = result.rows
    assert (m0.status, m0.scored_frames, m0.refused_frames) == ("ok", 18, 0)
    assert (m1.status, m1.scored_frames, m1.refused_frames, m1.pain_prob) == ("unfamiliar", 0, 18, None)
    assert result.totals.refused_frames == 18 and result.totals.scored_frames == 18
    frames = read_rows(tmp_path / "frames.csv")
    assert sum(f["refused"] == "1" and f["pain_prob"] == "" for f in frames) == 18


def test_a_model_giving_nan_never_gives_a_score(tmp_path):
    """A broken model's NaN outputs are refused: the minutes they fall in are unknown, never 'pain' or an alert."""
    result = run(tmp_path, list(np.arange(0, 190, 0.5)), nan_late=True)
    assert result.rows[0].pain_level == "none"
    assert all(r.pain_level == "unknown" and r.pain_prob is None and not r.alert for r in result.rows[1:])
    frames = read_rows(tmp_path / "frames.csv")
    late = [f for f in frames if float(f["t_s"]) >= 60]
    assert late and all(f["refused"] == "1" and f["pain_prob"] == "" for f in late)


def test_resume_continues_after_the_complete_minutes(tmp_path):
    times = list(np.arange(0, 180, 0.5))
    full = run(tmp_path / "full", times)
    resumed_dir = tmp_path / "resumed"
    run(resumed_dir, [t for t in times if t < 130])  # interrupted in minute 2: minutes 0 and 1 are complete
    from rat_monitor.sinks.files import prepare_resume

    earlier, resume_s = prepare_resume(resumed_dir, action_units=False)
    assert [r.minute for r in earlier] == [0, 1] and resume_s == 120.0
    again = run(resumed_dir, [t for t in times if t >= 118], earlier=earlier, resume_s=resume_s)
    assert [r.minute for r in again.rows] == [0, 1, 2]
    for a, b in zip(full.rows, again.rows):
        assert (a.frames, a.scored_frames, a.pain_level) == (b.frames, b.scored_frames, b.pain_level)
        assert a.pain_prob_smoothed == pytest.approx(b.pain_prob_smoothed)
    assert len(read_rows(resumed_dir / "frames.csv")) == sum(r.scored_frames for r in full.rows)


def test_inputs_expand_folders_and_globs_once_and_refuse_clashing_names(tmp_path):
    for name in ("a/one.mp4", "a/two.MOV", "a/notes.txt", "b/three.mkv"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = expand_inputs([tmp_path / "a", str(tmp_path / "b" / "*.mkv"), tmp_path / "a" / "one.mp4"])
    assert [p.name for p in found] == ["one.mp4", "two.MOV", "three.mkv"]  # no text file, no duplicate
    with pytest.raises(SourceError, match="no file matches"):
        expand_inputs([str(tmp_path / "c" / "*.mp4")])
    (tmp_path / "b" / "one.mp4").write_bytes(b"x")
    with pytest.raises(ConfigError, match="share the name 'one'"):
        expand_inputs([tmp_path / "a", tmp_path / "b"])


def test_a_run_that_breaks_keeps_its_rows_closes_its_files_and_reads_as_interrupted(tmp_path):
    from rat_monitor.sinks.files import run_state
    from rat_monitor.types import MinuteSummary

    with pytest.raises(RuntimeError):
        with RunWriter(prepare_run_dir(tmp_path)) as writer:
            writer.minute(MinuteSummary(minute=0, start_s=0.0, end_s=60.0, frames=600))
            raise RuntimeError("the classifier broke")
    assert writer._timeline.closed and writer._frames.closed
    assert [r["minute"] for r in read_rows(tmp_path / "timeline.csv")] == ["0"]
    assert not (tmp_path / "run.json").exists() and run_state(tmp_path) == "partial"  # --resume finishes it


def test_run_and_model_files_follow_the_umask(tmp_path):
    """A colleague can read what a run or a training wrote: 0644 under umask 022, also for files written
    atomically through a private temporary file, and for model weights."""
    import os
    import stat

    from rat_monitor.classify.familiarity import fit_grouped
    from rat_monitor.models import write_card

    old = os.umask(0o022)
    try:
        run(tmp_path / "run", list(np.arange(0, 70, 0.5)))  # run.json and the timeline
        fam, _ = fit_grouped(np.random.default_rng(0).normal(size=(40, 6)), np.repeat(["a", "b"], 20))
        from safetensors.numpy import save_file

        (tmp_path / "model").mkdir()
        save_file(fam.to_tensors(), str(tmp_path / "model" / "w.safetensors"))
        write_card(tmp_path / "model", {"kind": "pain-classifier"}, ["w.safetensors"])
    finally:
        os.umask(old)
    for path in [tmp_path / "run" / f for f in ("run.json", "timeline.csv", "frames.csv")] + \
            [tmp_path / "model" / f for f in ("card.json", "w.safetensors")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
