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


def test_pose_hint_from_box_shape():
    assert pose_hint(np.array([0, 0, 80, 100])) == "frontal"
    assert pose_hint(np.array([0, 0, 110, 100])) == "three-quarter"
    assert pose_hint(np.array([0, 0, 150, 100])) == "profile"
