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
# A region around a tracked face reaches REGION_MARGIN face sizes beyond it on each side, and at least
# REGION_MIN_MARGIN pixels of the network's input: the network's view reaches far, so a narrower region changes
# what it sees. Chosen on fresh synthetic lab frames (seed 98, 180 found faces): at 1.5 face sizes alone 16 of 80
# faces were lost in their region (IoU < 0.5 with the whole frame's box); with at least 48 pixels 2 of 78
# at the bundled input and 2 of 118 at 576x320 (mean IoU 0.91-0.94; 64 pixels lost fewer, but left the bundled
# input no region at 720p-1080p). A face lost in its region is searched for in the whole frame at the next frame:
# on fresh synthetic videos (seeds 71, 73 and albino_onset) tracked faces' precision and recall stayed within
# 0.007 of whole-frame search, or rose (README, Detector).
REGION_MARGIN = 1.5
REGION_MIN_MARGIN = 48


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> Detections: ...


def preprocess(images: list[np.ndarray], width: int = INPUT_W, height: int = INPUT_H) -> np.ndarray:
    """BGR uint8 frames -> float32 NCHW batch in [0, 1], RGB, resized to the network input."""
    smalls = [downscale(img, width, height) for img in images]
    smalls = [cv2.cvtColor(s, cv2.COLOR_GRAY2BGR) if s.ndim == 2 else s for s in smalls]
    # OpenCV's blob maker swaps, scales and reorders in one pass: 0.36 ms at 576x320 against 1.07 in numpy
    return cv2.dnn.blobFromImages(smalls, 1.0 / 255.0, swapRB=True)


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


def _windows(boxes: list[np.ndarray], scale_x: float, scale_y: float, input_w: int,
             input_h: int) -> list[tuple[int, int, int, int]] | None:
    """The network-input windows (x0, y0, x1, y1 on the whole frame's 16-pixel grid) around BOXES (frame pixels),
    reaching REGION_MARGIN face sizes beyond each (REGION_MIN_MARGIN input pixels at least), overlapping ones
    merged; None when there is no box or they would cover half of the whole frame's input or more (no saving, and
    the whole frame finds new faces too)."""
    grid = 16
    windows = []
    for b in boxes:
        size = max(b[2] - b[0], b[3] - b[1], 1.0)
        mx = max(REGION_MARGIN * size / scale_x, REGION_MIN_MARGIN)
        my = max(REGION_MARGIN * size / scale_y, REGION_MIN_MARGIN)
        windows.append((max(0, int(np.floor((b[0] / scale_x - mx) / grid)) * grid),
                        max(0, int(np.floor((b[1] / scale_y - my) / grid)) * grid),
                        min(input_w, int(np.ceil((b[2] / scale_x + mx) / grid)) * grid),
                        min(input_h, int(np.ceil((b[3] / scale_y + my) / grid)) * grid)))
    i = 0
    while i < len(windows):  # a handful of faces: a loop over windows, never over pixels
        a = windows[i]
        j = next((j for j, b in enumerate(windows) if j != i and a[0] < b[2] and b[0] < a[2] and a[1] < b[3]
                  and b[1] < a[3]), None)
        if j is None:
            i += 1
            continue
        b = windows.pop(j)
        windows[min(i, j)] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
        i = 0  # the merged window may now reach one already passed
    windows = [w for w in windows if w[2] > w[0] and w[3] > w[1]]  # boxes wholly outside the frame reach nothing
    area = sum((w[2] - w[0]) * (w[3] - w[1]) for w in windows)
    return windows if windows and area < 0.5 * input_w * input_h else None


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
        image_input = self.session.get_inputs()[0]
        self._input = image_input.name
        # exported runnable at any size (detect.net.export_onnx; not detectors made before): regions can be searched
        self.any_size = not all(isinstance(d, int) for d in image_input.shape[2:])

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        return self._found(images, self.input_w, self.input_h) if images else []

    def _found(self, images: list[np.ndarray], width: int, height: int) -> list[Detections]:
        """Faces in IMAGES, each resized to WIDTH x HEIGHT for the network, in the images' own pixels."""
        outputs = self.session.run(None, {self._input: preprocess(images, width, height)})
        self._check_shapes(outputs, len(images), width, height)
        heat, size, offset = outputs
        heat = _sigmoid(heat[:, 0])
        return [decode(heat[i], size[i], offset[i], img.shape[1] / width, img.shape[0] / height, self.threshold)
                for i, img in enumerate(images)]

    def detect(self, image: np.ndarray) -> Detections:
        return self.detect_batch([image])[0]

    def regions(self, image_shape: tuple, boxes: list[np.ndarray]) -> list[tuple[int, int, int, int]] | None:
        """Where a search around BOXES (tracked faces, frame pixels) would look: windows of the network's input,
        cut on the whole frame's 16-pixel grid at its scale, so that they see the same pixels on the same grid as a
        whole-frame call, for a fraction of its cost. None when they would cover half the frame or more (no
        saving: search the whole frame), and for a detector exported for one input size only."""
        if not self.any_size:
            return None
        return _windows(boxes, image_shape[1] / self.input_w, image_shape[0] / self.input_h, self.input_w,
                        self.input_h)

    def detect_regions(self, image: np.ndarray, windows: list[tuple[int, int, int, int]]) -> Detections:
        """Faces in WINDOWS (from regions()). A box cut by a window's edge is left out: a face beside the window,
        seen in part."""
        h, w = image.shape[:2]
        found = []
        for nx0, ny0, nx1, ny1 in windows:
            x0, y0, x1, y1 = (round(nx0 * w / self.input_w), round(ny0 * h / self.input_h),
                              round(nx1 * w / self.input_w), round(ny1 * h / self.input_h))
            (dets,) = self._found([image[y0:y1, x0:x1]], nx1 - nx0, ny1 - ny0)
            cut_by = np.array([x0 if nx0 > 0 else -np.inf, y0 if ny0 > 0 else -np.inf,
                               x1 if nx1 < self.input_w else np.inf, y1 if ny1 < self.input_h else np.inf])
            boxes_px = dets.boxes + np.array([x0, y0, x0, y0], np.float32)
            slack = STRIDE * w / self.input_w  # a cell: a box this near a cut edge reaches past it
            inside = ((boxes_px[:, 0] > cut_by[0] + slack) & (boxes_px[:, 1] > cut_by[1] + slack)
                      & (boxes_px[:, 2] < cut_by[2] - slack) & (boxes_px[:, 3] < cut_by[3] - slack))
            found.append(Detections(boxes_px[inside], dets.scores[inside]))
        boxes_all = np.concatenate([d.boxes for d in found])
        scores = np.concatenate([d.scores for d in found])
        order = np.argsort(-scores)
        boxes_all, scores = boxes_all[order], scores[order]
        keep = suppress_duplicates(boxes_all)
        return Detections(boxes_all[keep], scores[keep])

    def _check_shapes(self, outputs: list, n: int, width: int, height: int) -> None:
        """A network whose outputs are not the heat map, sizes and offsets of its input (one cell per STRIDE pixels)
        is refused: a one-cell heat map would otherwise draw a box on every frame."""
        cells = (height // STRIDE, width // STRIDE)
        expected = [(n, 1, *cells), (n, 2, *cells), (n, 2, *cells)]
        shapes = [tuple(np.shape(o)) for o in outputs]
        if shapes != expected:
            raise ModelError(f"{self.name}: the network's outputs {shapes} are not the heat map, sizes and offsets "
                             f"{expected} that an input of {width}x{height} gives (its card's input_size is "
                             f"{self.input_w}x{self.input_h}); a damaged or mismatched detector")
