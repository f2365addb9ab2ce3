"""Several rats in one cage: each face told to its animal, uncertain faces counted for none, a timeline per animal
in every output (timeline.csv, frames.csv, alerts, report, summary.csv), against synthetic two-rat truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from rat_monitor.cli import app
from rat_monitor.identity import UNKNOWN, Identities
from rat_monitor.sinks import FRAME_COLUMNS, TIMELINE_COLUMNS
from rat_monitor.synth.identity_check import identity_figures
from rat_monitor.track import Tracker
from rat_monitor.types import Candidate, Detections, Quality
from helpers import read_rows

runner = CliRunner()
WHITE, DARK, BROWN = (225, 232, 236), (45, 48, 55), (85, 110, 135)


def _face(track_id: int, cx: float, colour, t: float, size: float = 80) -> Candidate:
    rng = np.random.default_rng([track_id, int(t * 100)])
    crop = np.clip(np.array(colour, np.float32) + rng.normal(0, 8, (112, 112, 3)), 0, 255).astype(np.uint8)
    q = Quality(1, 0, 0.9, size, 1, 1, 0.9)
    return Candidate(int(t * 10), t, track_id, np.array([cx - size / 2, 100, cx + size / 2, 100 + size]), crop, q)


def _animals(ids: Identities, faces: list[Candidate], t: float) -> dict[int, int]:
    return {c.track_id: c.animal for c in ids.assign(faces, t)}


def test_faces_that_touch_count_for_no_animal_until_their_looks_tell_them_apart():
    ids = Identities(2, brush_iou=None)
    t = 0.0
    for _ in range(10):  # a white rat on the left, a dark one on the right: named from left to right
        seen = _animals(ids, [_face(1, 100, WHITE, t), _face(2, 500, DARK, t)], t)
        t += 0.1
    assert seen == {1: 1, 2: 2}
    for x in range(100, 600, 20):  # they pass one another; the tracker swaps their track ids as they meet
        swapped = x > 300
        a, b = (2, 1) if swapped else (1, 2)
        seen = _animals(ids, [_face(a, x, WHITE, t), _face(b, 600 - x, DARK, t)], t)
        t += 0.1
        if abs(x - 300) < 48:  # 80-px faces, 2|x - 300| apart: touching with a tenth of their size around
            assert seen == {1: UNKNOWN, 2: UNKNOWN}  # touching: whose face is whose is not sure
        elif not swapped:
            assert seen == {1: 1, 2: 2}
    # apart again: the white face (now track 2) is animal 1 again once its look has been seen for a few frames
    assert seen == {2: 1, 1: 2}
    assert ids.touches == 2


@pytest.mark.parametrize("overlap", ["brush", "press"])
def test_rats_that_look_alike_keep_their_identity_after_a_brush_and_lose_it_after_a_press(overlap):
    ids = Identities(2)
    for k in range(10):
        _animals(ids, [_face(1, 100, WHITE, k / 10), _face(2, 400, WHITE, k / 10)], k / 10)
    near = 300 if overlap == "brush" else 275  # 80-px faces 60 px apart overlap by IoU 0.14; 35 px apart, 0.39
    seen = _animals(ids, [_face(1, 240, WHITE, 1.0), _face(2, near, WHITE, 1.0)], 1.0)
    assert seen == {1: UNKNOWN, 2: UNKNOWN}  # while they touch, no animal
    for k in range(20):
        t = 1.1 + k / 10
        seen = _animals(ids, [_face(1, 100, WHITE, t), _face(2, 400, WHITE, t)], t)
        if overlap == "brush":  # the tracker kept them apart: each track keeps its animal as they part
            assert seen == {1: 1, 2: 2}
        else:
            assert seen == {1: UNKNOWN, 2: UNKNOWN}  # rather no animal than perhaps the wrong one


def test_a_lost_face_found_again_where_it_was_is_the_same_animal_and_extra_faces_are_none():
    ids = Identities(2)
    for k in range(10):
        _animals(ids, [_face(1, 100, WHITE, k / 10), _face(2, 500, DARK, k / 10)], k / 10)
    _animals(ids, [_face(2, 500, DARK, 1.0)], 1.0)  # the detector missed the white face: its track ended
    seen = _animals(ids, [_face(3, 105, WHITE, 1.1), _face(2, 500, DARK, 1.1)], 1.1)
    assert seen == {3: 1, 2: 2}  # at once, by where it was: no frames lost to an identity check
    for k in range(8):  # a third face in a two-rat cage (a reflection, a toy): never one of the animals
        t = 1.2 + k / 10
        seen = _animals(ids, [_face(3, 105, WHITE, t), _face(2, 500, DARK, t), _face(4, 300, BROWN, t)], t)
    assert seen == {3: 1, 2: 2, 4: UNKNOWN}


def test_hungarian_assignment_keeps_both_tracks_where_greedy_would_lose_one():
    tr = Tracker()
    tr.update(Detections(np.array([[0, 0, 100, 100], [60, 0, 160, 100]], np.float32), np.array([0.9, 0.9], np.float32)))
    # one detection overlaps track 1 best and track 2 too; the other overlaps only track 1: the best pair first
    # (greedy) would leave track 2 unmatched and start a third track
    tracks = tr.update(Detections(np.array([[20, 0, 120, 100], [-40, 0, 60, 100]], np.float32),
                                  np.array([0.9, 0.9], np.float32)))
    assert sorted(t.track_id for t in tracks) == [1, 2]


def test_two_rats_each_get_their_own_timeline(two_rats, short_video, tmp_path):
    """Fresh synthetic two-rat video: albino at the back in pain, hooded in front pain-free, passing one another
    twice (one hidden behind the other for a moment). Every scored frame is the right animal's, no minute holds
    the other's frames, and each animal's minutes follow its own pain course."""
    result = runner.invoke(app, ["analyze", str(two_rats), "--out", str(tmp_path), "--animals", "2",
                                 "--animal-names", "rat 7,rat 9", "--quiet"])
    assert result.exit_code == 0, result.output
    run = tmp_path / two_rats.stem
    rows = read_rows(run / "timeline.csv")
    assert list(rows[0])[:len(TIMELINE_COLUMNS) + 1] == ["animal"] + TIMELINE_COLUMNS
    assert [(r["animal"], r["minute"]) for r in rows] == [("rat 7", "0"), ("rat 9", "0"), ("rat 7", "1"),
                                                          ("rat 9", "1")]
    frames = read_rows(run / "frames.csv")
    assert list(frames[0])[:len(FRAME_COLUMNS) + 1] == ["animal"] + FRAME_COLUMNS
    figures = identity_figures(run, two_rats.with_name("two_rats.truth.csv"),
                               two_rats.with_name("two_rats.minutes.csv"), fps=10)
    assert figures["scored_on_a_face"] >= 30
    assert figures["right_animal_share"] == 1.0 and figures["minutes_with_a_wrong_frame"] == 0
    assert set(figures["minute_agreement"].values()) == {1.0}  # the albino's minutes painful, the hooded's not
    assert figures["names"] == {"rat 7": "rat 2", "rat 9": "rat 1"}  # named from left to right at the start
    info = json.loads((run / "run.json").read_text())
    assert info["settings"]["animals"] == 2 and info["totals"]["unidentified_face_frames"] > 0  # the crossings
    # the report shows one timeline per animal; summary.csv has a row per animal
    report = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "report.html")])
    assert report.exit_code == 0, report.output
    page = (tmp_path / "report.html").read_text()
    assert "two_rats · rat 7" in page and "two_rats · rat 9" in page

    # a batch: summary.csv has a row per video and animal
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cage2.mp4").symlink_to(two_rats)
    (tmp_path / "in" / "cage5.mp4").symlink_to(short_video)  # one rat in view: the second animal stays unknown
    batch = runner.invoke(app, ["analyze", str(tmp_path / "in"), "--out", str(tmp_path / "b"), "--animals", "2",
                                "--quiet"])
    assert batch.exit_code == 0, batch.output
    summary = {(r["video"].split("/")[-1], r["animal"]): r for r in read_rows(tmp_path / "b" / "summary.csv")}
    assert sorted(summary) == [("cage2.mp4", "animal 1"), ("cage2.mp4", "animal 2"), ("cage5.mp4", "animal 1"),
                               ("cage5.mp4", "animal 2")]
    assert summary[("cage2.mp4", "animal 2")]["minutes_pain"] == "2"
    assert summary[("cage2.mp4", "animal 1")]["minutes_none"] == "2"
    assert summary[("cage5.mp4", "animal 2")]["minutes_unknown"] == summary[("cage5.mp4", "animal 2")]["minutes"]
    # resuming a run of several animals is refused in one line, and nothing is written
    before = (run / "timeline.csv").read_bytes()
    (run / "run.json").unlink()
    again = runner.invoke(app, ["analyze", str(two_rats), "--out", str(tmp_path), "--animals", "2", "--resume"])
    assert again.exit_code == 2 and "several animals" in again.output
    assert (run / "timeline.csv").read_bytes() == before


def test_one_animal_runs_are_written_as_before(short_video, tmp_path):
    result = runner.invoke(app, ["analyze", str(short_video), "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert list(read_rows(tmp_path / short_video.stem / "timeline.csv")[0])[0] == "minute"
    assert list(read_rows(tmp_path / short_video.stem / "frames.csv")[0])[0] == "frame"


@pytest.mark.parametrize("args", [["--animals", "0"], ["--animals", "7"], ["--animals", "2", "--animal-names", "a,a"],
                                  ["--animals", "2", "--animal-names", "a,b,c"]])
def test_bad_animal_settings_are_one_line_errors(short_video, tmp_path, args):
    result = runner.invoke(app, ["analyze", str(short_video), "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and "animal" in result.output and "Traceback" not in result.output
    from rat_monitor.cli.app import NUMBER_RULES
    from rat_monitor.pipeline import MAX_ANIMALS
    from rat_monitor.synth import MAX_RATS

    assert NUMBER_RULES["animals"][1] == MAX_ANIMALS and NUMBER_RULES["rats"][1] == MAX_RATS  # one range each
