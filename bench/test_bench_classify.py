"""Classifier figures on synthetic 6-animal datasets: LBP+SVM leave-one-subject-out pain quality and time on
1,200 crops (pain labels only), the four action units and the RGS score on 3,600 crops with AU labels (the
bundled model's data), and ResNet-18 training time for one fold on the CPU."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from rat_monitor.classify.evaluate import evaluate_loso
from rat_monitor.classify.resnet import ResNetClassifier
from rat_monitor.data import load_dataset, loso_splits
from rat_monitor.synth import write_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def six_rats(tmp_path_factory):
    root = tmp_path_factory.mktemp("six")
    write_dataset(root, subjects=6, per_subject=200, seed=0)  # the first 200 crops per animal of the bundled model's data
    return load_dataset(root)


@pytest.fixture(scope="module")
def six_rats_with_aus(tmp_path_factory):
    root = tmp_path_factory.mktemp("six600")
    write_dataset(root, subjects=6, per_subject=600, seed=0)  # the bundled model's training data
    return load_dataset(root)


def test_lbp_svm_action_units_loso(six_rats_with_aus, record):
    t = time.perf_counter()
    result = evaluate_loso(six_rats_with_aus, "lbp-svm", "binary", n_jobs=2)
    aus = result["action_units"]
    record("lbp_svm_action_units_loso", {"images": len(six_rats_with_aus), "seconds": round(time.perf_counter() - t),
                                         "binary_macro_f1": round(result["pooled"]["macro_f1"], 4),
                                         **{f"qwk_{a}": round(aus[a]["qwk"], 4) for a in aus if a != "rgs"},
                                         "rgs_icc_2_1": round(aus["rgs"]["icc_2_1"], 4)})
    assert all(aus[a]["qwk"] >= 0.8 for a in ("orbital", "nose", "ears", "whiskers"))
    assert aus["rgs"]["icc_2_1"] >= 0.9


def test_lbp_svm_loso(six_rats, record):
    six_rats = dataclasses.replace(six_rats, aus=None)  # pain labels only: the pain model's own time
    t = time.perf_counter()
    binary = evaluate_loso(six_rats, "lbp-svm", "binary", n_jobs=2)
    seconds = time.perf_counter() - t
    three = evaluate_loso(six_rats, "lbp-svm", "3class", n_jobs=2)
    record("lbp_svm_loso", {"images": len(six_rats), "binary_macro_f1": round(binary["pooled"]["macro_f1"], 4),
                            "binary_accuracy": round(binary["pooled"]["accuracy"], 4),
                            "threeclass_macro_f1": round(three["pooled"]["macro_f1"], 4),
                            "binary_loso_seconds": round(seconds, 1),
                            "predict_ms_per_image": np.mean([f["predict_ms_per_image"] for f in binary["folds"]])})
    assert binary["pooled"]["macro_f1"] >= 0.90
    assert seconds < 120


def test_resnet18_one_fold_on_cpu(six_rats, record):
    imgs, y = six_rats.images(), six_rats.targets("binary")
    subject, train, test = next(loso_splits(six_rats.subjects))
    t = time.perf_counter()
    clf = ResNetClassifier(epochs=10).fit([imgs[i] for i in train], y[train], groups=six_rats.subjects[train])
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    pred = clf.predict([imgs[i] for i in test])
    ms = 1000 * (time.perf_counter() - t) / len(test)
    from sklearn.metrics import f1_score

    record("resnet18_cpu_fold", {"held_out": subject, "epochs_run": clf.epochs_run_, "train_s": round(train_s, 1),
                                 "macro_f1": round(float(f1_score(y[test], pred, average="macro")), 4),
                                 "predict_ms_per_image_torch": round(ms, 2)})
