"""Unknown when unfamiliar: real faces are refused by the synthetic model, its own kind of faces are accepted,
refused crops never become a score (frames, minutes, report), and `predict` scores face images directly."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from conftest import REAL
from helpers import read_rows
from rat_monitor.classify import load_classifier
from rat_monitor.classify.base import safe_load_tensors
from rat_monitor.classify.familiarity import FILE, fit_grouped
from rat_monitor.cli import app
from rat_monitor.data import load_dataset
from rat_monitor.detect.train import yolo_samples
from rat_monitor.imaging import square_crop
from rat_monitor.models import DEFAULT_CLASSIFIER, models_dir, read_card, write_card
from rat_monitor.synth import write_dataset
from rat_monitor.timeline import Timeline
from rat_monitor.types import Candidate, Prediction, Quality, ScoredFrame

runner = CliRunner()
# The mouse's head in the real side-view clip (ear tip to nose and chin), drawn by eye on frame 10; the animal is
# head-fixed, so the box holds for the whole clip.
MOUSE_FACE = (35, 80, 200, 190)


@pytest.fixture(scope="module")
def bundled():
    return load_classifier(DEFAULT_CLASSIFIER)


@pytest.fixture(scope="module")
def fresh_crops(tmp_path_factory):
    """Synthetic crops the bundled model never saw (a new seed), as `synth --dataset` writes them."""
    root = tmp_path_factory.mktemp("fresh")
    write_dataset(root, subjects=3, per_subject=40, seed=31)
    return load_dataset(root).images()


def refused_share(clf, crops) -> float:
    return float(np.mean([p.refused for p in clf.predict(crops)]))


def test_bundled_model_accepts_fresh_synthetic_faces(bundled, fresh_crops):
    preds = bundled.predict(fresh_crops)
    assert bundled.familiarity is not None
    assert np.mean([p.refused for p in preds]) <= 0.05
    assert all(0.0 <= p.familiarity <= 1.0 for p in preds)


def real_rat_crops() -> list[np.ndarray]:
    if not (REAL / "reachbox").is_dir():
        pytest.skip("../shared/real is not present")
    return [square_crop(s.image, box) for s in yolo_samples(REAL / "reachbox") for box in s.boxes]


def test_bundled_model_refuses_real_rat_faces(bundled):
    crops = real_rat_crops()
    assert len(crops) == 14
    assert refused_share(bundled, crops) >= 0.9


def test_bundled_model_refuses_the_real_mouse_face(bundled, real_mouse_video):
    cap = cv2.VideoCapture(str(real_mouse_video))
    crops = []
    while (frame := cap.read()[1]) is not None:
        crops.append(square_crop(frame, MOUSE_FACE))
    assert len(crops) == 120
    assert refused_share(bundled, crops) >= 0.9


def test_familiarity_needs_two_animals_to_calibrate():
    feats = np.random.default_rng(0).normal(size=(30, 8))
    fam, why = fit_grouped(feats, np.array(["rat1"] * 30))
    assert fam is None and "two animals" in why
    fam, why = fit_grouped(feats, np.repeat(["rat1", "rat2", "rat3"], 10))
    assert fam is not None and "3 training animals" in why
    far = fam.score(feats[:3] + 50.0)  # far from every training face
    assert (far == 0).all() and fam.refused(far).all()


def scored(t_s: float, p_pain: float, refused: bool = False) -> ScoredFrame:
    q = Quality(1.0, 0.0, 1.0, 80.0, 1.0, 1.0, 0.9)
    c = Candidate(int(t_s * 10), t_s, 1, np.zeros(4), np.zeros((8, 8, 3), np.uint8), q)
    return ScoredFrame(c, Prediction(np.array([1 - p_pain, p_pain, 0.0]), "m", True,
                                     familiarity=0.0 if refused else 0.5, refused=refused))


def test_refused_crops_never_count_and_an_all_refused_minute_is_unfamiliar():
    tl = Timeline()
    tl.add_scored([scored(5, 0.95, refused=True), scored(15, 0.95, refused=True)])  # minute 0: only refused
    tl.add_scored([scored(65, 0.1), scored(70, 0.95, refused=True)])  # minute 1: one kept, one refused
    rows = []
    for t in np.arange(0, 120, 1.0):
        rows += tl.add_frame(float(t), True)
    rows += tl.finish()
    m0, m1 = rows
    assert (m0.pain_level, m0.status, m0.pain_prob, m0.scored_frames, m0.refused_frames) == (
        "unknown", "unfamiliar", None, 0, 2)
    assert m0.pain_prob_smoothed is None and m0.alert == 0
    assert (m1.status, m1.scored_frames, m1.refused_frames) == ("ok", 1, 1)
    assert m1.pain_prob == pytest.approx(0.1) and m1.pain_level == "none"


@pytest.fixture(scope="module")
def refusing_model(tmp_path_factory):
    """The bundled classifier with its familiarity floor raised above 1: every face is refused, as a model trained
    on another camera would refuse this one's."""
    folder = tmp_path_factory.mktemp("models") / "refuses-all"
    shutil.copytree(models_dir() / DEFAULT_CLASSIFIER, folder)
    tensors = safe_load_tensors(folder / FILE)
    tensors["refuse_below"] = np.array([1.01])
    save_file(tensors, str(folder / FILE))
    card = read_card(folder)
    card["name"] = folder.name
    write_card(folder, card, list(card["files"]))
    return folder


