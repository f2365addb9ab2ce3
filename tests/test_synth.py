"""The synthetic generator: files and their agreement, determinism, truth boxes, visible pain."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from typer.testing import CliRunner

from rat_monitor.cli import app
from rat_monitor.errors import ConfigError
from rat_monitor.synth import (Effects, Pose, Scene, Script, VideoSpec, contact_sheet, look_for, parse_schedule,
                               render_frames, write_dataset)
from rat_monitor.synth.face import draw_rat
from helpers import read_rows

runner = CliRunner()


def _ffmpeg_frame_count(path) -> int:
    """Decodes every frame with the ffmpeg binary and reads its frame count."""
    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "info", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True, check=True)
    return int(re.findall(r"frame=\s*(\d+)", proc.stderr)[-1])


def test_synth_cli_writes_video_with_matching_truth(tmp_path):
    result = runner.invoke(app, ["synth", "--minutes", "2", "--seed", "7", "--size", "320x180", "--fps", "5",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    video = tmp_path / "synth_seed7_rat1.mp4"
    expected = 2 * 60 * 5
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == expected
    assert _ffmpeg_frame_count(video) == expected
    truth = read_rows(tmp_path / "synth_seed7_rat1.truth.csv")
    assert [int(r["frame"]) for r in truth] == list(range(expected))
    minutes = read_rows(tmp_path / "synth_seed7_rat1.minutes.csv")
    assert [int(m["minute"]) for m in minutes] == [0, 1]
    assert sum(int(m["frames"]) for m in minutes) == expected
    # the share of sharp visible faces agrees with the per-frame truth
    first = truth[:expected // 2]
    sharp = sum(r["visible"] == "1" and float(r["blur_px"]) < 1 for r in first) / len(first)
    assert float(minutes[0]["face_fraction"]) == pytest.approx(sharp, abs=1e-3)


def test_synth_as_subprocess_and_h264(tmp_path):
    out = tmp_path / "v.mp4"
    proc = subprocess.run([sys.executable, "-m", "rat_monitor.cli", "synth", "--minutes", "0.1", "--size", "160x120",
                           "--fps", "10", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(out)], capture_output=True, text=True)
    assert "h264" in probe.stderr


def test_frames_are_a_pure_function_of_settings():
    spec = VideoSpec(width=320, height=180, fps=10, minutes=0.5, seed=3, subject=2, schedule="surgery")
    first = [(img, t) for img, t in render_frames(spec)]
    again = [(img, t) for img, t in render_frames(spec)]
    for (a, ta), (b, tb) in zip(first, again):
        assert np.array_equal(a, b) and ta == tb
    # any frame on its own, out of order, gives the same state
    script = Script(spec)
    for i in (250, 7, 123):
        _, _, truth = script.state(i)
        assert truth.aus == first[i][1].aus and truth.yaw_deg == first[i][1].yaw_deg
    other = next(iter(render_frames(replace(spec, seed=4))))[0]
    assert not np.array_equal(other, first[0][0])


def test_truth_box_lies_on_the_rendered_face():
    spec = VideoSpec(width=480, height=270, fps=10, minutes=0.5, seed=5, subject=1)
    scene = Scene(spec.width, spec.height, spec.seed)
    checked = 0
    for img, truth in render_frames(spec):
        if not truth.visible or truth.blur_px > 1:
            continue
        x0, y0, x1, y1 = (int(v) for v in truth.box)
        changed = np.abs(img.astype(int) - scene.background.astype(int)).sum(axis=2) > 60
        inside = changed[y0:y1, x0:x1].mean()
        # the drawn face fills most of its truth box
        assert inside > 0.5, (truth.frame, inside)
        checked += 1
    assert checked > 100


def _measure(level: float, part: str) -> np.ndarray:
    """Pixels of one face part (the renderer's own part masks) for a frontal albino face at a pain level."""
    img = np.full((400, 400, 3), 128, np.uint8)
    aus = {"orbital": 0.0, "nose": 0.0, "ears": 0.0, "whiskers": 0.0}
    aus[{"eye": "orbital", "ear": "ears", "whisker": "whiskers"}[part]] = level
    parts = {}
    draw_rat(img, Pose(200, 200, 150, 0.0, 0.0, **aus), look_for(1), parts=parts)
    return np.argwhere(parts[part])  # (row, col)


def test_pain_shows_measurably_in_eyes_ears_and_whiskers():
    # orbital tightening: the eye's visible height shrinks
    eye0, eye2 = _measure(0, "eye"), _measure(2, "eye")
    assert np.ptp(eye2[:, 0]) < 0.35 * np.ptp(eye0[:, 0])
    # ear changes: the right ear rotates outward: its centre moves away from vertical above the head centre
    def ear_angle(px):
        right = px[px[:, 1] > 200].astype(float)
        dy, dx = right.mean(0) - (200, 200)
        return np.degrees(np.arctan2(dx, -dy))  # 0 = straight up
    assert ear_angle(_measure(2, "ear")) - ear_angle(_measure(0, "ear")) > 10
    # whisker change: whiskers pulled back and up, from drooping below the pads to level with them
    def whisker_angle(px):
        right = px[px[:, 1] > 200].astype(float)
        root_row = right[np.argmin(right[:, 1]), 0]
        return np.degrees(np.arctan2((right[:, 0] - root_row).mean(), (right[:, 1] - right[:, 1].min()).mean()))
    assert whisker_angle(_measure(0, "whisker")) - whisker_angle(_measure(2, "whisker")) > 8


def test_schedule_parsing_and_bad_schedules():
    assert parse_schedule("0:0,1:1,2.5:2") == [(0.0, 0), (1.0, 1), (2.5, 2)]
    assert parse_schedule("control") == [(0.0, 0)]
    for bad in ("nonsense", "1:1", "0:3", "0:0,x:1"):
        with pytest.raises(ConfigError):
            parse_schedule(bad)
    result = runner.invoke(app, ["synth", "--schedule", "0:5", "--out", "x.mp4"])
    assert result.exit_code == 2
    assert "schedule" in result.output and "Traceback" not in result.output


def test_events_cover_turns_blur_and_absence():
    spec = VideoSpec(width=320, height=180, fps=10, minutes=3, seed=1, subject=1)
    script = Script(spec)
    truths = [script.state(i)[2] for i in range(spec.n_frames)]
    yaws = np.array([abs(t.yaw_deg) for t in truths])
    blur = np.array([t.blur_px for t in truths])
    assert (yaws > 95).any() and (yaws < 30).any() and ((yaws > 60) & (yaws < 95)).any()
    assert (blur > 3).any() and (blur < 1).mean() > 0.6


def test_dataset_and_contact_sheet(tmp_path):
    manifest = write_dataset(tmp_path / "ds", subjects=2, per_subject=12, seed=3)
    rows = read_rows(manifest)
    assert len(rows) == 24 and {r["subject"] for r in rows} == {"rat01", "rat02"}
    assert set(rows[0]) >= {"path", "subject", "label", "orbital", "nose", "ears", "whiskers"}
    for r in rows:
        img = cv2.imread(str(tmp_path / "ds" / r["path"]))
        assert img is not None and img.shape[:2] == (112, 112)
        assert r["label"] in {"0", "1", "2"}
    sheet = cv2.imread(str(contact_sheet(tmp_path / "sheet.png")))
    assert sheet.shape[0] > 3 * 100 and sheet.shape[1] > 7 * 100


def test_coats_differ_and_subjects_are_consistent():
    assert look_for(5) == look_for(5)
    assert look_for(5) != look_for(6)
    scene = Scene(320, 240, 0)
    pose = Pose(160, 130, 70, 0, 0, 0, 0, 0, 0)
    means = [scene.render([(pose, look_for(1, c))], Effects(), 0)[0][100:160, 130:190].mean()
             for c in ("albino", "dark")]
    assert means[0] - means[1] > 60


def test_faces_look_like_a_camera_sees_them():
    """Fur is texture and shading, not a flat fill; eyes are glossy and red only in albinos; ears are thin
    enough for the background to show through."""
    def render(coat, background):
        img = np.full((400, 400, 3), background, np.uint8)
        parts = {}
        draw_rat(img, Pose(200, 200, 150, 0.0, 0.0, 0, 0, 0, 0), look_for(2, coat), parts=parts)
        return img, parts

    img, parts = render("albino", 128)
    forehead = img[150:170, 185:215].astype(float)  # between the eyes: fur only
    assert forehead.std() > 2.0  # single hairs show
    upper, lower = img[125:140, 170:230].mean(), img[225:240, 170:230].mean()
    assert abs(upper - lower) > 5  # lit from one side: the dome is shaded
    eye = img[parts["eye"]]
    assert eye.max() > 200  # the specular highlight
    b, g, r = np.median(eye, axis=0)
    assert r > b + 60 and r > g + 60  # albino eyes are red
    dark_img, dark_parts = render("dark", 128)
    assert np.median(dark_img[dark_parts["eye"]]).max() < 60  # pigmented eyes are black
    on_black, p1 = render("hooded", 0)
    on_white, p2 = render("hooded", 255)
    ear = p1["ear"] & p2["ear"] & ~p1["eye"]
    assert (on_white[ear].astype(float) - on_black[ear]).mean() > 15  # translucent ears


def test_lab_frames_are_varied_and_boxed():
    from rat_monitor.synth.lab import SETTINGS, lab_frame

    frames = [lab_frame(7, i) for i in range(40)]
    img, boxes = lab_frame(7, 3)
    assert np.array_equal(img, frames[3][0]) and np.array_equal(boxes, frames[3][1])  # deterministic
    assert len({f[0].shape for f in frames}) >= 4  # frame sizes and aspect ratios vary
    counts = [len(b) for _, b in frames]
    assert 0 in counts and max(counts) >= 2  # empty scenes and several rats
    heights = np.concatenate([(b[:, 3] - b[:, 1]) / f.shape[0] for f, b in frames if len(b)])
    assert heights.min() < 0.12 and heights.max() > 0.35  # small faces and faces filling much of the frame
    for f, b in frames:
        h, w = f.shape[:2]
        assert np.all(b[:, 0] < b[:, 2]) and np.all(b[:, 1] < b[:, 3])
        assert np.all(b >= 0) and np.all(b[:, [0, 2]] <= w) and np.all(b[:, [1, 3]] <= h)
    for setting in SETTINGS:
        assert lab_frame(1, 0, setting)[0].ndim == 3


def test_lab_frames_on_real_photographs_add_real_backgrounds_and_negatives():
    """photos=1: every frame outside a reach box lies on a real photograph from an installed package (about a
    third of them without a rat); the photo draws have a random stream of their own, so the rats of a frame
    (and every other draw of the scene) are those it has with photos=0."""
    from rat_monitor.synth.lab import lab_frame
    from rat_monitor.synth.photos import photo_bank, photo_names

    assert len(photo_bank()) >= 10 and all("(" in name for name in photo_names())  # each with its licence
    drawn = [lab_frame(5, i, "open_field") for i in range(30)]
    on_photos = [lab_frame(5, i, "open_field", photos=1.0) for i in range(30)]
    with_rats = [(a[1], b[1]) for a, b in zip(drawn, on_photos) if len(b[1])]
    assert len(with_rats) >= 10 and all(np.array_equal(a, b) for a, b in with_rats)  # the same rats, in place
    changed = sum(not np.array_equal(a[0], b[0]) for a, b in zip(drawn, on_photos))
    empty = sum(len(b) == 0 for _, b in on_photos)
    assert changed == 30 and 4 <= empty <= 18, (changed, empty)


def test_synth_two_rats_cross_with_truth_per_animal(tmp_path):
    """Two rats in one cage: a truth row per animal and frame, each its own coat and pain course; they trade
    places (their faces touch, the one behind hidden for a moment); the one-rat files have no animal column."""
    result = runner.invoke(app, ["synth", "--rats", "2", "--coat", "albino,hooded", "--schedule", "0:2;control",
                                 "--minutes", "1", "--size", "320x180", "--fps", "4", "--seed", "3", "--out",
                                 str(tmp_path)])
    assert result.exit_code == 0, result.output
    truth = read_rows(tmp_path / "synth_seed3_2rats.truth.csv")
    assert len(truth) == 2 * 240 and [r["animal"] for r in truth[:4]] == ["1", "2", "1", "2"]
    by_rat = {a: [r for r in truth if r["animal"] == a] for a in ("1", "2")}
    assert {r["pain_level"] for r in by_rat["1"]} == {"2"} and {r["pain_level"] for r in by_rat["2"]} == {"0"}
    x = {a: np.array([(float(r["x0"]) + float(r["x1"])) / 2 if r["visible"] == "1" else np.nan for r in rows])
         for a, rows in by_rat.items()}
    side = np.sign(x["1"] - x["2"])
    assert {-1.0, 1.0} <= set(side[~np.isnan(side)])  # they trade places
    hidden = [r1["visible"] == "0" and abs(float(r1["yaw_deg"])) < 60 for r1 in by_rat["1"]]
    assert any(hidden)  # the rat at the back, facing the camera, hidden behind the other's head
    minutes = read_rows(tmp_path / "synth_seed3_2rats.minutes.csv")
    assert [(m["animal"], m["pain_level"]) for m in minutes] == [("1", "2"), ("2", "0")]
    bad = runner.invoke(app, ["synth", "--rats", "4", "--out", str(tmp_path / "x.mp4")])
    assert bad.exit_code == 2 and "--rats" in bad.output
    bad = runner.invoke(app, ["synth", "--coat", "albino,hooded", "--out", str(tmp_path / "x.mp4")])
    assert bad.exit_code == 2 and "--rats" in bad.output
