"""Pain classifiers and datasets: estimator conventions, LOSO without leakage, safe model files."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from typer.testing import CliRunner

from rat_monitor.classify import load_classifier
from rat_monitor.classify import lbp_svm
from rat_monitor.classify.base import Fitted
from rat_monitor.classify.evaluate import Trainer, evaluate_loso
from rat_monitor.classify.features import lbp_codes, uniform_table
from rat_monitor.classify.svm import LbpFeatures, LbpSvmClassifier, SvmArrays
from rat_monitor.cli import app
from rat_monitor.data import load_dataset, loso_splits
from rat_monitor.errors import DatasetError, ModelError
from rat_monitor.models import write_card
from conftest import rendered
from helpers import PicklePayload, run_python

runner = CliRunner()


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """4 synthetic animals x 60 crops, with action-unit labels."""
    return load_dataset(rendered("small_dataset", tmp_path_factory))


@pytest.fixture(scope="module")
def fitted(small_dataset):
    imgs = small_dataset.images()
    y = small_dataset.targets("binary")
    est = LbpSvmClassifier(C_grid=(1.0, 10.0), gamma_scale=(1.0,)).fit(imgs, y, groups=small_dataset.subjects)
    return est, imgs, y


def test_uniform_lbp_table_and_codes():
    table = uniform_table()
    assert len(set(table[table < 58])) == 58 and table.max() == 58
    flat = np.full((1, 5, 5), 100, np.uint8)
    assert (lbp_codes(flat, 1) == table[255]).all()  # all neighbours >= centre
    spot = flat.copy()
    spot[0, 2, 2] = 200  # a bright spot: no neighbour >= centre
    assert lbp_codes(spot, 1)[0, 1, 1] == table[0]


def test_estimator_conventions(fitted, small_dataset):
    est, imgs, y = fitted
    params = est.get_params()
    assert clone(est).get_params() == params
    proba = est.predict_proba(imgs[:10])
    assert proba.shape == (10, 2) and np.allclose(proba.sum(1), 1)
    assert set(est.predict(imgs[:10])) <= set(est.classes_)
    # usable in Pipeline and GridSearchCV (features precomputed by a transformer step)
    feats = LbpFeatures().transform(imgs)
    pipe = Pipeline([("lbp", LbpFeatures()), ("clf", LbpSvmClassifier(C_grid=(1.0,), gamma_scale=(1.0,)))])
    pipe.fit(imgs, y)
    assert pipe.score(imgs, y) > 0.8
    search = GridSearchCV(LbpSvmClassifier(C_grid=(1.0,)), {"gamma_scale": [(0.5,), (1.0,)]},
                          cv=GroupKFold(2), scoring="f1_macro")
    search.fit(feats, y, groups=small_dataset.subjects)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 2 and np.isfinite(scores).all() and search.best_score_ > 0.6  # a real, grouped search


def test_numpy_svm_matches_libsvm():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 12))
    for y in ((X[:, 0] > 0).astype(int), np.digitize(X[:, 0], [-0.5, 0.5])):
        pipe = Pipeline([("scale", StandardScaler()), ("svm", SVC(gamma=0.1, decision_function_shape="ovo"))])
        pipe.fit(X, y)
        mine = SvmArrays.from_sklearn(pipe).decision_pairs(X)
        theirs = pipe.decision_function(X).reshape(len(X), -1)
        sign = -1 if len(np.unique(y)) == 2 else 1  # scikit-learn flips the binary sign
        assert np.allclose(mine, sign * theirs, atol=1e-4)


def test_save_load_round_trip_gives_identical_predictions(fitted, tmp_path):
    est, imgs, _ = fitted
    lbp_svm.save(Fitted(est), tmp_path / "m", "binary", {"description": "test", "synthetic": True})
    loaded = load_classifier(tmp_path / "m")
    preds = loaded.predict(imgs[:20])
    direct = est.predict_proba(imgs[:20])
    assert np.allclose([p.probs[0] for p in preds], direct[:, 0], atol=1e-12)
    assert loaded.binary and preds[0].model == "m"
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["synthetic"] and "synthetic" in card["caveat"] and len(card["files"]["svm.safetensors"]) == 64


def test_pickle_disguised_as_model_is_refused_and_never_runs(fitted, tmp_path):
    est, imgs, _ = fitted
    folder = tmp_path / "evil"
    lbp_svm.save(Fitted(est), folder, "binary", {"description": "test"})
    marker = tmp_path / "pwned"
    (folder / "svm.safetensors").write_bytes(pickle.dumps(PicklePayload(str(marker))))
    card = json.loads((folder / "card.json").read_text())
    write_card(folder, card, ["svm.safetensors"])  # even with a matching sha256 in the card
    with pytest.raises(ModelError, match="not a valid safetensors"):
        load_classifier(folder)
    assert not marker.exists()


def test_tampered_model_is_refused(fitted, tmp_path):
    est, _, _ = fitted
    folder = tmp_path / "m"
    lbp_svm.save(Fitted(est), folder, "binary", {"description": "test"})
    data = bytearray((folder / "svm.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "svm.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its card"):
        load_classifier(folder)
    result = runner.invoke(app, ["analyze", "x.mp4", "--model", "no-such-model"])
    assert result.exit_code != 0


def test_loso_never_shares_an_animal(small_dataset, monkeypatch):
    seen = []
    original = Trainer.fit

    def spy(self, idx, y, groups):
        seen.append(set(groups[idx]))
        return original(self, idx, y, groups)

    monkeypatch.setattr(Trainer, "fit", spy)
    pain_only = dataclasses.replace(small_dataset, aus=None)  # the folds are the point, not the AU heads (faster)
    result = evaluate_loso(pain_only, "lbp-svm", "binary")
    assert [f["subject"] for f in result["folds"]] == ["rat01", "rat02", "rat03", "rat04"]
    for fold, train_subjects in zip(result["folds"], seen):
        assert fold["subject"] not in train_subjects and len(train_subjects) == 3
    for s, train, test in loso_splits(small_dataset.subjects):
        assert not set(small_dataset.subjects[train]) & set(small_dataset.subjects[test])
    assert set(result["pooled"]) >= {"accuracy", "macro_f1", "pain_f1", "confusion"}
    assert result["pooled"]["macro_f1"] > 0.7  # far above chance (0.5) even on 40 crops per animal


def test_three_class_task_and_its_round_trip(small_dataset, tmp_path):
    imgs = small_dataset.images()
    y = small_dataset.targets("3class")
    est = LbpSvmClassifier(C_grid=(10.0,), gamma_scale=(1.0,), components=32).fit(imgs, y,
                                                                                  groups=small_dataset.subjects)
    proba = est.predict_proba(imgs)
    assert proba.shape == (len(imgs), 3) and np.allclose(proba.sum(1), 1)
    # a 3-class calibration is a Fortran-ordered matrix: it must not come back transposed
    lbp_svm.save(Fitted(est), tmp_path / "m3", "3class", {"description": "test"})
    loaded = load_classifier(tmp_path / "m3")
    assert np.allclose([p.probs for p in loaded.predict(imgs)], proba, atol=1e-12)


def test_dataset_readers_and_errors(tmp_path, small_dataset):
    # folder layout ROOT/<subject>/<label>/
    for i, (p, s, lab) in enumerate(zip(small_dataset.paths[:12], small_dataset.subjects, small_dataset.labels)):
        d = tmp_path / "tree" / s / ("none", "moderate", "severe")[lab]
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i}.jpg").write_bytes(p.read_bytes())
    tree = load_dataset(tmp_path / "tree")
    assert len(tree) == 12 and tree.aus is None
    assert small_dataset.aus is not None and small_dataset.aus.shape == (len(small_dataset), 4)

    def manifest(text):
        f = tmp_path / "m.csv"
        f.write_text(text)
        return f

    img = small_dataset.paths[0]
    with pytest.raises(DatasetError, match="lacks column"):
        load_dataset(manifest("path,label\nx.jpg,0\n"))
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(manifest("path,subject,label\nmissing.jpg,r1,0\n"))
    with pytest.raises(DatasetError, match="unknown label"):
        load_dataset(manifest(f"path,subject,label\n{img},r1,agony\n"))
    one = load_dataset(manifest(f"path,subject,label\n{img},r1,severe\n{img},r1,none\n"))
    assert one.labels.tolist() == [2, 0] and one.targets("binary").tolist() == [1, 0]
    with pytest.raises(DatasetError, match="at least 2 subjects"):
        list(loso_splits(one.subjects))
    (tmp_path / "bad.jpg").write_text("not an image")
    with pytest.raises(DatasetError, match="cannot read image"):
        list(load_dataset(manifest(f"path,subject,label\n{tmp_path / 'bad.jpg'},r1,0\n")).images())  # read when asked for
    result = runner.invoke(app, ["evaluate", "--data", str(tmp_path / "nowhere")])
    assert result.exit_code == 5 and "no such dataset" in result.output


def test_evaluation_refuses_an_image_listed_twice(small_dataset, tmp_path):
    """The same image under two animals would let a held-out animal be scored on a training image; under one it
    would count twice. evaluate refuses both (exit 5) and names the files."""
    import csv

    src = small_dataset.source
    manifest = Path(src) if str(src).endswith(".csv") else Path(src) / "manifest.csv"
    rows = list(csv.DictReader(manifest.open()))
    for name, extra in (("across", {**rows[0], "subject": rows[-1]["subject"]}), ("within", rows[1])):
        out = manifest.parent / f"{name}.csv"
        with out.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows + [extra])
        result = runner.invoke(app, ["evaluate", "--data", str(out)])
        assert result.exit_code == 5, result.output
        assert Path(extra["path"]).name in result.output and "listed more than once" in result.output
        assert ("under different animals" in result.output) == (name == "across")


def test_features_are_made_a_chunk_at_a_time_never_holding_every_picture(tmp_path):
    """A large dataset is turned into features a few hundred crops at a time: memory holds features, not pixels
    (100,000 crops held as pixels took more than 24 GB). 1,500 crops of 400x400 px would hold 720 MB."""
    import cv2

    rng = np.random.default_rng(0)
    rows = ["path,subject,label"]
    base = rng.integers(0, 255, (400, 400, 3), np.uint8)
    for i in range(1500):
        img = base.copy()
        img[i // 400, i % 400] = 255 - img[i // 400, i % 400]  # every file's bytes differ
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 50])
        rows.append(f"{i}.jpg,rat{i % 3},{i % 2}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    # VmHWM: this process's own peak (ru_maxrss of a child carries its parent's size at the fork, under pytest 1 GB)
    code = ("import re, sys\n"
            "from rat_monitor.data import load_dataset\n"
            "from rat_monitor.classify.evaluate import Trainer\n"
            "t = Trainer('lbp-svm', 'binary')\n"
            "t.prepare(load_dataset(sys.argv[1]))\n"
            "peak = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
            "print(t.backend._features.shape[0], peak // 1024)\n")
    done = run_python(code, str(tmp_path / "m.csv"), timeout=300)
    assert done.returncode == 0, done.stderr
    crops, peak_mb = map(int, done.stdout.split())
    assert crops == 1500 and peak_mb < 600, peak_mb  # the pixels alone would be 720 MB


def test_an_analysis_starts_and_ends_without_importing_scikit_learn():
    """Scoring with a saved model needs numpy only: importing the CLI, loading the bundled models, scoring a
    crop and writing the versions into run.json never import scikit-learn (1 s of every analysis's and every batch
    worker's start; measured here: start-up 1.6-2.2 s before, 0.8-0.9 s after; at a run's end it cost 1 s more),
    yet run.json still says which scikit-learn is installed."""
    code = ("import sys\n"
            "import numpy as np\n"
            "import rat_monitor.cli\n"
            "from rat_monitor.classify import load_classifier\n"
            "from rat_monitor.detect import load_detector\n"
            "from rat_monitor.models import DEFAULT_CLASSIFIER, DEFAULT_DETECTOR\n"
            "load_detector(DEFAULT_DETECTOR)\n"
            "load_classifier(DEFAULT_CLASSIFIER).predict([np.zeros((112, 112, 3), np.uint8)])\n"
            "from rat_monitor.pipeline import versions\n"
            "assert versions()['scikit-learn']\n"
            "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('sklearn')}))\n")
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