def test_run_with_every_face_refused_is_unknown_and_says_what_to_do(short_video, refusing_model, tmp_path):
    out = tmp_path / "runs"
    result = runner.invoke(app, ["analyze", str(short_video), "--out", str(out), "--model", str(refusing_model)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "were refused as unlike the model's training faces" in said
    assert "rat-monitor label VIDEO --project my_camera/" in said and "rat-monitor label train my_camera/" in said
    assert "does not know this camera" not in said  # the detector knows the synthetic camera: only the model is new
    frames = read_rows(out / "short" / "frames.csv")
    assert frames and all(f["refused"] == "1" and f["pain_prob"] == "" and f["p_none"] == "" and f["rgs"] == ""
                          for f in frames)
    timeline = read_rows(out / "short" / "timeline.csv")
    assert all(r["pain_level"] == "unknown" and r["pain_prob"] == "" and r["alert"] == "0" for r in timeline)
    assert [r["status"] for r in timeline] == ["unfamiliar"] and timeline[0]["refused_frames"] == str(len(frames))
    info = json.loads((out / "short" / "run.json").read_text())
    assert info["models"]["classifier"]["familiarity"]["checked"] is True
    assert info["totals"]["refused_frames"] == len(frames) and info["totals"]["scored_frames"] == 0

    report = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(out / "short"), "--out", str(report)])
    assert result.exit_code == 0, result.output
    page = report.read_text()
    assert 'id="refused-1"' in page and 'id="refused-advice-1"' in page
    assert page.count('alt="refused crop') == len(frames) and 'alt="face crop' not in page


def test_an_older_model_without_familiarity_still_loads_and_says_so(short_video, tmp_path):
    folder = tmp_path / "old-model"
    shutil.copytree(models_dir() / DEFAULT_CLASSIFIER, folder)
    (folder / FILE).unlink()
    card = read_card(folder)
    del card["familiarity"]
    write_card(folder, card, [f for f in card["files"] if f != FILE])
    clf = load_classifier(folder)
    pred = clf.predict([np.full((64, 64, 3), 128, np.uint8)])[0]
    assert clf.familiarity is None and pred.familiarity is None and not pred.refused
    result = runner.invoke(app, ["analyze", str(short_video), "--out", str(tmp_path / "runs"), "--model", str(folder),
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "runs" / "short" / "run.json").read_text())
    assert info["models"]["classifier"]["familiarity"]["checked"] is False
    assert {f["refused"] for f in read_rows(tmp_path / "runs" / "short" / "frames.csv")} == {"0"}


