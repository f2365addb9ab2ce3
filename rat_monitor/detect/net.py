"""The detector network (PyTorch, training only): ImageNet MobileNetV2 features, frozen, and a small
CenterNet head that the synthetic frames teach.

The trunk is torchvision's MobileNetV2 up to stride 16 (blocks 0-13), its weights learnt on real photographs
(rat_monitor.pretrained). The head fuses the stride-16 features (96 channels) into the stride-8 ones
(32 channels) and predicts, per stride-8 cell, a face-centre heatmap, the box size (log width and height in
cells) and the centre's sub-cell offset: the outputs rat_monitor.detect.centernet decodes. The trunk stays
frozen, so a training computes its features once per frame and trains the head on them alone.
"""

from __future__ import annotations

ARCHITECTURE = "mobilenet_v2-s16-centernet"  # written into the card: weights of another layout do not load
HEAD_WIDTH, FUSE_WIDTH = 64, 48


def build_net(pretrained: bool = True):
    """The detector; with pretrained, the trunk starts from the ImageNet weights (training from scratch of the
    head), else from nothing (weights are loaded from a detector's folder next)."""
    import torch.nn as nn
    from torchvision.models import mobilenet_v2

    from ..pretrained import imagenet_normalise, mobilenet_v2_features

    features = mobilenet_v2_features() if pretrained else mobilenet_v2(weights=None).features

    def conv(cin, cout, k=3):
        return nn.Sequential(nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU(inplace=True))

    class Head(nn.Module):
        """About 0.1M parameters: cheap enough to train for many epochs on cached features on a CPU."""

        def __init__(self):
            super().__init__()
            self.lateral16 = conv(96, HEAD_WIDTH, 1)
            self.context = conv(HEAD_WIDTH, HEAD_WIDTH)  # at stride 16: wide context for little cost
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.lateral8 = conv(32, HEAD_WIDTH, 1)
            self.fuse = conv(HEAD_WIDTH, FUSE_WIDTH)
            self.refine = nn.Sequential(  # depthwise-separable 3x3: more reach per cell at a tenth of the cost
                nn.Conv2d(FUSE_WIDTH, FUSE_WIDTH, 3, 1, 1, groups=FUSE_WIDTH, bias=False),
                nn.BatchNorm2d(FUSE_WIDTH), conv(FUSE_WIDTH, FUSE_WIDTH, 1))
            self.heat = nn.Conv2d(FUSE_WIDTH, 1, 1)
            self.size = nn.Conv2d(FUSE_WIDTH, 2, 1)
            self.offset = nn.Conv2d(FUSE_WIDTH, 2, 1)
            self.heat.bias.data.fill_(-2.2)  # start from "few faces" (CenterNet's prior)

        def forward(self, f8, f16):
            f = self.refine(self.fuse(self.lateral8(f8) + self.up(self.context(self.lateral16(f16)))))
            return self.heat(f), self.size(f), self.offset(f)

    class DetectorNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.normalise = imagenet_normalise()
            self.s8 = features[:7]
            self.s16 = features[7:14]
            self.head = Head()

        def trunk(self, x):
            f8 = self.s8(self.normalise(x))
            return f8, self.s16(f8)

        def forward(self, x):
            return self.head(*self.trunk(x))

    net = DetectorNet()
    for p in list(net.s8.parameters()) + list(net.s16.parameters()):
        p.requires_grad_(False)
    return net


def parameter_count(net) -> tuple[int, int]:
    """(all parameters, trainable ones)."""
    return (sum(p.numel() for p in net.parameters()),
            sum(p.numel() for p in net.parameters() if p.requires_grad))


def _export(module, path, width: int, height: int, outputs: list[str], any_size: bool = False) -> None:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), torch.zeros(1, 3, height, width), str(path), dynamo=False,
                          input_names=["image"], output_names=outputs,
                          dynamic_axes={name: {0: "n", 2: "h", 3: "w"} if any_size else {0: "n"}
                                        for name in ["image", *outputs]}, opset_version=17)


def export_onnx(net, path, width: int, height: int) -> None:
    """The whole detector: image -> heat, size, offset (what centernet.py runs). Exported at WIDTH x HEIGHT (the
    card's input_size, a whole frame's), and runnable at any size (multiples of 16): the network is fully
    convolutional, so the pipeline can look again at the region around a tracked face alone, at the same scale."""
    _export(net, path, width, height, ["heat", "size", "offset"], any_size=True)


def export_trunk_onnx(net, path, width: int, height: int) -> None:
    """The frozen trunk alone (image -> stride-8 and stride-16 features): training computes the features of its
    frames with ONNX Runtime, several times faster on a CPU than eager PyTorch."""
    import torch

    class Trunk(torch.nn.Module):
        def __init__(self, detector):
            super().__init__()
            self.detector = detector

        def forward(self, x):
            return self.detector.trunk(x)

    _export(Trunk(net), path, width, height, ["f8", "f16"])
