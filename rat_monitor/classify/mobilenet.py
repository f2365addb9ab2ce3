"""MobileNetV2 features + linear heads: a pain classifier for the few hundred face crops a lab can score.

The face crop passes once through torchvision's MobileNetV2, pretrained on ImageNet (the weights a registry
package ships, see pretrained.py), frozen, and its last feature map is averaged into one 1280-d vector. On those
features: a logistic regression for pain (its probabilities are calibrated by its own log-loss), one multinomial
logistic regression per action unit (score = expected value of P(0, 1, 2)) when the data has AU labels, and the
familiarity statistics of the training faces. Each regression's strength C is chosen by inner cross-validation
grouped by animal.

Features learnt on millions of real photographs need far fewer scored crops than LBP texture statistics (the
learning curve in the README). Training needs torch and the weights (to export the network once to ONNX); the
saved model runs with ONNX Runtime and numpy only.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from ..errors import ModelError
from ..imaging import rgb_batch
from ..models import read_card, verified_file, write_card
from ..types import ACTION_UNITS, Prediction
from .base import (Fitted, TrainOptions, card_binary, card_int, card_record, chunked_features, class_names,
                   load_familiarity, safe_load_tensors, save_familiarity, to_predictions, to_three)
from .action_units import labelled
from .familiarity import fit_grouped

KIND = "mobilenet-linear"
SIZE = 112  # crop side the network sees: 3 ms per crop on one core (128 px: 3.6 ms, 160 px: 5.4 ms)
FEATURE_FILE = "features.onnx"
HEADS_FILE = "heads.safetensors"
C_GRID = (0.001, 0.01, 0.1, 1.0)  # inverse regularisation strengths tried by the inner cross-validation
BATCH = 64


def export_feature_net(path: Path, size: int = SIZE) -> None:
    """torchvision's MobileNetV2 trunk with ImageNet weights, normalisation in front and a global average pool
    behind, as ONNX: (N, 3, size, size) RGB in [0, 1] -> (N, 1280) features."""
    import torch

    from ..pretrained import imagenet_normalise, mobilenet_v2_features

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.normalise, self.trunk = imagenet_normalise(), mobilenet_v2_features()

        def forward(self, x):
            return self.trunk(self.normalise(x)).mean(dim=(2, 3))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pooled().eval(), torch.zeros(1, 3, size, size), str(path), dynamo=False,
                          input_names=["image"], output_names=["features"],
                          dynamic_axes={"image": {0: "n"}, "features": {0: "n"}}, opset_version=17)


class FeatureNet:
    """The exported network run by ONNX Runtime: face crops -> (N, 1280) float32 features."""

    def __init__(self, path: Path, size: int = SIZE, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - whatever ONNX Runtime says about a damaged file
            raise ModelError(f"cannot load {path}: {str(exc).splitlines()[0]}") from None
        self.size = size

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        parts = [self.session.run(None, {"image": rgb_batch(crops[i:i + BATCH], self.size)})[0]
                 for i in range(0, len(crops), BATCH)]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 1280), np.float32)


def direction(feats: np.ndarray) -> np.ndarray:
    """Features scaled to unit length: what familiarity measures. On the raw pooled features a flat grey image
    (weak activations everywhere) lay nearer the training faces than faces of held-out animals did; on their
    direction it is refused (6 of 6 odd images, 1,200 synthetic faces, trial of this kind's first version)."""
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


class LinearHead:
    """Standardised features -> logistic regression, C chosen by inner cross-validation grouped by animal
    (stratified without groups). Saved and run as plain arrays."""

    def fit(self, feats: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
            scoring: str = "f1_macro") -> LinearHead:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedKFold
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from threadpoolctl import threadpool_limits

        y = np.asarray(y)
        if groups is not None and len(np.unique(groups)) >= 2:
            cv = GroupKFold(n_splits=min(3, len(np.unique(groups))))
        else:
            cv = StratifiedKFold(n_splits=min(3, int(np.bincount(np.unique(y, return_inverse=True)[1]).min())),
                                 shuffle=True, random_state=0)
        pipe = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(max_iter=3000))])
        search = GridSearchCV(pipe, {"lr__C": list(C_GRID)}, cv=cv, scoring=scoring)
        # One process, one BLAS thread: these fits take milliseconds, and worker processes or BLAS threads
        # fighting over two cores made them 5-10x slower.
        with warnings.catch_warnings(), threadpool_limits(1):  # an inner fold missing a class warns
            warnings.simplefilter("ignore")
            search.fit(feats, y, groups=groups)
        best = search.best_estimator_
        scaler, lr = best.named_steps["scale"], best.named_steps["lr"]
        self.C_ = float(search.best_params_["lr__C"])
        self.mean, self.scale = scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)
        self.coef, self.intercept = lr.coef_.astype(np.float64), lr.intercept_.astype(np.float64)
        self.classes = lr.classes_.astype(np.int64)
        return self

    def predict_proba(self, feats: np.ndarray) -> np.ndarray:
        z = ((np.asarray(feats, np.float64) - self.mean) / self.scale) @ self.coef.T + self.intercept
        if z.shape[1] == 1:  # binary: P(second class)
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1 - p1, p1], axis=1)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, feats: np.ndarray) -> np.ndarray:
        return self.classes[self.predict_proba(feats).argmax(axis=1)]

    def expected(self, feats: np.ndarray) -> np.ndarray:
        return self.predict_proba(feats) @ self.classes.astype(np.float64)

    def to_tensors(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.{k}": np.ascontiguousarray(v) for k, v in (
            ("mean", self.mean), ("scale", self.scale), ("coef", self.coef), ("intercept", self.intercept),
            ("classes", self.classes))}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], prefix: str, dim: int) -> LinearHead:
        head = cls()
        try:
            for k in ("mean", "scale", "coef", "intercept", "classes"):
                setattr(head, k, tensors[f"{prefix}.{k}"])
        except KeyError as exc:
            raise ModelError(f"{HEADS_FILE} lacks the array {exc}") from None
        rows = 1 if len(head.classes) == 2 else len(head.classes)
        if head.mean.shape != (dim,) or head.scale.shape != (dim,) or head.coef.shape != (rows, dim) \
                or head.intercept.shape != (rows,):
            raise ModelError(f"{HEADS_FILE}: the arrays of {prefix!r} do not fit together")
        return head


