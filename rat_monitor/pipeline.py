"""Wires the stages: source -> detector -> tracker -> quality/selection -> classifier -> timeline -> run folder.

Reports progress through an Observer; never prints. Data flows one way: no stage calls back into another.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import time
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from . import __version__
from .camera import CONFIDENT_SCORE, camera_check
from .classify.base import PainClassifier
from .detect.centernet import FaceDetector
from .errors import ConfigError
from .identity import UNKNOWN, Identities
from .imaging import as_stored
from .models import validation_status
from .select import FixtureFilter, QualityScorer, SelectionSettings, WindowSelector
from .sinks.files import RunWriter
from .sources import FrameSource
from .timeline import AlertRule, Timeline
from .track import DetectionSchedule, Tracker
from .types import Candidate, FaceTrack, Frame, MinuteSummary, ScoredFrame


MAX_ANIMALS = 6


@dataclass
class Settings:
    # the detector runs at least this often on still faces; 0.2 s halved its runs on the 720p bench video
    # against every third frame, with the same tracked-face recall (docs in README, Speed)
    detect_still_every_s: float = 0.2
    # and searches the whole frame at least this often (new faces); the runs between look only around the tracked
    # faces, at the same scale (README, Detector: 15-37% less detector time per frame, measured)
    detect_whole_every_s: float = 1.0
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    alert: AlertRule = field(default_factory=AlertRule)
    duration_s: float | None = None  # stop after this much media (or wall-clock) time
    animals: int = 1  # rats in view: from 2 on, each face is told to an animal (identity.py), a timeline each
    animal_names: list[str] = field(default_factory=list)  # their names, from left to right as first seen

    def names(self) -> list[str]:
        """One name per animal: the user's, then 'animal K' for the rest."""
        return [self.animal_names[k] if k < len(self.animal_names) else f"animal {k + 1}" for k in range(self.animals)]

    def several(self) -> list[str] | None:
        """The animals' names when there are several (each face is then told to one, and the run files gain an
        animal column); None with one animal."""
        return self.names() if self.animals > 1 else None

    def check(self) -> None:
        w = self.selection.window_s
        if not math.isfinite(w) or not 0.1 <= w <= 60 or abs(60.0 / w - round(60.0 / w)) > 1e-9:
            raise ConfigError(f"the selection window ({w:g} s) must divide a minute (e.g. 5, 10, 15, 20, 30, 60)")
        if self.selection.per_window < 1:
            raise ConfigError("--per-window must be at least 1")
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ConfigError(f"--duration must be a positive number of seconds, not {self.duration_s:g}")
        if not 1 <= self.animals <= MAX_ANIMALS:
            raise ConfigError(f"--animals must be 1 to {MAX_ANIMALS}")
        names = self.names()
        if len(self.animal_names) > self.animals or len(set(names)) < len(names) or not all(n.strip() for n in names):
            raise ConfigError(f"--animal-names needs at most {self.animals} different, non-empty names (one per animal)")


class Observer:
    """Progress callbacks; the CLI subclasses this to draw its views. All methods are optional."""

    def frame(self, index: int, t_s: float, n_faces: int, stats: dict) -> None: ...

    def view(self, frame: Frame, tracks: list[FaceTrack], quality: dict[int, float],
             animals: dict[int, str] | None = None) -> None:
        """Every frame with its tracks, each track's quality and, with several animals, whose face it is ("?" when
        not sure), by track id: for a picture of what the tool sees. Called on the pipeline's thread: an observer
        that draws must do it rarely."""

    def scored(self, frames: list[ScoredFrame]) -> None: ...

    def minute(self, row: MinuteSummary) -> None: ...


class FanOut(Observer):
    """Several observers as one (the terminal view and the live page)."""

    def __init__(self, *observers: Observer):
        self.observers = [o for o in observers if o is not None]

    def frame(self, *args) -> None:
        for o in self.observers:
            o.frame(*args)

    def view(self, *args) -> None:
        for o in self.observers:
            o.view(*args)

    def scored(self, *args) -> None:
        for o in self.observers:
            o.scored(*args)

    def minute(self, *args) -> None:
        for o in self.observers:
            o.minute(*args)


class StageClock:
    """Seconds spent per stage, so a run says where its time went (run.json, make bench)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._t
        self._t = now

    def ms_per_frame(self, frames: int) -> dict[str, float]:
        return {k: round(1000 * v / max(frames, 1), 3) for k, v in self.seconds.items()}


def rss_mb() -> float:
    """Resident memory now (Linux /proc), in MB; 0 where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass
