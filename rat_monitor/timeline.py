"""Per-minute aggregation of scored frames, smoothing across minutes with an honest interval, and the
humane-endpoint alert.

A minute without scored frames is 'unknown' (status 'unfamiliar' when its selected faces were all refused as
unlike the model's training faces): nothing is imputed; its smoothed value stays empty, and the
minutes around it get wider intervals because fewer observations support them. Smoothing is a weighted pool
of the scored frames of this and earlier known minutes (halving weights), live and for archives alike: a
smoother that looked ahead would show a pain-free minute as painful before the pain began, and an archive's
report would disagree with what the live view said at the time. The interval is the 95% interval of a
Jeffreys Beta interval over the pooled, weighted frame probabilities.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from scipy.special import betaincinv  # the Beta quantile; scipy.stats would add 1.4 s to every start

from .types import MinuteSummary, ScoredFrame, au_values

CAUSAL_WEIGHTS = (1.0, 0.5, 0.25, 0.125)  # this minute, one before, two before, ...


# The Rat Grimace Scale's analgesic intervention threshold: a mean RGS score above it calls for analgesia
# (Oliver et al. 2014, PLoS One 9(5): e97882; sensitivity 84.6%, specificity 88.6%).
RGS_INTERVENTION = 0.67
RGS_SOURCE = "Oliver et al. 2014, PLoS One 9(5): e97882"
RULE_NAMES = {"p_pain": "P(pain)", "rgs": "RGS"}  # alert_rule's keys, as people read them
# Decimals timeline.csv writes probabilities and AU/RGS scores with. The alert rules compare the values as
# written, so that a reader never sees "0.670" raise an alert for RGS above 0.67.
PROB_DIGITS, AU_DIGITS = 4, 3


@dataclass
class AlertRule:
    threshold: float = 0.7  # smoothed P(pain) at or above this ...
    minutes: int = 3  # ... for this many consecutive known minutes raises an alert
    clear_below: float = 0.5  # hysteresis: the alert clears when the smoothed value drops below this
    # With a model that scores action units: a minute's RGS score above this for `minutes` known minutes in a
    # row raises an alert too; a known minute at or below it clears that rule. None: P(pain) only.
    rgs_above: float | None = RGS_INTERVENTION


def iso_time(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def beta_interval(successes: float, failures: float) -> tuple[float, float]:
    """Jeffreys 95% interval (Beta(0.5 + successes, 0.5 + failures), ends pinned at 0 and 1 when there are no
    successes or failures): wide with few observations, narrow with many."""
    lo, hi = betaincinv(0.5 + successes, 0.5 + failures, [0.025, 0.975])
    return (0.0 if successes <= 1e-9 else float(lo)), (1.0 if failures <= 1e-9 else float(hi))


@dataclass
class AlertState:
    run: int = 0  # consecutive known minutes at or above the P(pain) threshold
    on: bool = False  # the P(pain) rule's alert
    rgs_run: int = 0  # consecutive known minutes with RGS above rgs_above
    rgs_on: bool = False  # the RGS rule's alert


def smooth(rows: list[MinuteSummary], rule: AlertRule, start: int = 0, state: AlertState | None = None) -> AlertState:
    """Fills pain_prob_smoothed (from this and earlier minutes only), its interval, alert, the rules that hold it
    on and alert events, in place, for rows[start:] (the alert state before rows[start] given); returns the alert
    state after the last row. The alert is on while either rule is: raised when the first turns on, cleared when
    the last turns off."""
    reach = len(CAUSAL_WEIGHTS)
    by_minute = {r.minute: r for r in rows[max(0, start - reach):]}
    state = state or AlertState()
    run, alert_on = state.run, state.on
    rgs_run, rgs_on = state.rgs_run, state.rgs_on
    for r in rows[start:]:
        was_on = alert_on or rgs_on
        r.alert_event = ""
        r.pain_prob_smoothed = r.smoothed_low = r.smoothed_high = None
        if r.scored_frames:
            near = [(by_minute.get(r.minute - d), w) for d, w in enumerate(CAUSAL_WEIGHTS)]
            near = [(m, w) for m, w in near if m is not None and m.scored_frames]
            pain = sum(w * m.pain_sum for m, w in near)
            total = sum(w * m.scored_frames for m, w in near)
            r.pain_prob_smoothed = pain / total
            r.smoothed_low, r.smoothed_high = beta_interval(pain, total - pain)
            smoothed = round(r.pain_prob_smoothed, PROB_DIGITS)
            run = run + 1 if smoothed >= rule.threshold else 0
            if not alert_on and run >= rule.minutes:
                alert_on = True
            elif alert_on and smoothed < rule.clear_below:
                alert_on = False
                run = 0
            rgs = (r.action_units or {}).get("rgs")
            if rule.rgs_above is not None and rgs is not None:
                rgs_run = rgs_run + 1 if round(rgs, AU_DIGITS) > rule.rgs_above else 0
                rgs_on = rgs_run >= rule.minutes or (rgs_on and rgs_run > 0)
        # an unknown minute neither raises nor clears an alert
        r.alert = int(alert_on or rgs_on)
        r.alert_rule = "+".join(name for name, on in (("p_pain", alert_on), ("rgs", rgs_on)) if on)
        if r.alert and not was_on:
            r.alert_event = "raised"
        elif was_on and not r.alert:
            r.alert_event = "cleared"
    return AlertState(run, alert_on, rgs_run, rgs_on)


class Timeline:
    """Feed frames in time order; closed minutes come back as MinuteSummary rows (causally smoothed)."""

    def __init__(self, start_time: float | None = None, rule: AlertRule | None = None, live: bool = False,
                 earlier: list[MinuteSummary] | None = None, animal: str = ""):
        self.start_time = start_time  # epoch seconds of t_s = 0, when known
        self.animal = animal  # whose minutes these are, with several animals (MinuteSummary.animal)
        self.rule = rule or AlertRule()
        self.live = live
        self._current: MinuteSummary | None = None
        self._probs: dict[int, list[np.ndarray]] = {}  # minute -> P(none, moderate, severe) of its scored frames
        self._aus: dict[int, list[np.ndarray]] = {}  # minute -> AU scores of its scored frames (AU models only)
        self._refused: dict[int, int] = {}  # minute -> selected crops refused as unfamiliar
        self._binary = False  # the model tells pain from no pain only: its level is "pain", never a severity
        self.rows: list[MinuteSummary] = list(earlier or [])  # a resumed run continues after these minutes
        self._alert = smooth(self.rows, self.rule)
        if self.rows:
            self._current = self._open(self.rows[-1].minute + 1)

    def _open(self, minute: int) -> MinuteSummary:
        start = None if self.start_time is None else self.start_time + minute * 60
        return MinuteSummary(minute=minute, start_s=minute * 60.0, end_s=(minute + 1) * 60.0,
                             start_time=iso_time(start), animal=self.animal)

    def add_frame(self, t_s: float, has_face: bool, dropped_before: int = 0) -> list[MinuteSummary]:
        """Counts one delivered frame (and the frames dropped just before it); returns minutes it closed."""
        minute = int(t_s // 60)
        closed = []
        if self._current is None:
            self._current = self._open(minute)
        while minute > self._current.minute:  # minutes with no frames at all (a gap) are closed too
            next_minute = self._current.minute + 1
            closed.append(self._close())
            self._current = self._open(next_minute)
        m = self._current
        m.frames += 1
        m.dropped_frames += dropped_before
        m.face_frames += int(has_face)
        return closed

    def add_scored(self, scored: list[ScoredFrame]) -> None:
        """Scored frames belong to the minute of their own time; the pipeline adds them before that minute
        closes (selection windows divide minutes). A refused crop is counted as refused and scores nothing."""
        for s in scored:
            minute = int(s.candidate.t_s // 60)
            self._binary = s.prediction.binary
            if s.prediction.refused:
                self._refused[minute] = self._refused.get(minute, 0) + 1
                continue
            self._probs.setdefault(minute, []).append(s.prediction.probs)
            if s.prediction.aus is not None:
                self._aus.setdefault(minute, []).append(s.prediction.aus)

    def finish(self, end_s: float | None = None) -> list[MinuteSummary]:
        """Closes the partial last minute (its end_s becomes the actual end). An end beyond the current minute
        (a live source lost and given up) closes the minutes up to it too: frameless, so source_lost."""
        if self._current is None:
            return []
        closed = []
        if end_s is not None:
            # A video of exactly whole minutes ends at 60.000...01 s after rounding: no empty minute after it.
            last = max(self._current.minute, int(np.ceil((end_s - 1e-3) / 60.0)) - 1)
            while self._current.minute < last:
                next_minute = self._current.minute + 1
                closed.append(self._close())
                self._current = self._open(next_minute)
            self._current.end_s = max(self._current.start_s, min(self._current.end_s, end_s))
        closed.append(self._close())
        return closed

    def _close(self) -> MinuteSummary:
        m = self._current
        if m.frames == 0:
            m.status = "source_lost" if self.live else "no_frames"
        scored = np.array(self._probs.pop(m.minute, []))
        m.scored_frames = len(scored)
        m.refused_frames = self._refused.pop(m.minute, 0)
        if m.frames and m.refused_frames and not m.scored_frames:
            m.status = "unfamiliar"  # faces were seen, but none like the model's training faces: unknown
        if len(scored):
            pain = 1.0 - scored[:, 0]
            m.pain_prob = float(pain.mean())
            # The expected level 0-2 needs a model that tells moderate from severe; a binary one leaves it empty.
            m.pain_score = None if self._binary else float((scored[:, 1] + 2 * scored[:, 2]).mean())
            m.pain_prob_low, m.pain_prob_high = beta_interval(pain.sum(), len(pain) - pain.sum())
            shares = np.bincount(scored.argmax(1), minlength=3) / len(scored)
            if self._binary:  # no claim about severity the model cannot make: those cells stay empty
                m.share_none = float(shares[0])
                m.pain_level = "none" if m.pain_prob < 0.5 else "pain"
            else:
                m.share_none, m.share_moderate, m.share_severe = (float(v) for v in shares)
                m.pain_level = "none" if m.pain_prob < 0.5 else ("severe" if scored[:, 2].mean() > scored[:, 1].mean()
                                                                 else "moderate")
            m.pain_sum = float(pain.sum())
        aus = np.array(self._aus.pop(m.minute, []))
        if len(aus):
            m.action_units = au_values(aus.mean(axis=0))
        self.rows.append(m)
        # Causal: only this row is new, earlier ones are final.
        self._alert = smooth(self.rows, self.rule, start=len(self.rows) - 1, state=self._alert)
        return m
