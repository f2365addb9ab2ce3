"""ResNet-18, the RatsPain deep baseline: torchvision's resnet18 with a new head, trained with augmentation,
a class-balanced loss and early stopping on a subject-grouped validation split; exported to ONNX so that
inference needs only ONNX Runtime. ImageNet initialisation when the weights are on disk (torchvision's cache
or --weights FILE); nothing is ever downloaded.

With action-unit labels the head is multi-task: the pain classes plus, per RGS action unit, two cumulative
ordinal logits (score >= 1, score >= 2), trained with a binary cross-entropy from which unlabelled AUs are
masked out; the AU score is the expected value P(>= 1) + P(>= 2)."""

from __future__ import annotations

import os
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import DatasetError, ModelError
from ..imaging import rgb_batch
from ..pretrained import IMAGENET_MEAN, IMAGENET_STD
from ..models import SYNTHETIC_CAVEAT, read_card, verified_file, write_card
from ..types import ACTION_UNITS, Prediction
from .base import (Fitted, TrainOptions, card_binary, class_names, load_familiarity, save_familiarity, to_predictions,
                   to_three)
from .familiarity import fit_familiarity
from .metrics import au_metrics

KIND = "resnet18"
N_AU = len(ACTION_UNITS)

SIZE = 112
MEAN = np.array(IMAGENET_MEAN, np.float32)
STD = np.array(IMAGENET_STD, np.float32)
IMAGENET_FILE = "resnet18-f37072fd.pth"  # torchvision's name for ResNet18_Weights.IMAGENET1K_V1


def to_batch(crops: list[np.ndarray]) -> np.ndarray:
    """BGR crops of any size -> (N, 3, SIZE, SIZE) float32, RGB, ImageNet-normalised."""
    return (rgb_batch(crops, SIZE) - MEAN[:, None, None]) / STD[:, None, None]


def imagenet_weights(explicit: Path | None) -> tuple[dict | None, str]:
    """ImageNet weights from --weights or torchvision's cache, loaded without running code; else None."""
    import torch

    candidates = [Path(explicit)] if explicit else [Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE]
    for path in candidates:
        if not path.exists():
            if explicit:
                raise ModelError(f"--weights {path} does not exist")
            continue
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return load_file(str(path)), str(path)
            return torch.load(str(path), map_location="cpu", weights_only=True), str(path)
        except Exception as exc:  # noqa: BLE001 - any failure means: not usable weights
            raise ModelError(f"cannot load ImageNet weights {path} safely: {exc}") from None
    return None, ""


def logits_and_embedding(net, x):
    """torchvision's ResNet forward, also returning the pooled 512-d features the familiarity check uses."""
    import torch

    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    emb = torch.flatten(net.avgpool(x), 1)
    return net.fc(emb), emb


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def ordinal_scores(logits: np.ndarray) -> np.ndarray:
    """(N, 4 * 2) cumulative logits -> (N, 4) expected AU scores in 0..2 (P(>= 2) capped by P(>= 1))."""
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64).reshape(len(logits), N_AU, 2)))
    return p[:, :, 0] + np.minimum(p[:, :, 1], p[:, :, 0])