class RunResult:
    """What a run produced: its minutes (final, smoothed) and its totals."""

    rows: list[MinuteSummary]
    totals: Totals
    camera: dict = field(default_factory=dict)  # whether the detector knew the camera (camera.camera_check)


@dataclass
class Totals:
    frames: int = 0
    dropped_frames: int = 0
    face_frames: int = 0
    detector_runs: int = 0
    region_runs: int = 0  # detector runs that searched only around the tracked faces (the others: whole frames)
    confident_detector_runs: int = 0  # checks with a face at camera.CONFIDENT_SCORE or more
    fixture_tracks: int = 0  # boxes that stayed put with nothing changing inside for a minute: never scored
    unidentified_face_frames: int = 0  # several animals: faces seen whose animal was not sure (scored for none)
    scored_frames: int = 0
    refused_frames: int = 0  # selected crops refused as unlike the classifier's training faces
    minutes: int = 0
    alerts: int = 0
    interrupted: bool = False
    annotated_frames: int = 0  # frames written to annotated.mp4 (analyze --annotate)
    wall_s: float = 0.0
    first_frame_epoch: float | None = None  # when the first frame had been through the face stages
    stage_ms_per_frame: dict = field(default_factory=dict)
    rss_mb_by_minute: list = field(default_factory=list)
    peak_rss_mb: float = 0.0
    latency_ms: dict = field(default_factory=dict)  # live sources: capture -> frame processed, p50/p95/max

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


def model_entry(model) -> dict:
    card = getattr(model, "card", {})
    entry = {"name": getattr(model, "name", "?"), "kind": card.get("kind"), "files": card.get("files", {}),
             "synthetic": bool(card.get("synthetic")), "caveat": card.get("caveat", ""),
             "status": validation_status(card)}  # how far it was checked: every screen shows this line
    if card.get("kind") == "face-detector":  # a lab's own detector says what it learnt from and how it was checked
        entry["fine_tuned_from"] = (card.get("training") or {}).get("fine_tuned_from")
        entry["validation"] = card.get("validation")
    if card.get("kind") == "pain-classifier":
        entry["task"] = card.get("task")  # binary: levels none/pain; 3class: none/moderate/severe
        fam = getattr(model, "familiarity", None)
        entry["familiarity"] = ({"checked": True, "refuse_below": fam.refuse_below} if fam is not None else
                                {"checked": False, "why": "the model folder has no familiarity statistics (made by "
                                                          "an earlier rat-monitor): unfamiliar faces are scored too"})
    return entry


def versions() -> dict:
    """The versions that made a run. scikit-learn's is read from its package record: importing it cost every run
    about a second at its end, and inference does not need it."""
    from importlib.metadata import PackageNotFoundError, version

    import onnxruntime

    try:
        sklearn_version = version("scikit-learn")
    except PackageNotFoundError:
        sklearn_version = None
    return {"rat_monitor": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "opencv": cv2.__version__, "onnxruntime": onnxruntime.__version__, "scikit-learn": sklearn_version}