def test_predict_scores_a_folder_and_lists_a_bad_file(fresh_crops, tmp_path):
    folder = tmp_path / "crops"
    (folder / "sub").mkdir(parents=True)
    for i, crop in enumerate(fresh_crops[:3]):
        cv2.imwrite(str(folder / "sub" / f"face{i}.jpg"), crop)
    (folder / "broken.jpg").write_text("not a picture")
    noise = np.random.default_rng(1).integers(0, 256, (96, 96, 3), dtype=np.uint8)  # not a face at all
    cv2.imwrite(str(folder / "noise.png"), noise)
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["predict", str(folder), str(tmp_path / "missing.jpg"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in read_rows(out)}
    assert list(read_rows(out)[0])[:7] == ["path", "refused", "familiarity", "pain_prob", "p_none", "p_moderate",
                                           "p_severe"]
    assert set(rows) == {"broken.jpg", "noise.png", "face0.jpg", "face1.jpg", "face2.jpg", "missing.jpg"}
    assert rows["broken.jpg"]["error"] == "not a readable image" and rows["broken.jpg"]["pain_prob"] == ""
    assert rows["missing.jpg"]["error"] == "no such file"
    assert rows["noise.png"]["refused"] == "1" and rows["noise.png"]["pain_prob"] == ""
    for i in range(3):
        r = rows[f"face{i}.jpg"]
        assert r["refused"] == "0" and 0 <= float(r["pain_prob"]) <= 1 and r["rgs"] != "" and r["error"] == ""
    assert "1 refused as unfamiliar, 2 unreadable" in result.output

    again = runner.invoke(app, ["predict", str(folder / "broken.jpg"), "--out", str(tmp_path / "none.csv")])
    assert again.exit_code == 3 and "could be read" in again.output


def test_predict_on_whole_frames_finds_or_cuts_the_faces_one_row_each(tmp_path):
    """Whole frames given as crops are refused with a pointer to --detect; --detect gives one row per face found
    with its box (a frame without a face says so); --yolo cuts the labelled boxes."""
    from rat_monitor.synth.lab import lab_frame

    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    labelled, without = 0, 1  # the grey frame below has no face
    for i in range(3):
        img, boxes = lab_frame(5, i, "reach_box")
        h, w = img.shape[:2]
        cv2.imwrite(str(yolo / "images" / f"f{i}.png"), img)
        (yolo / "labels" / f"f{i}.txt").write_text("".join(
            f"0 {(b[0] + b[2]) / 2 / w} {(b[1] + b[3]) / 2 / h} {(b[2] - b[0]) / w} {(b[3] - b[1]) / h}\n" for b in boxes))
        labelled, without = labelled + len(boxes), without + (len(boxes) == 0)
    cv2.imwrite(str(yolo / "images" / "empty.png"), np.full((360, 640, 3), 90, np.uint8))
    as_crops = runner.invoke(app, ["predict", str(yolo / "images"), "--out", str(tmp_path / "crops.csv")])
    assert as_crops.exit_code == 0 and "--detect" in as_crops.output, as_crops.output
    found = runner.invoke(app, ["predict", str(yolo / "images"), "--detect", "--out", str(tmp_path / "found.csv")])
    assert found.exit_code == 0, found.output
    rows = read_rows(tmp_path / "found.csv")
    assert list(rows[0])[:5] == ["path", "x0", "y0", "x1", "y1"]
    empty = [r for r in rows if r["path"].endswith("empty.png")]
    assert len(empty) == 1 and empty[0]["error"] == "no face found" and empty[0]["x0"] == ""
    faces = [r for r in rows if r["error"] == ""]
    assert len(faces) >= 1 and all(float(r["x1"]) > float(r["x0"]) for r in faces)
    assert "frame(s) without a face" in found.output
    cut = runner.invoke(app, ["predict", "--yolo", str(yolo), "--out", str(tmp_path / "cut.csv")])
    assert cut.exit_code == 0, cut.output
    rows = read_rows(tmp_path / "cut.csv")
    assert sum(r["error"] == "" for r in rows) == labelled > 0
    assert sum(r["error"] == "no labelled face" for r in rows) == without
    both = runner.invoke(app, ["predict", str(yolo / "images"), "--yolo", str(yolo), "--out", str(tmp_path / "x.csv")])
    assert both.exit_code == 2 and not (tmp_path / "x.csv").exists()


def test_a_model_of_one_animal_says_why_it_cannot_refuse(tmp_path):
    write_dataset(tmp_path / "one", subjects=1, per_subject=30, seed=5)
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "one"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # as read, whatever the terminal's line breaks
    assert "needs faces of at least two animals" in said and "will score any crop" in said
    card = read_card(tmp_path / "m")
    assert "two animals" in card["familiarity"]["why_not"] and FILE not in card["files"]
    clf = load_classifier(tmp_path / "m")
    assert clf.familiarity is None and not any(p.refused for p in clf.predict([np.zeros((64, 64, 3), np.uint8)]))
