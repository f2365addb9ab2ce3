"""The cage scene around the rat: background, reflections, cage bars, lighting, blur and sensor noise.

Everything expensive in the scene (textures, noise) is made once per scene; a frame is then a few whole-image
OpenCV operations plus the rat's patch (fur, shading: face.py), about 20 frames/s at 960x540 on one core.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .face import Look, Pose, draw_rat, streak_kernel


@dataclass(frozen=True)
class Effects:
    """Per-frame camera effects."""

    gain: float = 1.0  # lighting: 1 normal, <1 dim
    motion_px: tuple[float, float] = (0.0, 0.0)  # motion blur streak (dx, dy) in pixels
    defocus_sigma: float = 0.0  # Gaussian defocus, pixels

    @property
    def blur_px(self) -> float:
        """Blur extent in pixels: streak length or defocus diameter, whichever is larger."""
        return float(max(np.hypot(*self.motion_px), 2.0 * self.defocus_sigma))


@lru_cache(maxsize=16)
def _noise_bank(width: int, height: int, sigma: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Four frames of Gaussian sensor noise, split into positive and negative parts for saturating
    uint8 add/subtract; shared by all scenes of one size and noise level."""
    rng = np.random.default_rng(12345)
    bank = []
    for _ in range(4):
        n = rng.standard_normal((height, width, 3), dtype=np.float32) * sigma
        bank.append((np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)))
    return bank


class Scene:
    """A transparent cage on bedding, seen by a camcorder; fixed for one (seed, size, style)."""

    def __init__(self, width: int, height: int, seed: int, noise_sigma: float = 3.0, bars: bool = False):
        self.width, self.height = width, height
        rng = np.random.default_rng([seed, 9001])
        self.background = self._background(rng)
        self.reflection = self._reflection(rng)
        self.bars = self._bars(rng) if bars else None
        # A small bank of noise frames, picked per frame: fresh Gaussian noise per frame would cost more than
        # the whole rendering.
        self._noise = _noise_bank(width, height, round(noise_sigma * 2) / 2)

    def _background(self, rng) -> np.ndarray:
        h, w = self.height, self.width
        wall = np.array(rng.integers(150, 215, 3), dtype=np.float32)
        img = np.empty((h, w, 3), np.float32)
        # Vertical gradient of the lab wall seen through the cage.
        ramp = np.linspace(1.05, 0.85, h, dtype=np.float32)[:, None, None]
        img[:] = wall * ramp
        # Bedding: a band of blotchy wood shavings at the bottom.
        floor = int(h * rng.uniform(0.62, 0.72))
        small = rng.uniform(0.55, 1.0, (max(2, (h - floor) // 6), max(2, w // 6), 1)).astype(np.float32)
        tex = cv2.resize(small, (w, h - floor), interpolation=cv2.INTER_LINEAR)[..., None]
        bedding = np.array(rng.integers(120, 190, 3), dtype=np.float32) * np.array([0.7, 0.9, 1.1], np.float32)
        img[floor:] = bedding * tex
        # Cage walls: the plastic box edges and the far corner.
        out = np.clip(img, 0, 255).astype(np.uint8)
        m = int(min(w, h) * rng.uniform(0.04, 0.08))
        edge = tuple(int(v) for v in rng.integers(170, 240, 3))
        cv2.rectangle(out, (m, m), (w - m, h - m // 2), edge, max(2, w // 300), cv2.LINE_AA)
        cv2.line(out, (m, floor), (w - m, floor), tuple(int(c * 0.8) for c in edge), max(1, w // 500), cv2.LINE_AA)
        return out

    def _reflection(self, rng) -> np.ndarray:
        """Bright diagonal streaks on the cage wall, in front of the rat (added, saturating)."""
        h, w = self.height, self.width
        refl = np.zeros((h, w, 3), np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            x = rng.uniform(0, w)
            width = rng.uniform(0.01, 0.05) * w
            slant = rng.uniform(0.2, 0.6) * h
            pts = np.array([[x, 0], [x + width, 0], [x + width - slant, h], [x - slant, h]], np.int32)
            cv2.fillConvexPoly(refl, pts, (int(rng.integers(12, 40)),) * 3, cv2.LINE_AA)
        return cv2.GaussianBlur(refl, (0, 0), max(1.0, w / 200))

    def _bars(self, rng) -> tuple[np.ndarray, np.ndarray]:
        """Wire-lid bars crossing the view (and the face), as a mask and a colour image."""
        h, w = self.height, self.width
        mask = np.zeros((h, w), np.uint8)
        spacing = rng.uniform(0.05, 0.1) * w
        thick = max(1, int(w / 400))
        x = rng.uniform(0, spacing)
        while x < w:
            cv2.line(mask, (int(x), 0), (int(x + 0.05 * w), h), 255, thick, cv2.LINE_AA)
            x += spacing
        colour = np.empty((h, w, 3), np.uint8)
        colour[:] = tuple(int(v) for v in rng.integers(60, 140, 3))
        return mask, colour

    def render(self, rats: list[tuple[Pose, Look]], effects: Effects, frame_index: int,
               motions: list[tuple[float, float]] | None = None) -> tuple[np.ndarray, list]:
        """One BGR frame with the given rats drawn in order (the last in front), and each rat's face box
        (x0, y0, x1, y1) in pixels. motions: each rat's own motion streak (else effects.motion_px for all)."""
        img = self.background.copy()
        boxes = []
        for k, (pose, look) in enumerate(rats):
            boxes.append(draw_rat(img, pose, look))
            dx, dy = effects.motion_px if motions is None else motions[k]
            if np.hypot(dx, dy) >= 1.0:
                self._motion_blur(img, pose, dx, dy)
        if self.bars is not None:
            mask, colour = self.bars
            cv2.copyTo(colour, mask, img)
        cv2.add(img, self.reflection, dst=img)
        if abs(effects.gain - 1.0) > 1e-3:
            img = cv2.convertScaleAbs(img, alpha=effects.gain)
        if effects.defocus_sigma > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), effects.defocus_sigma)
        pos, neg = self._noise[frame_index % len(self._noise)]
        cv2.add(img, pos, dst=img)
        cv2.subtract(img, neg, dst=img)
        return img, boxes

    def _motion_blur(self, img, pose: Pose, dx: float, dy: float) -> None:
        """Streak the region around the rat along its motion, in place (the background is still)."""
        kernel = streak_kernel(dx, dy)
        r = int(pose.scale * 2.6 + len(kernel))
        x0, y0 = max(0, int(pose.cx - r)), max(0, int(pose.cy - r))
        x1, y1 = min(self.width, int(pose.cx + r)), min(self.height, int(pose.cy + r))
        if x1 > x0 and y1 > y0:
            img[y0:y1, x0:x1] = cv2.filter2D(img[y0:y1, x0:x1], -1, kernel)