class FaceFinder:
    """The stages up to selection: detector (every k frames) -> tracker -> quality -> per-window selection.
    Shared by the scoring pipeline and the curation export."""

    def __init__(self, detector: FaceDetector, settings: Settings):
        self.detector = detector
        self.tracker = Tracker()
        self.schedule = DetectionSchedule(still_every_s=settings.detect_still_every_s,
                                          whole_every_s=settings.detect_whole_every_s)
        # a detector that can search regions (exported runnable at any input size) searches them between its
        # whole-frame runs; with several animals it always searches whole frames: how well faces are told apart
        # with regions was not measured (README, Detector)
        self.regions = bool(getattr(detector, "any_size", False)) and settings.animals == 1
        self.quality = QualityScorer()
        self.last_quality: dict[int, float] = {}
        # several animals: each face told to its animal, and each animal's best frames chosen on their own
        self.names = settings.several()
        self.identities = Identities(settings.animals) if self.names else None
        self.selectors = {a: WindowSelector(settings.selection) for a in range(1, settings.animals + 1)}
        self.animals_seen: set[int] = set()  # the animals whose face is on this frame
        # several animals: the last frame's faces by track id -> their animal's name ("?" while not sure)
        self.last_animals: dict[int, str] | None = None
        self.fixtures = FixtureFilter()
        self.detector_runs = 0
        self.region_runs = 0  # of those, runs that searched the regions around tracked faces only
        self.confident_runs = 0

    def step(self, frame, clock: StageClock | None = None) -> tuple[list, list[Candidate]]:
        """Tracks on this frame, and the selection of the window that closed just before it."""
        clock = clock or StageClock()
        closed = [c for sel in self.selectors.values() for c in sel.advance(frame.t_s)]
        dets = None
        if self.schedule.due(self.tracker, frame.t_s):
            windows = None
            if self.regions and not self.schedule.whole_due(self.tracker, frame.t_s):
                windows = self.detector.regions(frame.image.shape, self.tracker.boxes)
            if windows is None:  # due, or regions would not pay (faces large for the detector's input)
                dets = self.detector.detect(frame.image)
            else:
                dets = self.detector.detect_regions(frame.image, windows)
                self.region_runs += 1
            self.detector_runs += 1
            self.confident_runs += bool(len(dets)) and float(dets.scores.max()) >= CONFIDENT_SCORE
        clock.lap("detect")
        tracks = self.tracker.update(dets)
        clock.lap("track")
        candidates = self.quality.score(frame.image, tracks, frame.index, frame.t_s)
        self.last_quality = {c.track_id: c.quality.score for c in candidates}  # for a live picture of the frame
        clock.lap("quality")
        if self.identities is not None:
            candidates = self.identities.assign(candidates, frame.t_s)
            self.last_animals = {c.track_id: self.names[c.animal - 1] if c.animal != UNKNOWN else "?"
                                 for c in candidates}
            clock.lap("identity")
            self.animals_seen = {c.animal for c in candidates} - {UNKNOWN}
        else:
            self.animals_seen = {1} if tracks else set()
        kept = self.fixtures.keep(candidates)
        for animal, selector in self.selectors.items():
            selector.add([c for c in kept if c.animal == animal])
        clock.lap("select")
        return tracks, closed

    def flush(self) -> list[Candidate]:
        return [c for sel in self.selectors.values() for c in sel.flush()]


