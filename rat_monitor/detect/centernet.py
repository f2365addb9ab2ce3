"""The default face detector: a small CenterNet-style CNN run with ONNX Runtime on a downscaled frame.

The network sees the whole frame resized to a fixed input (288x160 by default; the card says) and outputs, on a grid of
stride 8, a face-centre heatmap, the box size (log of width and height in grid cells) and the sub-cell offset
of the centre. Peaks of the heatmap above a threshold are the faces: no anchors, no NMS tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..errors import ModelError, first_line
from ..imaging import downscale, iou
from ..models import read_card, verified_file
from ..types import Detections

INPUT_W, INPUT_H, STRIDE = 288, 160, 8
# Duplicate boxes on one face: chosen on fresh synthetic lab frames (seed 97, 300 frames), where suppressing
# overlaps above 0.5 removed 13 of 85 false boxes and no found face; 0.3 removed 18 and lost a face.
DUPLICATE_IOU = 0.5


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> Detections: ...


def preprocess(images: list[np.ndarray], width: int = INPUT_W, height: int = INPUT_H) -> np.ndarray:
    """BGR uint8 frames -> float32 NCHW batch in [0, 1], RGB, resized to the network input."""
    batch = np.empty((len(images), 3, height, width), np.float32)
    for i, img in enumerate(images):
        small = downscale(img, width, height)
        if small.ndim == 2:
            small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        batch[i] = small[:, :, ::-1].transpose(2, 0, 1) * (1.0 / 255.0)
    return batch


def decode(heat: np.ndarray, size: np.ndarray, offset: np.ndarray, scale_x: float, scale_y: float,
           threshold: float, max_faces: int = 8) -> Detections:
    """One image's network outputs (heat (H, W) probabilities, size (2, H, W), offset (2, H, W)) -> boxes
    in frame pixels."""
    peaks = (heat >= threshold) & (heat >= cv2.dilate(heat, np.ones((3, 3), np.uint8)))
    ys, xs = np.nonzero(peaks)
    if len(ys) == 0:
        return Detections.empty()
    scores = heat[ys, xs]
    order = np.argsort(-scores)[:max_faces]
    ys, xs, scores = ys[order], xs[order], scores[order]
    cx = (xs + offset[0, ys, xs]) * STRIDE
    cy = (ys + offset[1, ys, xs]) * STRIDE
    w = np.exp(size[0, ys, xs]) * STRIDE
    h = np.exp(size[1, ys, xs]) * STRIDE
    boxes = np.stack([(cx - w / 2) * scale_x, (cy - h / 2) * scale_y, (cx + w / 2) * scale_x,
                      (cy + h / 2) * scale_y], axis=1).astype(np.float32)
    keep = suppress_duplicates(boxes)
    return Detections(boxes[keep], scores[keep].astype(np.float32))


def suppress_duplicates(boxes: np.ndarray, iou_max: float = DUPLICATE_IOU) -> np.ndarray:
    """Indices of the boxes to keep, best first (boxes come sorted by score): a box overlapping a better one by
    more than IOU_MAX is a second peak on the same face (a big face can raise two), not another face."""
    overlap = iou(boxes, boxes)
    keep: list[int] = []
    for i in range(len(boxes)):  # at most max_faces boxes: a loop over boxes, never over pixels
        if (overlap[i, keep] <= iou_max).all():
            keep.append(i)
    return np.array(keep, int)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class OnnxFaceDetector:
    """Runs a detector exported by `rat-monitor detector train` (model.onnx + card.json)."""

    def __init__(self, model_dir: Path, threshold: float | None = None, threads: int = 1):
        import onnxruntime as ort

        model_dir = Path(model_dir)
        self.card = read_card(model_dir)
        onnx_path = verified_file(model_dir, "model.onnx")
        self.name = self.card.get("name", model_dir.name)
        size = self.card.get("input_size", [INPUT_W, INPUT_H])
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and 32 <= v <= 4096 and v % 16 == 0
                                                                 for v in size)):
            raise ModelError(f"{model_dir}: card.json input_size {size!r} is not [width, height] in pixels "
                             "(multiples of 16, 32 to 4096)")
        self.input_w, self.input_h = size
        self.threshold = float(threshold if threshold is not None else self.card.get("threshold", 0.4))
        if not (0.0 < self.threshold < 1.0):  # NaN fails too: a NaN threshold found no face, -1 every pixel
            raise ModelError(f"{model_dir}: the detection threshold {self.threshold!r} is not between 0 and 1")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(onnx_path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelError(f"cannot load detector {onnx_path}: {first_line(exc)}") from None
        self._input = self.session.get_inputs()[0].name

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        if not images:
            return []
        outputs = self.session.run(None, {self._input: preprocess(images, self.input_w, self.input_h)})
        self._check_shapes(outputs, len(images))
        heat, size, offset = outputs
        heat = _sigmoid(heat[:, 0])
        out = []
        for i, img in enumerate(images):
            h, w = img.shape[:2]
            out.append(decode(heat[i], size[i], offset[i], w / self.input_w, h / self.input_h, self.threshold))
        return out

    def detect(self, image: np.ndarray) -> Detections:
        return self.detect_batch([image])[0]

    def _check_shapes(self, outputs: list, n: int) -> None:
        """A network whose outputs are not the card's heat map, sizes and offsets (one cell per STRIDE pixels of
        the card's input) is refused: a one-cell heat map would otherwise draw a box on every frame."""
        cells = (self.input_h // STRIDE, self.input_w // STRIDE)
        expected = [(n, 1, *cells), (n, 2, *cells), (n, 2, *cells)]
        shapes = [tuple(np.shape(o)) for o in outputs]
        if shapes != expected:
            raise ModelError(f"{self.name}: the network's outputs {shapes} are not the heat map, sizes and offsets "
                             f"{expected} that its card's input_size {self.input_w}x{self.input_h} gives; "
                             "a damaged or mismatched detector")
