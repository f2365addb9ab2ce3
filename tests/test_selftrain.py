"""Self-training on a camera's own footage: which boxes become labels, which are taught as not faces, which frames
are left out; and the command that does it, saying whether it was checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from rat_monitor.cli import app
from rat_monitor.detect.selftrain import SURE, UNSURE, pseudo_label
from rat_monitor.synth.lab import lab_frame
from rat_monitor.detect.train import Sample
from rat_monitor.types import Detections

from conftest import write_yolo

runner = CliRunner()
LED = np.float32([10, 10, 30, 30])  # a glare spot at one place in every frame


class ScriptedDetector:
    """Finds, in frame (run r, frame f) as its top-left pixels say: the LED everywhere; a face moving across the
    cage from run to run; in run 3 a doubtful box in one frame; in run 5 a face on only 2 of its 6 frames."""

    def __init__(self):
        self.threshold = 0.4

    def detect_batch(self, images):
        out = []
        for image in images:
            r, f = int(image[0, 0, 0]), int(image[0, 1, 0])
            boxes, scores = [LED], [0.45]  # the glare, half taken for a face
            if r != 5 or f < 2:
                boxes.append(np.float32([60 + 12 * r + f, 50, 100 + 12 * r + f, 90]))
                scores.append(0.9 if f else 0.35)  # sure on most frames of the run, not on its first
            if r == 3 and f == 4:
                boxes.append(np.float32([150, 100, 170, 120]))
                scores.append(0.3)
            keep = np.array(scores) >= self.threshold
            out.append(Detections(np.array(boxes, np.float32)[keep], np.array(scores, np.float32)[keep]))
        return out


def runs_of(n_runs: int, frames: int) -> list[list[np.ndarray]]:
    runs = []
    for r in range(n_runs):
        run = []
        for f in range(frames):
            image = np.zeros((200, 320, 3), np.uint8)
            image[0, 0], image[0, 1] = r, f
            run.append(image)
        runs.append(run)
    return runs


def test_sure_persisting_faces_become_labels_fixed_boxes_not_faces_and_doubt_is_left_out():
    detector = ScriptedDetector()
    pseudo = pseudo_label(detector, runs_of(10, 6))
    assert detector.threshold == 0.4  # the detector's own threshold is given back
    assert UNSURE < 0.3 < SURE < 0.9
    assert len(pseudo.samples) == 8 and pseudo.runs_left_out == 2  # runs 3 (a doubtful box) and 5 (no persistence)
    runs_taken = sorted(int(s.image[0, 0, 0]) for s in pseudo.samples)
    assert runs_taken == [0, 1, 2, 4, 6, 7, 8, 9]
    for s in pseudo.samples:
        r, f = int(s.image[0, 0, 0]), int(s.image[0, 1, 0])
        assert s.boxes.tolist() == [[60 + 12 * r + f, 50, 100 + 12 * r + f, 90]]  # the face, where it was then
        assert s.negatives.tolist() == [LED.tolist()]  # the glare, taught as not a face
    assert pseudo.faces == 8 and pseudo.fixed == 8


class HeadFixed(ScriptedDetector):
    """A head-fixed animal: its face, which the detector is sure of, never moves."""

    def detect_batch(self, images):
        return [Detections(np.float32([[100, 60, 150, 110]]), np.float32([0.9])) for _ in images]


def test_a_face_that_never_moves_is_never_taught_as_not_a_face():
    """Sure of a box at one place through the whole footage: a marker, or a head-fixed (or sleeping) animal. It is
    left out, never taught as not a face, unless a labelled face of this camera sits there: then it is the animal."""
    alone = pseudo_label(HeadFixed(), runs_of(10, 6))
    assert alone.samples == [] and alone.fixed == 0 and alone.runs_left_out == 10
    labelled = pseudo_label(HeadFixed(), runs_of(10, 6), labelled_faces=np.float32([[102, 58, 151, 112]]))
    assert len(labelled.samples) == 10 and labelled.faces == 10 and labelled.fixed == 0


def test_a_place_seen_in_few_runs_is_not_taken_for_a_fixed_thing():
    """An animal that rests at one place in two of ten runs is still an animal: a box becomes a fixed thing only
    where it comes back in most of the footage."""

    class Resting(ScriptedDetector):
        def detect_batch(self, images):
            out = []
            for image in images:
                r = int(image[0, 0, 0])
                x = 60 if r in (2, 7) else 60 + 15 * r
                out.append(Detections(np.float32([[x, 50, x + 40, 90]]), np.float32([0.9])))
            return out

    pseudo = pseudo_label(Resting(), runs_of(10, 1))  # stills: runs of one frame
    assert len(pseudo.samples) == 10 and pseudo.fixed == 0 and pseudo.faces == 10


def test_runs_of_a_video_are_the_frames_a_full_read_gives_at_those_places(short_video):
    """Runs are sought (an hour of footage costs what a minute does), and are still the very frames, 3 apart."""
    from rat_monitor.detect.selftrain import runs_of_video
    from rat_monitor.sources import CaptureSource

    runs = runs_of_video(short_video, runs=5, frames=4, step=3)
    with CaptureSource(video=short_video) as source:
        frames = [f.image for f in source]
    starts = [int(s) for s in np.linspace(0, len(frames) - 12, 5)]
    assert len(runs) == 5 and all(len(run) == 4 for run in runs)
    for run, start in zip(runs, starts):
        for k, image in enumerate(run):
            assert np.array_equal(image, frames[start + 3 * k])


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """Labelled synthetic lab frames the self-trained detector never learns from."""
    frames = [Sample(*lab_frame(41, i)) for i in range(16)]
    return write_yolo(tmp_path_factory.mktemp("held") / "yolo", [s for s in frames if len(s.boxes)][:6])


def test_self_train_learns_from_a_video_writes_its_rounds_and_is_checked(short_video, held_out, tmp_path):
    out = tmp_path / "cam"
    result = runner.invoke(app, ["detector", "self-train", str(short_video), "--out", str(out), "--rounds", "1",
                                 "--epochs", "2", "--check", str(held_out)])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    rounds = card["training"]["self_training"]
    assert rounds[0]["faces"] > 0 and f"round 1: {rounds[0]['faces']} pseudo-labelled faces" in result.output
    assert "self-trained" in card["training"]["description"] and card["name"] == "cam"
    assert "held-out check:" in result.output and card["metrics"]["held_out"]["faces"] >= 5
    assert card["validation"]["status"] == "held-out frames" and "self-trained" in card["caveat"]
    from rat_monitor.detect import load_detector

    assert load_detector(out).input_w % 32 == 0


def test_self_train_without_a_check_says_so(short_video, tmp_path):
    result = runner.invoke(app, ["detector", "self-train", str(short_video), "--out", str(tmp_path / "d"), "--rounds",
                                 "1", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "not checked" in result.output
    card = json.loads((tmp_path / "d" / "card.json").read_text())
    assert card["validation"]["status"] == "not checked" and "not checked" in card["caveat"]


@pytest.mark.parametrize("args,code,said", [
    (["--rounds", "0"], 2, "--rounds must be a number 1 or more and at most 5"),
    (["--check", "no/such/folder"], 2, "no such folder"),
])
def test_self_train_refuses_bad_options_in_one_line(short_video, tmp_path, args, code, said):
    result = runner.invoke(app, ["detector", "self-train", str(short_video), "--out", str(tmp_path / "d"), *args])
    assert result.exit_code == code and said in result.output, result.output
    assert not (tmp_path / "d").exists()


def test_self_train_of_a_missing_video_is_a_source_error(tmp_path):
    result = runner.invoke(app, ["detector", "self-train", str(tmp_path / "gone.mp4"), "--out", str(tmp_path / "d")])
    assert result.exit_code == 3 and "no such video or folder" in result.output, result.output