class Pipeline:
    def __init__(self, source: FrameSource, detector: FaceDetector, classifier: PainClassifier, writer: RunWriter,
                 settings: Settings | None = None, observer: Observer | None = None,
                 earlier: list[MinuteSummary] | None = None, resume_s: float = 0.0, annotator=None, stop=None):
        self.settings = settings or Settings()
        self.stop = stop  # a threading.Event: set, the run ends as a Ctrl-C ends it (several sources at once)
        self.annotator = annotator  # sinks.annotate.Annotator (analyze --annotate) or None
        self.settings.check()
        self.source = source
        self.detector = detector
        self.classifier = classifier
        self.writer = writer
        self.observer = observer or Observer()
        self.faces = FaceFinder(detector, self.settings)
        # a timeline per animal, each with its own smoothing and alert (one animal: the one timeline as always;
        # a run of several is never resumed: files.prepare_resume refuses it)
        names = self.settings.several() or [""]
        self.timelines = {a: Timeline(start_time=source.info.start_time, rule=self.settings.alert,
                                      live=source.info.live, earlier=earlier, animal=name)
                          for a, name in enumerate(names, start=1)}
        # Resuming: frames before resume_s only warm up the tracker and quality measures; their minutes are done.
        self.resume_s = resume_s
        self.totals = Totals()

    def _score(self, candidates: list[Candidate]) -> None:
        if not candidates:
            return
        stored = [as_stored(c.crop) for c in candidates]
        preds = self.classifier.predict([image for image, _ in stored])
        self.clock.lap("classify")
        scored = [ScoredFrame(c, p, jpeg) for c, p, (_, jpeg) in zip(candidates, preds, stored)]
        for animal, timeline in self.timelines.items():
            timeline.add_scored([s for s in scored if s.candidate.animal == animal])
        self.writer.scored(scored)
        if self.annotator:
            self.annotator.scored(scored)
        refused = sum(p.refused for p in preds)
        self.totals.scored_frames += len(scored) - refused
        self.totals.refused_frames += refused
        self.observer.scored(scored)

    @staticmethod
    def _closed(per_animal: list[list[MinuteSummary]]) -> list[MinuteSummary]:
        """The minutes the animals' timelines closed together (they count the same frames), minute by minute."""
        return [r for rows in zip(*per_animal) for r in rows]

    @property
    def rows(self) -> list[MinuteSummary]:
        """Every minute of every animal so far, minute by minute."""
        return [r for rows in zip(*(tl.rows for tl in self.timelines.values())) for r in rows]

    def _minutes(self, rows: list[MinuteSummary]) -> None:
        for m in rows:
            self.writer.minute(m)
            if self.annotator:
                self.annotator.minute(m)
            self.totals.minutes += 1
            self.totals.rss_mb_by_minute.append(round(rss_mb(), 1))
            self.observer.minute(m)

    def run(self) -> RunResult:
        t0 = time.perf_counter()
        tot = self.totals
        clock = self.clock = StageClock()
        latencies = []
        last_t = -1.0 if self.resume_s > 0 else 0.0
        try:
            for frame in self.source:
                clock.lap("decode_wait")  # time blocked on the reader thread: zero when decoding keeps ahead
                if self.settings.duration_s is not None and frame.t_s >= self.settings.duration_s:
                    break
                if self.stop is not None and self.stop.is_set():
                    break
                tracks, closed = self.faces.step(frame, clock)
                self.observer.view(frame, tracks, self.faces.last_quality, self.faces.last_animals)
                clock.lap("view")  # what a live page's pictures cost the analysis
                if frame.t_s < self.resume_s:
                    continue
                if last_t < self.resume_s:
                    closed = []  # the window that closed here belongs to the warm-up
                last_t = frame.t_s
                if frame.wall_time is not None:
                    latencies.append(time.time() - frame.wall_time)
                if tot.first_frame_epoch is None:
                    tot.first_frame_epoch = time.time()
                self._score(closed)
                self._minutes(self._closed([tl.add_frame(frame.t_s, animal in self.faces.animals_seen,
                                                         frame.dropped_before)
                                            for animal, tl in self.timelines.items()]))
                clock.lap("timeline")
                if self.annotator:
                    self.annotator.frame(frame.index, frame.t_s, frame.image, tracks, self.faces.last_animals)
                    clock.lap("annotate")
                tot.frames += 1
                tot.dropped_frames += frame.dropped_before
                tot.face_frames += int(bool(tracks))
                if tot.frames % 10 == 0:
                    tot.wall_s = time.perf_counter() - t0
                    self.observer.frame(frame.index, frame.t_s, len(tracks),
                                        {"fps": tot.fps, "frames": tot.frames, "total": self.source.info.frame_count,
                                         "dropped": tot.dropped_frames})
            if self.stop is not None and self.stop.is_set():
                tot.interrupted = True  # stopped with the other sources (Ctrl-C for all), ended as a Ctrl-C ends it
        except KeyboardInterrupt:
            tot.interrupted = True
        finally:
            # Whatever ended the run, close the partial window and minute and flush them.
            self._score(self.faces.flush())
            tot.detector_runs = self.faces.detector_runs
            tot.region_runs = self.faces.region_runs
            tot.confident_detector_runs = self.faces.confident_runs
            tot.fixture_tracks = len(self.faces.fixtures.fixtures)
            tot.unidentified_face_frames = self.faces.identities.unknown if self.faces.identities else 0
            fps = self.source.info.fps or 30.0
            if last_t >= self.resume_s:
                # A live source given up: the minutes until then were lost, and the timeline says so.
                given_up = getattr(self.source, "given_up_at_s", None)
                end_s = max(last_t + 1.0 / fps, given_up or 0.0)
                self._minutes(self._closed([tl.finish(end_s=end_s) for tl in self.timelines.values()]))
            tot.alerts = sum(r.alert_event == "raised" for r in self.rows)
            tot.wall_s = time.perf_counter() - t0
            clock.lap("finish")
            tot.stage_ms_per_frame = clock.ms_per_frame(tot.frames)
            # ru_maxrss is in KiB on Linux; MB (10^6 bytes) like rss_mb_by_minute beside it
            tot.peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6, 1)
            if latencies:
                ms = 1000 * np.array(latencies)
                tot.latency_ms = {"p50": round(float(np.percentile(ms, 50)), 1),
                                  "p95": round(float(np.percentile(ms, 95)), 1), "max": round(float(ms.max()), 1)}
        return RunResult(self.rows, tot, self.camera_check())

    def camera_check(self) -> dict:
        return camera_check(self.totals.detector_runs, self.totals.confident_detector_runs,
                            model_entry(self.detector), self.source.info.name)

    def run_info(self, extra: dict | None = None) -> dict:
        info = self.source.info
        return {
            "inputs": {"source": info.name, "live": info.live, "fps": info.fps, "width": info.width,
                       "height": info.height, "duration_s": info.duration_s, "frame_count": info.frame_count,
                       "start_time": info.start_time},
            "settings": asdict(self.settings),
            "models": {"detector": model_entry(self.detector), "classifier": model_entry(self.classifier)},
            "camera": self.camera_check(),
            "versions": versions(),
            "totals": {**asdict(self.totals), "fps": round(self.totals.fps, 2)},
            **(extra or {}),
        }