def fit_au_heads(feats: np.ndarray, aus: np.ndarray, groups: np.ndarray) -> list[LinearHead]:
    """One head per action unit on the crops with that AU labelled (the others are left out of its training)."""
    heads = []
    for j in range(len(ACTION_UNITS)):
        known, y = labelled(aus, j)
        heads.append(LinearHead().fit(feats[known], y, groups[known], scoring="neg_mean_absolute_error"))
    return heads


class Model:
    """A saved MobileNetV2 + linear heads classifier: the features in ONNX Runtime, the heads in numpy."""

    def __init__(self, folder: Path, threads: int = 1):
        self.card = read_card(folder)
        self.name = self.card.get("name", Path(folder).name)
        self.binary = card_binary(self.card)
        features = self.card["features"]
        self._net = FeatureNet(verified_file(folder, FEATURE_FILE), card_int(features["size"], 32, 512,
                                                                             "features.size"), threads)
        dim = card_int(features["dimensions"], 1, 4096, "features.dimensions")
        tensors = safe_load_tensors(verified_file(folder, HEADS_FILE))
        self._pain = LinearHead.from_tensors(tensors, "pain", dim)
        self.classes = self._pain.classes
        self.action_units = bool(self.card.get("action_units"))
        self._aus = [LinearHead.from_tensors(tensors, name, dim) for name in ACTION_UNITS] if self.action_units \
            else []
        self.familiarity = load_familiarity(folder, self.card)

    def predict(self, crops: list[np.ndarray]) -> list[Prediction]:
        if not crops:
            return []
        feats = self._net(list(crops))
        probs = to_three(self._pain.predict_proba(feats), self._pain.classes)
        aus = np.stack([h.expected(feats) for h in self._aus], axis=1) if self._aus else None
        return to_predictions(self.name, self.binary, probs, aus, self.familiarity, direction(feats))


