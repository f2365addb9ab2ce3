"""Per-minute aggregation: counts, unknown minutes never imputed, smoothing, alerts with hysteresis."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from rat_monitor.timeline import AlertRule, Timeline
from rat_monitor.types import Candidate, Prediction, Quality, ScoredFrame

Q = Quality(1, 0, 1, 100, 1, 1, 1)


def _scored(t_s, p_pain, rgs=None):
    c = Candidate(int(t_s * 10), t_s, 1, np.zeros(4), np.zeros((8, 8, 3), np.uint8), Q)
    aus = None if rgs is None else np.full(4, rgs)
    return ScoredFrame(c, Prediction(np.array([1 - p_pain, p_pain, 0.0]), "m", True, aus))


def _run(pain_by_minute, fps=2, rgs_by_minute=None):
    """Feeds a timeline like the pipeline does: a scored frame every 10 s in known minutes."""
    tl = Timeline(start_time=1_700_000_000.0, rule=AlertRule(threshold=0.7, minutes=3, clear_below=0.5))
    rows = []
    n = int(len(pain_by_minute) * 60 * fps)
    for i in range(n):
        t = i / fps
        p = pain_by_minute[int(t // 60)]
        rgs = None if rgs_by_minute is None else rgs_by_minute[int(t // 60)]
        if p is not None and i % (10 * fps) == 0:
            tl.add_scored([_scored(t, p, rgs)])
        rows += tl.add_frame(t, has_face=p is not None)
    rows += tl.finish(end_s=n / fps)
    return rows


def test_minutes_count_frames_and_unknown_minutes_stay_empty():
    rows = _run([0.1, None, 0.9])
    assert [r.minute for r in rows] == [0, 1, 2]
    assert all(r.frames == 120 for r in rows)
    assert rows[1].pain_level == "unknown" and rows[1].pain_prob is None and rows[1].pain_prob_smoothed is None
    assert rows[1].face_frames == 0 and rows[1].scored_frames == 0
    # a binary model says "pain", never a severity it cannot tell, and leaves the severity shares empty
    assert rows[0].pain_level == "none" and rows[2].pain_level == "pain"
    assert rows[2].share_none is not None and rows[2].share_moderate is None and rows[2].share_severe is None
    assert rows[2].pain_score is None  # no 0-2 level from a model that cannot tell moderate from severe
    assert rows[0].scored_frames == 6
    # ISO 8601 wall clock of each minute's start
    assert datetime.fromisoformat(rows[2].start_time).timestamp() == 1_700_000_000.0 + 120


def test_alert_raised_once_after_three_known_minutes_and_cleared_with_hysteresis():
    rows = _run([0.1, 0.95, 0.95, 0.95, 0.95, None, 0.95, 0.6, 0.1, 0.1])
    alerts = [r.alert for r in rows]
    events = [(r.minute, r.alert_event) for r in rows if r.alert_event]
    assert events[0][1] == "raised" and events[0][0] in (3, 4)
    assert [e for _, e in events].count("raised") == 1
    assert alerts[5] == 1  # an unknown minute neither raises nor clears
    assert events[-1][1] == "cleared" and alerts[-1] == 0


def test_the_rgs_intervention_threshold_raises_its_own_alert_and_says_so():
    """Oliver et al. 2014: a mean RGS above 0.67 calls for analgesia. Three known minutes above it raise an alert
    even while P(pain) stays low; the row and the alert record name the rule; a minute at 0.6 clears it."""
    from rat_monitor.sinks.files import alert_record

    rows = _run([0.2] * 7, rgs_by_minute=[0.3, 0.9, 0.9, None, 0.9, 0.6, 0.9])
    rows_alert = [r.alert for r in rows]
    assert rows_alert == [0, 0, 0, 0, 1, 0, 0]  # minute 3 has no RGS: it neither counts nor clears
    raised = next(r for r in rows if r.alert_event == "raised")
    assert raised.alert_rule == "rgs" and alert_record(raised, "raised")["rule"] == "rgs"
    assert alert_record(raised, "raised")["rgs"] == pytest.approx(0.9)
    assert rows[5].alert_event == "cleared" and rows[5].alert_rule == ""


def test_the_alert_rules_judge_the_values_as_the_timeline_writes_them():
    """An RGS of 0.6704 is written 0.670: a reader must not see "0.670" raise the "above 0.67" rule; a smoothed
    P(pain) of 0.69996 is written 0.7000 and counts as at the 0.7 threshold."""
    from rat_monitor.sinks.files import timeline_row

    rows = _run([0.2] * 4, rgs_by_minute=[0.6704] * 4)
    assert not any(r.alert for r in rows) and timeline_row(rows[-1], action_units=True)[-1] == "0.670"
    assert any(r.alert for r in _run([0.2] * 4, rgs_by_minute=[0.6706] * 4))
    assert any(r.alert for r in _run([0.69996] * 5))


def test_both_rules_on_are_both_named():
    rows = _run([0.95] * 5, rgs_by_minute=[1.5] * 5)
    assert rows[-1].alert == 1 and rows[-1].alert_rule == "p_pain+rgs"
    assert [r.alert_rule for r in _run([0.95] * 5)][-1] == "p_pain"  # no AU model: P(pain) only


def test_a_video_of_exactly_one_minute_has_one_row():
    """600 frames at 10 fps end at 60 s give or take rounding: no empty minute 1 after them."""
    tl = Timeline()
    rows = []
    for i in range(600):
        rows += tl.add_frame(i * 0.1, has_face=False)
    rows += tl.finish(end_s=600 * 0.1 + 1e-9)
    assert [r.minute for r in rows] == [0] and rows[0].end_s == pytest.approx(60.0)


def test_no_alert_on_control():
    rows = _run([0.1] * 6)
    assert not any(r.alert for r in rows)


def test_gap_minutes_without_frames_are_rows_too():
    tl = Timeline()
    rows = tl.add_frame(5.0, True) + tl.add_frame(200.0, True) + tl.finish(201.0)
    assert [r.minute for r in rows] == [0, 1, 2, 3]
    assert [r.frames for r in rows] == [1, 0, 0, 1]
    assert rows[-1].end_s == 201.0


def test_unknown_minutes_widen_the_interval_and_get_no_value():
    from rat_monitor.timeline import smooth

    steady = _run([0.8] * 5)
    gappy = _run([0.8, 0.8, None, 0.8, 0.8])
    for rows in (steady, gappy):
        smooth(rows, AlertRule())
    assert gappy[2].pain_prob_smoothed is None and gappy[2].smoothed_low is None
    width = lambda r: r.smoothed_high - r.smoothed_low  # noqa: E731
    assert width(gappy[3]) > width(steady[3]) and width(gappy[4]) > width(steady[4])
    assert steady[2].pain_prob_smoothed == pytest.approx(0.8)
    # raw per-minute interval: 6 frames give a wide one
    assert steady[0].pain_prob_low < 0.8 < steady[0].pain_prob_high


def test_smoothing_never_leads_the_data():
    """A pain-free minute before the pain stays pain-free once smoothed (the demo once showed 0.61 from a raw
    0.25 because an archive's smoother looked ahead); the rise shows from its own minute on, pooled with the
    minutes before it (halving weights)."""
    rows = _run([0.1, 0.1, 0.9, 0.9])
    smoothed = [r.pain_prob_smoothed for r in rows]
    assert smoothed[:2] == [pytest.approx(0.1), pytest.approx(0.1)]
    assert smoothed[2] == pytest.approx((0.9 + 0.1 * 0.5 + 0.1 * 0.25) / (1 + 0.5 + 0.25))
    assert smoothed[3] > smoothed[2]


def test_a_source_given_up_leaves_source_lost_minutes_until_then():
    tl = Timeline(live=True)
    for t in np.arange(0, 30, 1.0):
        tl.add_frame(float(t), True)
    rows = tl.finish(end_s=150.0)  # lost at 30 s, given up at 150 s
    assert [(r.minute, r.status) for r in rows] == [(0, "ok"), (1, "source_lost"), (2, "source_lost")]
    assert rows[0].end_s == 60.0 and rows[-1].end_s == 150.0
