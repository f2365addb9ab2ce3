"""Tracker: identities through occlusion gaps and crossings, prediction on skipped frames, adaptive k."""

from __future__ import annotations

import numpy as np

from rat_monitor.track import DetectionSchedule, Tracker, pose_hint
from rat_monitor.types import Detections


def _dets(*boxes, score=0.9):
    if not boxes:
        return Detections.empty()
    b = np.array(boxes, np.float32)
    return Detections(b, np.full(len(b), score, np.float32))


def _box(cx, cy, s=80):
    return (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)


def test_one_track_through_skipped_frames_and_a_short_occlusion():
    tr = Tracker(max_misses=3)
    ids = set()
    for i in range(60):
        cx = 100 + 4 * i
        if 20 <= i < 23:
            tracks = tr.update(_dets())  # face hidden for 3 detector runs: within max_misses, the track waits
            assert tracks == []
        elif i % 3 and not tr.lost:
            tracks = tr.update(None)  # detector skipped: the Kalman prediction carries the box
            assert tracks and not tracks[0].detected
            if i > 6:  # once the velocity is known
                assert abs((tracks[0].box[0] + tracks[0].box[2]) / 2 - cx) < 8
            ids.add(tracks[0].track_id)
        else:
            tracks = tr.update(_dets(_box(cx, 200)))
            assert tracks[0].detected
            ids.add(tracks[0].track_id)
    assert ids == {1}


def test_lost_face_is_dropped_then_redetected_as_new_track():
    tr = Tracker(max_misses=1)
    tr.update(_dets(_box(100, 100)))
    assert not tr.lost
    for _ in range(3):
        assert tr.update(_dets()) == []
    assert tr.lost
    tracks = tr.update(_dets(_box(300, 100)))
    assert tracks[0].track_id == 2


def test_two_rats_crossing_keep_their_identities():
    tr = Tracker()
    for i in range(50):
        a = _box(100 + 6 * i, 150)  # left to right
        b = _box(400 - 6 * i, 190)  # right to left, crossing a little lower
        tracks = tr.update(_dets(a, b))
        by_id = {t.track_id: (t.box[0] + t.box[2]) / 2 for t in tracks}
        assert set(by_id) == {1, 2}
        assert abs(by_id[1] - (100 + 6 * i)) < 10 and abs(by_id[2] - (400 - 6 * i)) < 10


def test_schedule_adapts_to_motion():
    sched = DetectionSchedule(still_every_s=0.2)
    tr = Tracker()
    assert sched.due(tr, 0.0)  # nothing tracked: detect now
    tr.update(_dets(_box(100, 100)))
    for _ in range(5):  # still face: every 0.2 s, whatever the frame rate
        tr.update(_dets(_box(100, 100)))
    assert sum(sched.due(tr, i / 30) for i in range(1, 31)) == 5  # 30 fps: every sixth frame
    assert sum(sched.due(tr, 1 + i / 10) for i in range(1, 11)) == 5  # 10 fps: every second frame
    fast = Tracker()
    for i in range(6):
        fast.update(_dets(_box(100 + 20 * i, 100)))
    assert all(sched.due(fast, 2 + i / 30) for i in range(5))
    assert sched.due(tr, 0.5)  # time going back (a new file, a seek): detect at once


def test_the_whole_frame_is_searched_every_second_and_whenever_a_face_was_missed():
    """Between whole-frame searches the detector may look only around the tracked faces: never while nothing is
    tracked or a face was just missed (it may be anywhere now), and never for longer than a second (a new face)."""
    sched = DetectionSchedule(still_every_s=0.2, whole_every_s=1.0)
    tr = Tracker()
    assert sched.whole_due(tr, 0.0)  # nothing tracked
    tr.update(_dets(_box(100, 100)))
    assert not any(sched.whole_due(tr, t) for t in (0.2, 0.4, 0.6, 0.8))
    assert sched.whole_due(tr, 1.0)  # a second since the last whole-frame search
    tr.update(_dets())  # the face was missed
    assert sched.whole_due(tr, 1.2) and sched.whole_due(tr, 1.4)
    tr.update(_dets(_box(104, 100)))
    assert not sched.whole_due(tr, 1.6)
    assert sched.whole_due(tr, 0.5)  # time going back (a new file, a seek)


def test_pose_hint_from_box_shape():
    assert pose_hint(np.array([0, 0, 80, 100])) == "frontal"
    assert pose_hint(np.array([0, 0, 110, 100])) == "three-quarter"
    assert pose_hint(np.array([0, 0, 150, 100])) == "profile"


class _RegionDetector:
    """A detector that can search regions, finding one still face of 40 px; it records what each run searched."""

    name = "scripted"
    any_size = True

    def __init__(self):
        self.searched: list[str] = []
        self.face = Detections(np.array([_box(600, 300, 40)], np.float32), np.array([0.9], np.float32))

    def detect(self, image):
        self.searched.append("whole")
        return self.face

    def regions(self, image_shape, boxes):
        return [(0, 0, 64, 64)] if boxes else None

    def detect_regions(self, image, windows):
        self.searched.append("regions")
        return self.face


def test_a_still_face_is_searched_for_around_its_track_and_the_whole_frame_every_second():
    from rat_monitor.pipeline import FaceFinder, Settings
    from rat_monitor.types import Frame

    image = np.zeros((720, 1280, 3), np.uint8)
    for animals, expected in ((1, "regions"), (2, "whole")):
        det = _RegionDetector()
        finder = FaceFinder(det, Settings(animals=animals))
        for i in range(61):  # two seconds at 30 fps
            finder.step(Frame(i, i / 30, image))
        assert len(det.searched) == 11  # every 0.2 s on a still face
        wholes = [i for i, s in enumerate(det.searched) if s == "whole"]
        if expected == "regions":  # the first run and then one a second: 0, 1 s, 2 s
            assert wholes == [0, 5, 10] and finder.region_runs == 8
        else:  # several animals: every run searches the whole frame
            assert wholes == list(range(11)) and finder.region_runs == 0
