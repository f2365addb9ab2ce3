"""An int8 copy of a face detector: ONNX Runtime's static quantization (QDQ, int8 weights per channel, uint8
activations), its activation ranges calibrated on frames of the camera beside randomised lab frames. Measured on
this 2-core CPU (2026-12-07): a call at 576x320 costs 0.38 of the float one, at the bundled 288x160 (frame resize
included) 0.6-0.7; the card says it was quantized, from what and on which frames, and `detector quantize --check`
measures both on held-out frames before anyone relies on it. Needs the 'train' extra (onnx)."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..models import read_card, verified_file, write_card
from .centernet import INPUT_H, INPUT_W, preprocess

LAB_FRAMES = 24  # randomised lab frames beside the camera's: ranges that also cover what it has not shown yet
MAX_CAMERA_FRAMES = 48


def calibration_frames(camera: list[np.ndarray], seed: int = 5) -> list[np.ndarray]:
    """The camera's frames (at most MAX_CAMERA_FRAMES, spread) and LAB_FRAMES randomised lab frames."""
    from ..synth.lab import lab_frame

    if len(camera) > MAX_CAMERA_FRAMES:
        camera = [camera[int(i)] for i in np.linspace(0, len(camera) - 1, MAX_CAMERA_FRAMES)]
    return list(camera) + [lab_frame(seed, i)[0] for i in range(LAB_FRAMES)]


def quantize_detector(source: Path, out: Path, frames: list[np.ndarray], what: str) -> dict:
    """OUT: SOURCE's network quantized to int8, its ranges calibrated on FRAMES (WHAT they are, for the card);
    the float weights kept beside it, so a fine-tune can start from it. Returns the card."""
    from ..extras import require

    require(("onnx",), "quantizing the detector", "train")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    card = read_card(source)
    width, height = card.get("input_size", [INPUT_W, INPUT_H])
    batches = iter([{"image": preprocess([f], width, height)} for f in frames])

    class Frames(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # ONNX's own shape inference is enough for this network (convolutions only); the symbolic pass also wrote
        # temporary files into the working directory
        quant_pre_process(str(verified_file(source, "model.onnx")), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out / "model.onnx"), Frames(), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    files = ["model.onnx"]
    if (Path(source) / "weights.safetensors").exists():
        shutil.copyfile(verified_file(source, "weights.safetensors"), out / "weights.safetensors")
        files.append("weights.safetensors")
    card = {**card, "name": out.name, "quantized": {
        "method": "ONNX Runtime static quantization, QDQ, int8 weights per channel, uint8 activations",
        "from": str(source), "calibration": f"{len(frames)} frames: {what}"}}
    card["metrics"] = {}  # the float network's figures are not this one's: measure it (detector evaluate --record)
    return write_card(out, card, files)


def call_ms(detector, image: np.ndarray, calls: int = 10) -> float:
    """A detector's cost of one call on IMAGE (resize included), after a warm-up call."""
    detector.detect(image)
    t0 = time.perf_counter()
    for _ in range(calls):
        detector.detect(image)
    return (time.perf_counter() - t0) * 1000 / calls
