"""The four RGS action units: agreement measures, region features, training with missing labels, model files,
the AU columns of a run (present with an AU model, absent otherwise), resume, the report and the live view."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from rat_monitor.classify import load_classifier
from rat_monitor.classify.action_units import region_features
from rat_monitor.classify.metrics import au_metrics, icc_2_1
from rat_monitor.cli import app
from rat_monitor.data import load_dataset
from rat_monitor.sinks import FRAME_COLUMNS, TIMELINE_COLUMNS
from conftest import rendered
from rat_monitor.types import AU_FIELDS
from helpers import read_rows

runner = CliRunner()


def _rewrite_manifest(src, dst, drop_columns=(), blank=None):
    """A copy of a manifest with some AU columns dropped, or some AU cells blanked (blank(row_index, column))."""
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c not in drop_columns]
    with open(dst, "w", newline="") as f:
        w = csv.DictWriter(f, columns, extrasaction="ignore")
        w.writeheader()
        for i, r in enumerate(rows):
            r["path"] = str((src.parent / r["path"]).resolve())
            if blank:
                for c in ("orbital", "nose", "ears", "whiskers"):
                    if c in r and blank(i, c):
                        r[c] = ""
            w.writerow(r)
    return dst


@pytest.fixture(scope="module")
def au_data(tmp_path_factory):
    """4 synthetic animals x 40 crops with AU labels, and the same crops as a pain-only manifest."""
    root = tmp_path_factory.mktemp("au")
    manifest = rendered("au_data", tmp_path_factory) / "manifest.csv"
    pain_only = _rewrite_manifest(manifest, root / "pain_only.csv", drop_columns=("orbital", "nose", "ears", "whiskers"))
    return manifest, pain_only


@pytest.fixture(scope="module")
def models(au_data, tmp_path_factory):
    """An LBP model trained with AU labels and one trained on pain labels only, through the CLI."""
    manifest, pain_only = au_data
    out = tmp_path_factory.mktemp("models")
    for name, data in (("au", manifest), ("pain", pain_only)):
        result = runner.invoke(app, ["train", "--data", str(data), "--out", str(out / name), "--synthetic"])
        assert result.exit_code == 0, result.output
    return out / "au", out / "pain"


def test_icc_2_1_matches_shrout_and_fleiss():
    # Shrout & Fleiss (1979), table 2: six targets, four judges; ICC(2,1) = 0.29.
    ratings = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    assert icc_2_1(ratings) == pytest.approx(0.29, abs=0.005)
    x = np.random.default_rng(0).uniform(0, 2, 50)
    assert icc_2_1(np.stack([x, x], 1)) == pytest.approx(1.0)
    # absolute agreement: a rater who is consistently 0.8 higher does not agree, though the rank order is perfect
    assert icc_2_1(np.stack([x, x + 0.8], 1)) < 0.75


def test_au_metrics_leave_out_unlabelled_images():
    labels = np.array([[0, 1, 2, np.nan], [1, 1, 2, 0], [2, np.nan, 0, 0], [0, 0, 1, 1]], float)
    scores = np.nan_to_num(labels, nan=2.0) + 0.2  # right everywhere, up to rounding
    m = au_metrics(labels, scores)
    assert m["orbital"]["n"] == 4 and m["nose"]["n"] == 3 and m["whiskers"]["n"] == 3
    assert all(m[a]["accuracy"] == 1.0 and m[a]["qwk"] == pytest.approx(1.0) for a in ("orbital", "nose", "ears"))
    assert m["orbital"]["mae"] == pytest.approx(0.2)
    assert m["rgs"]["n"] == 2  # only images with all four labelled have a true RGS score


def test_region_features_are_the_same_for_a_head_turned_either_way(au_data):
    ds = load_dataset(au_data[0])
    crops = ds.images()[:5]
    feats = region_features(crops)
    mirrored = region_features([c[:, ::-1] for c in crops])
    assert feats.shape[:2] == (5, 4)
    assert np.allclose(feats, mirrored, atol=1e-5)
    assert not np.allclose(feats[0], feats[1])


def test_au_model_round_trip_and_pain_only_model(models, au_data):
    au_dir, pain_dir = models
    card = json.loads((au_dir / "card.json").read_text())
    assert card["action_units"]["names"] == ["orbital", "nose", "ears", "whiskers"]
    assert "action_units.safetensors" in card["files"]
    assert json.loads((pain_dir / "card.json").read_text())["action_units"] is None
    crops = load_dataset(au_data[0]).images()[:12]
    au, pain = load_classifier(au_dir), load_classifier(pain_dir)
    assert au.action_units and not pain.action_units
    preds = au.predict(crops)
    scores = np.array([p.aus for p in preds])
    assert scores.shape == (12, 4) and (scores >= 0).all() and (scores <= 2).all()
    assert preds[0].au_values["rgs"] == pytest.approx(scores[0].mean())
    assert all(p.aus is None and p.au_values is None for p in pain.predict(crops))
    # the pain part of both models saw the same crops and labels: the same pain probabilities
    assert np.allclose([p.probs for p in preds], [p.probs for p in pain.predict(crops)])


def test_evaluate_reports_each_action_unit_and_masks_missing_labels(au_data, tmp_path):
    manifest, pain_only = au_data
    # a third of the nose labels and a few ear labels missing: those cells are left out, the rest counts
    partial = _rewrite_manifest(manifest, tmp_path / "partial.csv",
                                blank=lambda i, c: (c == "nose" and i % 3 == 0) or (c == "ears" and i % 40 == 1))
    result = runner.invoke(app, ["evaluate", "--data", str(partial), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    aus = json.loads((tmp_path / "r.json").read_text())["action_units"]
    assert set(aus) == {"orbital", "nose", "ears", "whiskers", "rgs"}
    assert aus["orbital"]["n"] == 160 and aus["nose"]["n"] == 160 - 54 and aus["ears"]["n"] == 160 - 4
    assert aus["rgs"]["n"] == 160 - 54 - 4 + 1  # images with all four labels (one row lost both)
    for a in (aus[k] for k in ("orbital", "nose", "ears", "whiskers")):
        assert 0.0 <= a["accuracy"] <= 1.0 and -1.0 <= a["qwk"] <= 1.0 and a["mae"] >= 0
    # the images with all four labels give the RGS score's agreement, in the table and per fold
    assert "ICC(2,1)" in result.output and -1.0 <= aus["rgs"]["icc_2_1"] <= 1.0
    assert all("action_units" in f for f in json.loads((tmp_path / "r.json").read_text())["folds"])
    # pain-only data gives no AU section at all
    result = runner.invoke(app, ["evaluate", "--data", str(pain_only), "--json", str(tmp_path / "p.json")])
    assert result.exit_code == 0, result.output
    assert "action_units" not in json.loads((tmp_path / "p.json").read_text())
    # an AU column with no labels at all cannot be learnt: one clear line, not a model with a blind head
    no_ears = _rewrite_manifest(manifest, tmp_path / "no_ears.csv", drop_columns=("ears",))
    result = runner.invoke(app, ["evaluate", "--data", str(no_ears)])
    assert result.exit_code == 5 and "'ears'" in result.output and "drop the AU columns" in result.output


def test_run_columns_present_with_an_au_model_and_absent_without(models, two_minute_video, short_video, tmp_path):
    au_dir, pain_dir = models
    # two minutes with the AU model (per-minute means to check); the columns alone with the pain-only one
    for name, model, video in (("au", au_dir, two_minute_video), ("pain", pain_dir, short_video)):
        result = runner.invoke(app, ["analyze", str(video), "--out", str(tmp_path / name), "--model", str(model),
                                     "--quiet"])
        assert result.exit_code == 0, result.output
    au_run, pain_run = tmp_path / "au" / two_minute_video.stem, tmp_path / "pain" / short_video.stem
    frames, minutes = read_rows(au_run / "frames.csv"), read_rows(au_run / "timeline.csv")
    assert list(frames[0]) == FRAME_COLUMNS + list(AU_FIELDS)
    assert list(minutes[0]) == TIMELINE_COLUMNS + list(AU_FIELDS)
    accepted = [f for f in frames if f["refused"] == "0"]  # a small model may refuse some crops of a new video
    assert accepted
    assert all(f[k] == "" for f in frames if f["refused"] == "1" for k in AU_FIELDS)  # refused: never a score
    for f in accepted:
        values = [float(f[k]) for k in AU_FIELDS]
        assert all(0.0 <= v <= 2.0 for v in values)
        assert values[-1] == pytest.approx(np.mean(values[:-1]), abs=2e-3)  # rgs = mean of the four
    for m in minutes:  # per-minute means of the minute's scored (accepted) frames
        mine = [f for f in accepted if int(float(f["t_s"]) // 60) == int(m["minute"])]
        assert float(m["rgs"]) == pytest.approx(np.mean([float(f["rgs"]) for f in mine]), abs=2e-3)
    assert list(read_rows(pain_run / "frames.csv")[0]) == FRAME_COLUMNS
    assert list(read_rows(pain_run / "timeline.csv")[0]) == TIMELINE_COLUMNS


def test_unknown_minutes_have_empty_au_cells_not_zeros(tmp_path):
    from rat_monitor.sinks.files import timeline_row
    from rat_monitor.types import MinuteSummary

    row = timeline_row(MinuteSummary(minute=3, start_s=180, end_s=240, frames=900), action_units=True)
    assert row[-len(AU_FIELDS):] == [""] * len(AU_FIELDS)


def test_resume_with_another_kind_of_model_is_refused_and_keeps_the_run(models, short_video, tmp_path):
    au_dir, pain_dir = models
    out = tmp_path / "runs"
    result = runner.invoke(app, ["analyze", str(short_video), "--out", str(out), "--model", str(au_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    run = out / short_video.stem
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "complete": False}))  # as if interrupted
    before = {f: (run / f).read_bytes() for f in ("timeline.csv", "frames.csv")}
    result = runner.invoke(app, ["analyze", str(short_video), "--out", str(out), "--model", str(pain_dir), "--resume",
                                 "--quiet"])
    assert result.exit_code == 2
    assert "action-unit" in result.output and len(result.output.strip().splitlines()) == 1
    assert {f: (run / f).read_bytes() for f in before} == before


def test_report_and_terminal_table_show_the_action_units(models, short_video, tmp_path):
    au_dir, pain_dir = models
    for name, model in (("au", au_dir), ("pain", pain_dir)):
        result = runner.invoke(app, ["analyze", str(short_video), "--out", str(tmp_path / name), "--model", str(model)])
        assert result.exit_code == 0, result.output
        assert ("RGS" in result.output) == (name == "au")  # the per-minute table printed after the video
        # how far each model was checked, under the table (trained without --loso: not validated by animal)
        said = " ".join(result.output.split())
        assert "Model 'rat-face-detector': detector not checked on your camera" in said
        assert f"Model '{name}': pain model NOT validated by animal" in said
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(tmp_path / "au" / short_video.stem),
                                 str(tmp_path / "pain" / short_video.stem), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.count('id="au-note-') == 1  # the AU panel belongs to the AU run only
    assert "<th>RGS</th>" in page and "not scored by this model" in page
