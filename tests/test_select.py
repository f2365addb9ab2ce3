"""Frame selection against synthetic truth, the curation export (blind and not), and real-footage ranking."""

from __future__ import annotations

import csv
from collections import defaultdict

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from rat_monitor.cli import app
from rat_monitor.curate import parse_duration, select_from_video
from rat_monitor.detect import load_detector
from rat_monitor.errors import ConfigError
from rat_monitor.models import DEFAULT_DETECTOR
from rat_monitor.pipeline import Settings
from rat_monitor.select import QualityScorer, SelectionSettings, sharpness
from conftest import rendered
from rat_monitor.types import FaceTrack
from helpers import read_rows

runner = CliRunner()


@pytest.fixture(scope="module")
def busy_video(tmp_path_factory):
    return rendered("busy_video", tmp_path_factory)


def test_selected_frames_are_sharp_visible_faces_and_cover_the_windows(busy_video):
    truth = {int(r["frame"]): r for r in read_rows(busy_video.with_name("busy.truth.csv"))}
    settings = Settings(selection=SelectionSettings(window_s=10, per_window=3))
    chosen = select_from_video(busy_video, load_detector(DEFAULT_DETECTOR), settings)
    assert chosen
    sharp = np.mean([float(truth[c.frame]["blur_px"]) < 1 for c in chosen])
    visible = np.mean([truth[c.frame]["visible"] == "1" for c in chosen])
    windows = defaultdict(bool)
    for r in truth.values():
        windows[int(float(r["t_s"]) // 10)] |= r["visible"] == "1" and float(r["blur_px"]) < 1
    with_face = [w for w, ok in windows.items() if ok]
    covered = np.mean([any(int(c.t_s // 10) == w for c in chosen) for w in with_face])
    assert sharp >= 0.95 and visible == 1.0 and covered >= 0.9, (sharp, visible, covered)
    per_window = defaultdict(list)
    for c in chosen:
        per_window[int(c.t_s // 10)].append(c.t_s)
    for times in per_window.values():  # at most k per window, no near-duplicates
        assert len(times) <= 3 and all(b - a >= 1.0 for a, b in zip(times, times[1:]))


def test_a_window_whose_best_face_is_blurred_scores_nothing():
    """Sharp faces for half a minute, then a window where the camera or the animal blurred every face: that
    window gives no frame to score (an honest gap), and sharp faces after it are taken again."""
    from rat_monitor.select import WindowSelector
    from rat_monitor.types import Candidate, Quality

    def candidate(t, sharp, score):
        q = Quality(sharpness=sharp, motion=0.0, confidence=0.9, size_px=80, pose_weight=1.0, exposure=1.0,
                    score=score)
        return Candidate(int(t * 10), t, 1, np.zeros(4, np.float32), np.zeros((4, 4, 3), np.uint8), q)

    selector = WindowSelector(SelectionSettings(window_s=10, per_window=3))
    chosen = []
    for step in range(400):
        t = step / 10
        chosen += selector.advance(t)
        blurred = 30 <= t < 40
        # the blurred faces score higher on every other count: only the blur rule can leave them out
        selector.add([candidate(t, 0.5 if blurred else 1.6 + 0.1 * np.sin(step), 0.9 if blurred else 0.6)])
    chosen += selector.flush()
    by_window = defaultdict(int)
    for c in chosen:
        by_window[int(c.t_s // 10)] += 1
    assert by_window[3] == 0 and all(by_window[w] == 3 for w in (0, 1, 2)), dict(by_window)


def test_a_box_that_never_moves_or_changes_is_a_fixture_not_a_face():
    """Two boxes that stay put for two minutes: one with nothing changing inside (a pellet the detector took
    for a face) stops being offered for scoring after a minute; the other blinks now and then (a head-fixed
    animal) and is offered throughout."""
    from rat_monitor.select import FixtureFilter
    from rat_monitor.types import Candidate, Quality

    def candidate(track, t, motion):
        q = Quality(sharpness=1.5, motion=motion, confidence=0.9, size_px=80, pose_weight=1.0, exposure=1.0,
                    score=0.8)
        box = np.array([100, 100, 180, 180], np.float32) + 0.5 * np.sin(t)  # jitter of the detector's box
        return Candidate(int(t * 10), t, track, box, np.zeros((4, 4, 3), np.uint8), q)

    fixtures = FixtureFilter()
    kept = defaultdict(list)
    for step in range(1200):
        t = step / 10
        blink = 0.04 if step % 150 == 0 else 0.003
        for c in fixtures.keep([candidate(1, t, 0.003), candidate(2, t, blink)]):
            kept[c.track_id].append(c.t_s)
    assert max(kept[1]) < 60 and len(kept[2]) == 1200
    assert fixtures.fixtures == {1}


def test_sharpness_falls_with_blur_and_ignores_contrast():
    rng = np.random.default_rng(0)
    face = cv2.resize(rng.integers(0, 255, (24, 24), dtype=np.uint8), (96, 96), interpolation=cv2.INTER_LINEAR)
    blurred = cv2.GaussianBlur(face, (0, 0), 2)
    assert sharpness(blurred) < 0.5 * sharpness(face)
    dim = (face.astype(np.float32) * 0.5 + 40).astype(np.uint8)
    assert sharpness(dim) == pytest.approx(sharpness(face), rel=0.25)


def test_blind_export_and_key_restore_the_mapping(short_video, tmp_path):
    plain = runner.invoke(app, ["curate", str(short_video), "--out", str(tmp_path / "plain"), "--every", "10s"])
    assert plain.exit_code == 0, plain.output
    blind = runner.invoke(app, ["curate", str(short_video), "--out", str(tmp_path / "blind"), "--every", "10s",
                                "--blind"])
    assert blind.exit_code == 0, blind.output
    manifest = read_rows(tmp_path / "blind" / "manifest.csv")
    assert set(manifest[0]) == {"path", "subject", "label", "orbital", "nose", "ears", "whiskers"}
    assert all(r["subject"] == "" and "short" not in r["path"] for r in manifest)  # nothing reveals time or source
    # annotators fill in labels; the key restores everything else
    for i, r in enumerate(manifest):
        r["label"] = str(i % 3)
    with open(tmp_path / "blind" / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(manifest[0]))
        w.writeheader()
        w.writerows(manifest)
    result = runner.invoke(app, ["curate", "--unblind", "--out", str(tmp_path / "blind")])
    assert result.exit_code == 0, result.output
    restored = read_rows(tmp_path / "blind" / "manifest_unblinded.csv")
    original = read_rows(tmp_path / "plain" / "manifest.csv")
    key = lambda r: (r["source"], r["frame"], r["x0"], r["y0"], r["x1"], r["y1"])  # noqa: E731
    assert sorted(map(key, restored)) == sorted(map(key, original))
    labels = {r["path"]: r["label"] for r in manifest}
    assert all(r["label"] == labels[r["path"]] and r["subject"] == "short" for r in restored)
    # the plain export is a dataset once labelled; its contact sheet is there for people
    assert cv2.imread(str(tmp_path / "plain" / "contact_sheet.png")) is not None
    for r in original:
        assert cv2.imread(str(tmp_path / "plain" / r["path"])) is not None


def test_durations():
    assert parse_duration("30s") == 30 and parse_duration("2m") == 120 and parse_duration("45") == 45
    for nonsense in ("soon", "nans", "inf", "-5s", "0m", "1e9s"):  # float() takes the middle four
        with pytest.raises(ConfigError, match="bad duration"):
            parse_duration(nonsense)


def test_real_footage_frames_around_the_stimulus_rank_lowest(real_mouse_video):
    """Head-fixed mouse: the face box is fixed (hand-drawn); the tail shock at about frame 60 moves the head."""
    cap = cv2.VideoCapture(str(real_mouse_video))
    scorer = QualityScorer()
    box = np.array([38, 82, 215, 188], np.float32)
    scores = []
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        (cand,) = scorer.score(img, [FaceTrack(1, box, 1.0, "profile", True, i)], i, i / 20)
        scores.append(cand.quality.score)
        i += 1
    scores = np.array(scores)
    lowest = int(np.argmin(scores))
    assert 58 <= lowest <= 66, lowest
    assert scores[58:70].mean() < scores[np.r_[1:55]].mean()


def test_curation_round_trip_runs_the_commands_it_prints(short_video, tmp_path):
    """curate --blind -> label -> the printed unblind and train commands, as written; the animal comes from the
    path, so two days of one rat stay one animal."""
    import shlex
    import shutil

    videos = []
    for name in ("rat1/day1.mp4", "rat1/day2.mp4", "rat2/day1.mp4"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        videos.append(shutil.copy(short_video, tmp_path / name))
    out = tmp_path / "to_label"
    result = runner.invoke(app, ["curate", *map(str, videos), "--out", str(out), "--every", "10s", "--blind",
                                 "--subject-from", r"(rat\d+)"])
    assert result.exit_code == 0, result.output
    assert "of 2 animal(s) (rat1, rat2)" in result.output
    manifest = read_rows(out / "manifest.csv")
    for i, r in enumerate(manifest):  # the annotators' labels
        r["label"] = str(i % 2)
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(manifest[0]))
        w.writeheader()
        w.writerows(manifest)
    printed = " ".join(result.output.split()).split("then: ", 1)[1]
    for command in printed.split("&&"):
        args = shlex.split(command.replace("MODEL_FOLDER", str(tmp_path / "model")))
        assert args[0] == "rat-monitor"
        step = runner.invoke(app, args[1:])
        assert step.exit_code == 0, (command, step.output)
    restored = read_rows(out / "manifest_unblinded.csv")
    assert {r["subject"] for r in restored} == {"rat1", "rat2"}
    assert (tmp_path / "model" / "card.json").exists()
    bad = runner.invoke(app, ["curate", str(videos[0]), "--out", str(tmp_path / "x"), "--subject-from", "(mouse)"])
    assert bad.exit_code == 2 and "does not match" in bad.output


def test_a_face_crop_past_the_frame_edge_repeats_the_edge_pixels():
    """Faces at the frame's edge (and a predicted box that drifted out of it) are cropped as if the frame went on
    with its edge pixels: the same crop as padding the whole frame, which cost 0.4 ms at 1080p."""
    from rat_monitor.imaging import CROP_MARGIN, square_crop

    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    pad = 400
    padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    for _ in range(500):
        x0, y0 = rng.uniform(-250, 300, 2)
        w, h = rng.uniform(1, 120, 2)
        crop = square_crop(frame, [x0, y0, x0 + w, y0 + h])
        side = max(w, h, 2.0) * (1 + CROP_MARGIN)
        cx, cy = x0 + w / 2, y0 + h / 2
        a0, b0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        a1, b1 = max(a0 + 1, int(round(cx + side / 2))), max(b0 + 1, int(round(cy + side / 2)))
        assert np.array_equal(crop, padded[b0 + pad:b1 + pad, a0 + pad:a1 + pad])
