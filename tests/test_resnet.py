"""ResNet-18: trains on CPU, saves as safetensors + ONNX, loads without torch, and never unpickles code."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from rat_monitor.classify import load_classifier
from rat_monitor.classify.resnet import ResNetClassifier, imagenet_weights, to_batch
from rat_monitor.errors import ModelError
from rat_monitor.synth import write_dataset
from rat_monitor.data import load_dataset
from helpers import PicklePayload

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_dataset(root, subjects=3, per_subject=16, seed=21)
    ds = load_dataset(root)
    return ds.images(), ds.targets("binary"), ds.subjects


def test_train_save_load_round_trip(tiny, tmp_path):
    imgs, y, groups = tiny
    with pytest.warns(UserWarning, match="from scratch"):
        clf = ResNetClassifier(epochs=2, batch_size=16).fit(imgs, y, groups=groups)
    direct = clf.predict_proba(imgs)
    assert direct.shape == (len(imgs), 2) and np.allclose(direct.sum(1), 1, atol=1e-5)
    card = clf.save(tmp_path / "rn", "binary", {"description": "tiny test", "synthetic": True})
    assert card["initialisation"].startswith("from scratch") and set(card["files"]) == {
        "model.onnx", "weights.safetensors", "familiarity.safetensors"}
    assert "1 held-out validation animal(s) of 3" in card["familiarity"]["calibration"]
    loaded = load_classifier(tmp_path / "rn")  # ONNX Runtime, no torch at inference
    preds = loaded.predict(imgs)
    probs = np.array([p.probs[:2] for p in preds])
    assert np.allclose(probs, direct, atol=1e-4)
    assert (probs.argmax(1) == direct.argmax(1)).all()
    # Familiarity from the ONNX embedding output, the same as from the torch network.
    emb_onnx = loaded.session.run(None, {"image": to_batch(imgs)})[1]
    assert np.allclose(emb_onnx, clf.embeddings(imgs), atol=1e-3)
    fam_onnx = np.array([p.familiarity for p in preds])
    assert np.allclose(fam_onnx, clf.familiarity_[0].score(emb_onnx))
    noise = [np.random.default_rng(i).integers(0, 256, (112, 112, 3), dtype=np.uint8) for i in range(4)]
    assert all(p.refused for p in loaded.predict(noise))  # not rat faces at all


def test_multi_task_head_learns_action_units_with_missing_labels_masked(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, subjects=3, per_subject=16, seed=22)
    ds = load_dataset(root)
    imgs, y, aus = ds.images(), ds.targets("3class"), ds.aus.copy()
    aus[::4, 1] = np.nan  # a quarter of the nose labels missing: masked out of the loss
    with pytest.warns(UserWarning, match="from scratch"):
        clf = ResNetClassifier(epochs=2, batch_size=16).fit(imgs, y, groups=ds.subjects, aus=aus)
    scores = clf.predict_aus(imgs)
    assert scores.shape == (len(imgs), 4) and np.isfinite(scores).all()
    assert (scores >= 0).all() and (scores <= 2).all()
    card = clf.save(tmp_path / "rn", "3class", {"description": "tiny AU test", "synthetic": True})
    assert card["action_units"]["names"] == ["orbital", "nose", "ears", "whiskers"]
    loaded = load_classifier(tmp_path / "rn")
    preds = loaded.predict(imgs)
    assert loaded.action_units and np.allclose([p.aus for p in preds], scores, atol=1e-4)
    assert np.allclose([p.probs for p in preds], clf.predict_proba(imgs), atol=1e-4)
    # without AU labels the head is pain-only and predictions carry no AU scores
    with pytest.warns(UserWarning, match="from scratch"):
        pain_only = ResNetClassifier(epochs=1, batch_size=16).fit(imgs[:16], y[:16])
    assert pain_only.predict_aus(imgs[:2]) is None


def test_imagenet_weights_from_a_local_file_only(tmp_path):
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path)
    loaded, source = imagenet_weights(path)
    assert source == str(path) and set(loaded) == set(state)
    with pytest.raises(ModelError, match="does not exist"):
        imagenet_weights(tmp_path / "missing.pth")


def test_pickled_code_in_a_weights_file_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"conv1.weight": PicklePayload(str(marker))}))
    with pytest.raises(ModelError, match="safely"):
        imagenet_weights(path)
    assert not marker.exists()