class Backend:
    """Training for evaluate/train: the network exported once, every crop's features computed once, then any
    number of fits (LOSO folds, the final model) on index subsets."""

    def __init__(self, options: TrainOptions):
        self.options = options
        self._dir = tempfile.TemporaryDirectory(prefix="rat-monitor-mobilenet-")
        self.feature_file = Path(self._dir.name) / FEATURE_FILE
        export_feature_net(self.feature_file)

    def prepare(self, images: list[np.ndarray], aus: np.ndarray | None) -> None:
        self.aus = aus
        self._features, = chunked_features(images, FeatureNet(self.feature_file, threads=self.options.n_jobs or 1))

    def fit(self, idx: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Fitted:
        feats, groups = self._features[idx], np.asarray(groups)[idx]
        pain = LinearHead().fit(feats, y[idx], groups)
        aus = None if self.aus is None else fit_au_heads(feats, self.aus[idx], groups)
        return Fitted(pain, aus, fit_grouped(direction(feats), groups))

    def predict(self, fitted: Fitted, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        feats = self._features[idx]
        aus = None if fitted.aus is None else np.stack([h.expected(feats) for h in fitted.aus], axis=1)
        fam = fitted.familiarity_model
        return fitted.pain.predict(feats), aus, None if fam is None else fam.score(direction(feats))

    def save(self, fitted: Fitted, out_dir: Path, training: dict, metrics: dict | None = None) -> dict:
        return save(fitted, self.feature_file, out_dir, self.options.task, training, metrics)


def save(fitted: Fitted, feature_file: Path, out_dir: Path, task: str, training: dict,
         metrics: dict | None = None) -> dict:
    """Writes features.onnx, heads.safetensors, familiarity.safetensors and card.json."""
    from ..pretrained import MOBILENET_V2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(feature_file, out_dir / FEATURE_FILE)
    pain, au_heads = fitted.pain, fitted.aus or []
    tensors = pain.to_tensors("pain")
    for name, head in zip(ACTION_UNITS, au_heads):
        tensors.update(head.to_tensors(name))
    save_file(tensors, str(out_dir / HEADS_FILE))
    familiarity_card, familiarity_files = save_familiarity(fitted.familiarity, out_dir)
    card = {
        "name": out_dir.name,
        "kind": "pain-classifier",
        "model": KIND,
        "task": task,
        "classes": class_names(task),
        "input": f"square face crop resized to {SIZE}x{SIZE}, RGB (ImageNet normalisation inside the network)",
        "features": {"network": "MobileNetV2, ImageNet weights, frozen; last feature map averaged",
                     "size": SIZE, "dimensions": int(len(pain.mean)), "pretrained": MOBILENET_V2.card_entry(),
                     "familiarity_on": "the features scaled to unit length"},
        "head": "logistic regression on standardised features; C chosen by inner cross-validation grouped by animal",
        "hyperparameters": {"pain_C": pain.C_, **{f"{name}_C": h.C_ for name, h in zip(ACTION_UNITS, au_heads)}},
        "action_units": {"names": list(ACTION_UNITS), "estimator": "one multinomial logistic regression per action "
                         "unit on the same features; score = expected value of P(0, 1, 2)"} if au_heads else None,
        **card_record(training, metrics, familiarity_card),
    }
    return write_card(out_dir, card, [FEATURE_FILE, HEADS_FILE, *familiarity_files])