def _augment(x, gen):
    """Flip, small rotation and scale, colour jitter, grey and blur, vectorised over the batch."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    angle = (torch.rand(n, generator=gen) - 0.5) * 2 * np.radians(12)
    scale = 1 + (torch.rand(n, generator=gen) - 0.5) * 0.2
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 0.1
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.5
    bias = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.5
    tint = 1 + (torch.rand(n, 3, 1, 1, generator=gen) - 0.5) * 0.2
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * gain * tint + mean + bias
    # Grey for half the batch: fur tone and eye colour differ between animals, expression does not.
    grey = torch.rand(n, generator=gen) < 0.5
    x = torch.where(grey[:, None, None, None], x.mean(dim=1, keepdim=True).expand_as(x), x)
    blur = torch.rand(n, generator=gen) < 0.2
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3)
        x = torch.where(blur[:, None, None, None], F.conv2d(x, k, padding=1, groups=3), x)
    return x


class ResNetClassifier:
    """fit(crops, labels, groups=subjects) / predict / predict_proba / save."""

    def __init__(self, epochs: int | None = None, batch_size: int = 64, weights: Path | None = None,
                 patience: int = 8, seed: int = 0, log: Callable[[str], None] | None = None):
        self.epochs = epochs or 40
        self.batch_size = batch_size
        self.weights = weights
        self.patience = patience
        self.seed = seed
        self.log = log or (lambda _m: None)

    def _build(self, n_outputs: int):
        import torch
        import torchvision

        net = torchvision.models.resnet18(weights=None)
        state, source = imagenet_weights(self.weights)
        if state is not None:
            net.load_state_dict(state)
            self.init_ = f"ImageNet ({source})"
        else:
            warnings.warn("no ImageNet weights on disk (torchvision cache or --weights FILE): training ResNet-18 "
                          "from scratch, which needs more data", stacklevel=2)
            self.log("warning: no ImageNet weights found; training ResNet-18 from scratch")
            self.init_ = "from scratch (no ImageNet weights on disk)"
        net.fc = torch.nn.Linear(net.fc.in_features, n_outputs)
        return net

    def fit(self, crops: list[np.ndarray], y, groups=None, aus=None):
        """aus: (N, 4) AU labels 0/1/2 with NaN where unlabelled, or None: with any label, the head is
        multi-task."""
        import torch

        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        yi = np.searchsorted(self.classes_, y)
        x_all = torch.from_numpy(to_batch(crops))
        # Early stopping on held-out animals: about a fifth of the training subjects, never an image split.
        train_idx, val_idx = np.arange(len(y)), np.array([], int)
        if groups is not None and len(np.unique(groups)) >= 3:
            subjects = np.unique(groups)
            rng = np.random.default_rng(self.seed)
            val_subjects = rng.choice(subjects, max(1, len(subjects) // 5), replace=False)
            val_mask = np.isin(groups, val_subjects)
            train_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
        self.action_units_ = aus is not None and bool(np.isfinite(aus).any())
        n_pain = len(self.classes_)
        net = self._build(n_pain + (2 * N_AU if self.action_units_ else 0)).to(device)
        counts = np.bincount(yi[train_idx], minlength=n_pain).astype(np.float32)
        class_w = torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), device=device)
        pain_loss = torch.nn.CrossEntropyLoss(weight=class_w, label_smoothing=0.1)
        if self.action_units_:
            au = torch.from_numpy(np.nan_to_num(np.asarray(aus, np.float32), nan=-1.0))
            au_known = torch.from_numpy(np.isfinite(aus)).float()
            au_targets = torch.stack([(au >= 1).float(), (au >= 2).float()], dim=2)  # (N, 4, 2)

        def loss_fn(out, idx):
            loss = pain_loss(out[:, :n_pain], y_t[idx].to(device))
            if self.action_units_:
                mask = au_known[idx].to(device)[:, :, None].expand(-1, -1, 2)
                bce = torch.nn.functional.binary_cross_entropy_with_logits(
                    out[:, n_pain:].reshape(-1, N_AU, 2), au_targets[idx].to(device), reduction="none")
                loss = loss + (bce * mask).sum() / mask.sum().clamp(min=1.0)  # unlabelled AUs add nothing
            return loss

        lr = 3e-4 if self.init_.startswith("ImageNet") else 1e-3
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
        steps = max(1, int(np.ceil(len(train_idx) / self.batch_size)))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=self.epochs * steps)
        y_t = torch.from_numpy(yi)
        best, best_state, stale = -1.0, None, 0
        t0 = time.time()
        for epoch in range(self.epochs):
            net.train()
            order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=gen)]
            for b in range(steps):
                idx = order[b * self.batch_size:(b + 1) * self.batch_size]
                xb = _augment(x_all[idx], gen).to(device)
                loss = loss_fn(net(xb), idx)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            if len(val_idx):
                score = self._validation_score(net, x_all[val_idx], yi[val_idx],
                                               None if not self.action_units_ else aus[val_idx], device)
                self.log(f"  epoch {epoch + 1}: validation score {score:.3f} ({time.time() - t0:.0f} s)")
                if score > best:
                    best, stale = score, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    stale += 1
                    if stale >= self.patience:
                        break
        if best_state is not None:
            net.load_state_dict(best_state)
        self.epochs_run_ = epoch + 1
        self.val_score_ = best
        self.net_ = net.cpu().eval()
        # Familiarity: statistics of the training animals' embeddings, calibrated on the validation animals the
        # network never learnt from.
        self.familiarity_ = (None, "not fitted: needs at least three training animals, one of them held out")
        if len(val_idx):
            emb = self._forward(x_all)[1]
            n_val = len(np.unique(np.asarray(groups)[val_idx]))
            self.familiarity_ = (fit_familiarity(emb[train_idx], emb[val_idx]),
                                 f"{n_val} held-out validation animal(s) of {len(np.unique(groups))} training animals")
        return self

    def _validation_score(self, net, x, y, aus, device) -> float:
        """Pain macro-F1; with AU heads, its mean with the AUs' mean quadratic-weighted kappa."""
        import torch
        from sklearn.metrics import f1_score

        net.eval()
        with torch.no_grad():
            out = torch.cat([net(x[i:i + 256].to(device)).cpu() for i in range(0, len(x), 256)]).numpy()
        net.train()
        n_pain = len(self.classes_)
        score = float(f1_score(y, out[:, :n_pain].argmax(1), average="macro"))
        if aus is None:
            return score
        per_au = au_metrics(aus, ordinal_scores(out[:, n_pain:]))
        kappas = [per_au[a]["qwk"] for a in ACTION_UNITS if a in per_au]
        return (score + float(np.mean(kappas))) / 2 if kappas else score

    def _forward(self, x) -> tuple[np.ndarray, np.ndarray]:
        """A batch tensor -> (outputs, embeddings) of the fitted network, in chunks."""
        import torch

        with torch.no_grad():
            parts = [logits_and_embedding(self.net_, x[i:i + 256]) for i in range(0, len(x), 256)]
            return torch.cat([p[0] for p in parts]).numpy(), torch.cat([p[1] for p in parts]).numpy()

    def _outputs(self, crops) -> np.ndarray:
        import torch

        return self._forward(torch.from_numpy(to_batch(list(crops))))[0]

    def embeddings(self, crops) -> np.ndarray:
        import torch

        return self._forward(torch.from_numpy(to_batch(list(crops))))[1]

    def predict_proba(self, crops) -> np.ndarray:
        return softmax(self._outputs(crops)[:, :len(self.classes_)])

    def predict(self, crops) -> np.ndarray:
        return self.classes_[self.predict_proba(crops).argmax(1)]

    def predict_aus(self, crops) -> np.ndarray | None:
        """(N, 4) expected AU scores 0..2, or None when trained without AU labels."""
        if not self.action_units_:
            return None
        return ordinal_scores(self._outputs(crops)[:, len(self.classes_):])

    def save(self, out_dir: Path, task: str, training: dict, metrics: dict | None = None) -> dict:
        import torch
        import torchvision
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.net_.state_dict().items()}, str(out_dir / "weights.safetensors"))

        class WithEmbedding(torch.nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                return logits_and_embedding(self.net, x)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(WithEmbedding(self.net_).eval(), torch.zeros(1, 3, SIZE, SIZE), str(out_dir / "model.onnx"),
                              dynamo=False, input_names=["image"], output_names=["logits", "embedding"],
                              dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}, "embedding": {0: "n"}},
                              opset_version=17)
        familiarity_card, familiarity_files = save_familiarity(self.familiarity_, out_dir)
        card = {
            "name": out_dir.name, "kind": "pain-classifier", "model": KIND, "task": task,
            "classes": class_names(task),
            "class_labels": [int(c) for c in self.classes_],
            "input": f"square face crop resized to {SIZE}x{SIZE}, RGB, ImageNet mean/std",
            "initialisation": self.init_,
            "action_units": {"names": list(ACTION_UNITS), "head": "two cumulative ordinal logits per AU after the "
                             "pain logits: P(score >= 1), P(score >= 2); score = their sum"} if self.action_units_
            else None,
            "familiarity": familiarity_card,
            "training": {**training, "epochs_run": self.epochs_run_, "validation_score": self.val_score_},
            "metrics": metrics or {}, "synthetic": bool(training.get("synthetic", False)),
            "caveat": SYNTHETIC_CAVEAT if training.get("synthetic") else "",
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                         "python": platform.python_version()},
            "created": time.strftime("%Y-%m-%d"),
        }
        return write_card(out_dir, card, ["model.onnx", "weights.safetensors", *familiarity_files])


