"""What happens in a synthetic video: the pain schedule, the rat's path, head turns, blur and expression.

Every quantity is a pure function of (settings, frame index): events are drawn per fixed-length segment
from a generator seeded by (seed, subject, segment), so any frame can be rendered on its own, in any order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import ConfigError
from .face import COATS, Pose, look_for
from .scene import Effects

PRESETS = {
    "control": "0:0",
    "onset": "0:0,1:1,1.5:2",
    "surgery": "0:0,1:1,2:2,4:1,5:0",
    "hard": "0:1",
}
EVENT_SECONDS = 5.0  # one behavioural event (turn, dash, defocus...) per segment at most
CHUNK_SECONDS = 2.0  # expression jitter changes every chunk
EVENTS = ("calm", "profile", "away", "leave", "dash", "defocus")
EVENT_P = (0.6, 0.1, 0.08, 0.06, 0.09, 0.07)


def parse_schedule(text: str) -> list[tuple[float, int]]:
    """'0:0,1:1,2.5:2' (start minute:pain level, the level holds until the next start) or a preset name."""
    text = PRESETS.get(text.strip(), text)
    steps = []
    try:
        for part in text.split(","):
            start, level = part.split(":")
            steps.append((float(start), int(level)))
    except ValueError:
        raise ConfigError(
            f"bad --schedule {text!r}: write START_MINUTE:LEVEL pairs like '0:0,1:1,2:2' or a preset "
            f"({', '.join(PRESETS)})"
        ) from None
    steps.sort()
    if not steps or steps[0][0] != 0 or any(lv not in (0, 1, 2) for _, lv in steps):
        raise ConfigError(f"bad --schedule {text!r}: it must start at minute 0 and use levels 0, 1 or 2")
    return steps


MAX_RATS = 3
# With several rats and one coat named, the others take these in turn: labs house animals that look different
# (or mark them) when they must tell them apart on video.
OTHER_COATS = ("hooded", "agouti", "dark", "albino")
CROSSING_PERIOD_S = 120.0  # two rats trade sides once a minute


@dataclass(frozen=True)
class VideoSpec:
    width: int = 1280
    height: int = 720
    fps: float = 30.0
    minutes: float = 1.0
    seed: int = 0
    subject: int = 1
    coat: str = "albino"  # several rats: one coat per rat, comma-separated ("albino,hooded"); one coat is rat 1's
    schedule: str = "control"  # several rats: one schedule per rat, ';'-separated; the others stay "control"
    low_light: bool = False
    fast: bool = False  # more and faster dashes (the hard case)
    bars: bool = False
    rats: int = 1  # rats in the cage (1-3): from two on they cross every minute, one in front of the other

    @property
    def n_frames(self) -> int:
        return int(round(self.minutes * 60 * self.fps))

    def coat_of(self, animal: int) -> str:
        """Rat `animal`'s coat (0-based): as listed, else the first rat's followed by OTHER_COATS."""
        coats = [c.strip() for c in self.coat.split(",")]
        if animal < len(coats):
            return coats[animal]
        others = [c for c in OTHER_COATS if c != coats[0]]
        return others[(animal - len(coats)) % len(others)]

    def schedule_of(self, animal: int) -> str:
        schedules = [s.strip() for s in self.schedule.split(";")]
        return schedules[animal] if animal < len(schedules) else "control"

    def check(self) -> None:
        """ConfigError unless a video can be made of this: 1 to MAX_RATS rats, known coats, schedules that parse,
        and a coat or schedule per rat only with several rats."""
        if not 1 <= self.rats <= MAX_RATS:
            raise ConfigError(f"--rats must be 1 to {MAX_RATS}")
        for coat in self.coat.split(","):
            if coat.strip() not in COATS:
                raise ConfigError(f"unknown --coat {coat.strip()!r}; choose one of {', '.join(COATS)}")
        if self.rats == 1 and ("," in self.coat or ";" in self.schedule):
            raise ConfigError("a coat or schedule per rat needs --rats 2 or more")
        for schedule in self.schedule.split(";"):
            parse_schedule(schedule)


@dataclass(frozen=True)
class FrameTruth:
    frame: int
    t_s: float
    visible: bool
    box: tuple[float, float, float, float] | None
    yaw_deg: float
    pain_level: int
    aus: tuple[int, int, int, int]
    blur_px: float


def _smooth_bump(u: np.ndarray | float) -> float:
    """0 at the segment ends, 1 in the middle 40%, smooth in between."""
    u = float(np.clip(u, 0, 1))
    if u < 0.3:
        return float(np.sin(np.pi / 2 * u / 0.3) ** 2)
    if u > 0.7:
        return float(np.sin(np.pi / 2 * (1 - u) / 0.3) ** 2)
    return 1.0


class Script:
    """The frame-by-frame story of one synthetic video."""

    def __init__(self, spec: VideoSpec, animal: int = 0):
        self.spec = spec
        self.animal = animal  # 0-based: rat 1 is animal 0, and a one-rat video is exactly as it always was
        self.subject = spec.subject + animal
        self.steps = parse_schedule(spec.schedule_of(animal))
        self.look = look_for(self.subject, spec.coat_of(animal))
        rng = np.random.default_rng([spec.seed, self.subject, 1])
        # Slow wander: a sum of sinusoids with random periods and phases.
        self._periods = rng.uniform(35, 95, (3, 3))
        self._phases = rng.uniform(0, 2 * np.pi, (3, 3))
        self._yaw_period = rng.uniform(25, 60)
        self._yaw_phase = rng.uniform(0, 2 * np.pi)

    def level_at(self, t_s: float) -> int:
        minute = t_s / 60.0
        level = self.steps[0][1]
        for start, lv in self.steps:
            if minute >= start:
                level = lv
        return level

    @lru_cache(maxsize=64)
    def _event(self, segment: int) -> tuple[str, float, float]:
        rng = np.random.default_rng([self.spec.seed, self.subject, 2, segment])
        p = np.array(EVENT_P)
        if self.spec.fast:
            p[EVENTS.index("dash")] += 0.25
        kind = EVENTS[rng.choice(len(EVENTS), p=p / p.sum())]
        return kind, float(rng.choice([-1, 1])), float(rng.uniform(0.7, 1.0))

    @lru_cache(maxsize=64)
    def _expression(self, chunk: int, level: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """Integer action units around the pain level (not every frame is a textbook case) and a small
        continuous wobble for rendering."""
        rng = np.random.default_rng([self.spec.seed, self.subject, 3, chunk])
        delta = rng.choice([-1, 0, 1], size=4, p=[0.12, 0.76, 0.12])
        aus = tuple(int(v) for v in np.clip(level + delta, 0, 2))
        wobble = tuple(float(v) for v in rng.uniform(-0.15, 0.15, 4))
        return aus, wobble

    def _wander(self, t: float) -> np.ndarray:
        """x, y (fractions of the frame) and depth scale of the head, slowly wandering."""
        w = np.sin(2 * np.pi * t / self._periods + self._phases).mean(axis=1)
        n = self.spec.rats
        if n == 1:
            return np.array([0.5 + 0.26 * w[0], 0.56 + 0.1 * w[1], 1.0 + 0.12 * w[2]])
        # Several rats: each on its own depth (rat 1 furthest back, higher in the frame and smaller), swinging
        # across the cage in counterphase with its neighbour, so that faces pass one another once a minute.
        k = self.animal
        swing = np.cos(2 * np.pi * t / CROSSING_PERIOD_S + 2 * np.pi * k / n)
        lane = (k - (n - 1) / 2) / max(n - 1, 1)  # -0.5 .. 0.5
        return np.array([0.5 + 0.3 * swing + 0.06 * w[0], 0.55 + 0.16 * lane + 0.03 * w[1],
                         0.95 + 0.2 * (lane + 0.5) + 0.05 * w[2]])

    def state(self, i: int) -> tuple[Pose | None, Effects, FrameTruth]:
        """Pose (None when the rat is out of view), camera effects and the truth row of frame i."""
        spec = self.spec
        t = i / spec.fps
        seg = int(t // EVENT_SECONDS)
        kind, sign, strength = self._event(seg)
        env = _smooth_bump((t - seg * EVENT_SECONDS) / EVENT_SECONDS) * strength
        # head about a fifth of the frame height; a little smaller with company, so that the cage holds them all
        scale_px = spec.height * (0.19 if spec.rats == 1 else 0.15) * self.look.size
        yaw = 28 * np.sin(2 * np.pi * t / self._yaw_period + self._yaw_phase)

        def position(tt: float) -> np.ndarray:
            segk = int(tt // EVENT_SECONDS)
            kk, sg, st = self._event(segk)
            ee = _smooth_bump((tt - segk * EVENT_SECONDS) / EVENT_SECONDS) * st
            x, y, depth = self._wander(tt)
            if kk == "dash":
                x += sg * 0.22 * ee * (1.6 if spec.fast else 1.0)
            elif kk == "leave":
                x += np.sign(x - 0.5 + 1e-9) * 0.75 * ee
            return np.array([x * spec.width, y * spec.height, depth])

        x, y, depth = position(t)
        # Motion blur: the distance moved during the shutter (half the frame interval).
        x_prev, y_prev, _ = position(max(0.0, t - 0.5 / spec.fps))
        motion = (float(x - x_prev), float(y - y_prev))
        if kind == "profile":
            yaw = yaw * (1 - env) + sign * 80 * env
        elif kind == "away":
            yaw = yaw + sign * 170 * env
        yaw = (yaw + 180) % 360 - 180
        defocus = 2.2 * env if kind == "defocus" else 0.0

        level = self.level_at(t)
        aus, wobble = self._expression(int(t // CHUNK_SECONDS), level)
        pose = Pose(
            cx=float(x),
            cy=float(y),
            scale=float(scale_px * depth),
            yaw_deg=float(yaw),
            roll_deg=float(8 * np.sin(t / 7.0 + spec.seed)),
            orbital=max(0.0, aus[0] + wobble[0]),
            nose=max(0.0, aus[1] + wobble[1]),
            ears=max(0.0, aus[2] + wobble[2]),
            whiskers=max(0.0, aus[3] + wobble[3]),
        )
        gain = 1.0 + 0.08 * np.sin(2 * np.pi * t / 41.0 + spec.seed)
        if spec.low_light:
            gain *= 0.5
        effects = Effects(gain=float(gain), motion_px=motion, defocus_sigma=float(defocus))
        truth = FrameTruth(frame=i, t_s=t, visible=False, box=None, yaw_deg=float(yaw), pain_level=level, aus=aus,
                           blur_px=round(effects.blur_px, 2))  # as written to truth.csv
        return pose, effects, truth


def face_visible(box, yaw_deg: float, width: int, height: int) -> bool:
    """A face counts as visible when it faces the camera (|yaw| <= 95) and at least 70% of its box is in frame."""
    if box is None or abs(yaw_deg) > 95:
        return False
    x0, y0, x1, y1 = box
    area = max(1e-6, (x1 - x0) * (y1 - y0))
    ix = max(0.0, min(x1, width) - max(x0, 0)) * max(0.0, min(y1, height) - max(y0, 0))
    return ix / area >= 0.7


def clip_box(box, width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    return max(0.0, x0), max(0.0, y0), min(width - 1.0, x1), min(height - 1.0, y1)