class Model:
    """A saved ResNet-18 run with ONNX Runtime (no torch needed at inference)."""

    def __init__(self, folder: Path, threads: int = 1):
        import onnxruntime as ort

        self.card = read_card(folder)
        self.name = self.card.get("name", Path(folder).name)
        self.binary = card_binary(self.card)
        self.classes = np.array(self.card["class_labels"])
        self.action_units = bool(self.card.get("action_units"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        path = verified_file(folder, "model.onnx")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load {path}: {exc}") from None
        self.familiarity = load_familiarity(folder, self.card)
        if self.familiarity is not None and len(self.session.get_outputs()) < 2:
            raise ModelError(f"{path} has no embedding output, but the card lists familiarity statistics")

    def predict(self, crops: list[np.ndarray]) -> list[Prediction]:
        if not crops:
            return []
        outputs = self.session.run(None, {"image": to_batch(crops)})
        out = outputs[0]
        n_pain = len(self.classes)
        probs = to_three(softmax(out[:, :n_pain]), self.classes)
        aus = ordinal_scores(out[:, n_pain:]) if self.action_units else None
        embedding = outputs[1] if len(outputs) > 1 else None
        return to_predictions(self.name, self.binary, probs, aus, self.familiarity, embedding)


class Backend:
    """Training for evaluate/train: the crops are kept; each fit trains a network on an index subset."""

    def __init__(self, options: TrainOptions):
        self.options = options

    def prepare(self, images: Sequence, aus: np.ndarray | None) -> None:
        """The crops are held at the network's input size (its folds train on pixels, not features): a dataset
        that would not fit in half of this machine's memory is refused first, with the size it would need."""
        need = len(images) * SIZE * SIZE * 3 * 5  # held as bytes, and as float32 while a fold trains
        have = _memory_bytes()
        if have and need > have / 2:
            raise DatasetError(f"{len(images)} crops need about {need / 2**30:.1f} GiB held as pixels for resnet18; "
                               f"this machine has {have / 2**30:.1f} GiB: use --kind lbp-svm or mobilenet-linear "
                               "(they hold features, not pixels), or fewer crops")
        self.images = [_input_sized(img) for img in images]
        self.aus = aus

    def fit(self, idx: np.ndarray, y: np.ndarray, groups: np.ndarray) -> Fitted:
        o = self.options
        net = ResNetClassifier(epochs=o.epochs, weights=o.weights, log=o.log).fit(
            [self.images[i] for i in idx], y[idx], groups=groups[idx],
            aus=None if self.aus is None else self.aus[idx])
        return Fitted(net, net if net.action_units_ else None, net.familiarity_)

    def predict(self, fitted: Fitted, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        crops = [self.images[i] for i in idx]
        fam = fitted.familiarity_model
        return (fitted.pain.predict(crops), None if fitted.aus is None else fitted.aus.predict_aus(crops),
                None if fam is None else fam.score(fitted.pain.embeddings(crops)))

    def save(self, fitted: Fitted, out_dir: Path, training: dict, metrics: dict | None = None) -> dict:
        return fitted.pain.save(out_dir, self.options.task, training, metrics)


def _input_sized(img: np.ndarray) -> np.ndarray:
    """A crop at the network's input size (what it is resized to anyway), so that held crops stay small."""
    # as rgb_batch resizes (INTER_AREA): its own resize of these is then the identity, and the pixels as before
    return img if img.shape[:2] == (SIZE, SIZE) else cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def _memory_bytes() -> int | None:
    """This machine's physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
