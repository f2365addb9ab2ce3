"""Draws one rat (body, head, ears, eyes, nose, whiskers) from a small 3-D model, posed and expressive.

The head is a set of 3-D points in head units (the head is about 1 unit tall): X to the rat's left as seen
by the camera, Y down, Z towards the camera when yaw is 0. Yaw turns the head about Y, roll tilts the image.
Projection is orthographic: at a camcorder's distance perspective hardly matters and this keeps it fast.
The four Rat Grimace Scale action units (0 absent .. 2 obvious, continuous here) change the geometry:
orbital tightening closes the eye, nose/cheek flattening shrinks the whisker pads and lengthens the snout,
ear changes fold, point and rotate the ears outward, whisker change pulls the whiskers back and bunches them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

COATS = ("albino", "hooded", "dark", "agouti")


@dataclass(frozen=True)
class Look:
    """How one individual looks; a pure function of (subject, coat)."""

    fur: tuple[int, int, int]  # BGR
    head_fur: tuple[int, int, int]  # differs from fur for hooded rats
    ear: tuple[int, int, int]
    inner_ear: tuple[int, int, int]
    eye: tuple[int, int, int]
    nose: tuple[int, int, int]
    whisker: tuple[int, int, int]
    ear_size: float
    ear_roundness: float
    snout_length: float
    head_width: float
    size: float  # overall scale factor of this animal


def _jitter(rng: np.random.Generator, bgr: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    out = np.clip(np.asarray(bgr) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return tuple(int(v) for v in out)


def look_for(subject: int, coat: str = "albino") -> Look:
    """The same subject id always gives the same animal: size, ear shape, fur tone, eye colour."""
    if coat not in COATS:
        raise ValueError(f"unknown coat {coat!r}; choose one of {', '.join(COATS)}")
    rng = np.random.default_rng([7103, subject, COATS.index(coat)])
    if coat == "albino":
        fur = _jitter(rng, (228, 236, 240), 14)
        head_fur, eye = fur, _jitter(rng, (60, 40, 200), 25)
        ear = _jitter(rng, (170, 175, 235), 15)
    elif coat == "hooded":
        fur = _jitter(rng, (225, 230, 232), 12)
        head_fur, eye = _jitter(rng, (45, 50, 60), 12), (15, 15, 20)
        ear = _jitter(rng, (70, 75, 95), 12)
    elif coat == "dark":
        fur = _jitter(rng, (40, 42, 48), 10)
        head_fur, eye = fur, (10, 10, 12)
        ear = _jitter(rng, (75, 80, 100), 12)
    else:  # agouti: brown-grey
        fur = _jitter(rng, (85, 110, 135), 14)
        head_fur, eye = fur, (12, 12, 15)
        ear = _jitter(rng, (110, 125, 160), 12)
    inner_ear = tuple(int(min(255, c * 0.85 + 40 * (i == 2))) for i, c in enumerate(ear))
    return Look(
        fur=fur,
        head_fur=head_fur,
        ear=ear,
        inner_ear=inner_ear,
        eye=eye,
        nose=_jitter(rng, (150, 150, 225), 15),
        whisker=_jitter(rng, (205, 210, 215), 20) if coat != "albino" else _jitter(rng, (175, 180, 185), 15),
        ear_size=float(rng.uniform(0.85, 1.2)),
        ear_roundness=float(rng.uniform(0.7, 1.0)),
        snout_length=float(rng.uniform(0.9, 1.12)),
        head_width=float(rng.uniform(0.9, 1.1)),
        size=float(rng.uniform(0.88, 1.12)),
    )


@dataclass(frozen=True)
class Pose:
    """Where the head is in the image and how it is turned and shaped by the action units."""

    cx: float
    cy: float
    scale: float  # pixels per head unit
    yaw_deg: float  # 0 frontal, +-90 profile, beyond +-100 turned away
    roll_deg: float
    orbital: float  # action units, 0..2 (continuous for rendering)
    nose: float
    ears: float
    whiskers: float


@lru_cache(maxsize=1)
def _sphere(n: int = 96) -> np.ndarray:
    """Fixed points on the unit sphere (Fibonacci lattice): silhouettes of ellipsoids by convex hull."""
    k = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * k / n)
    theta = np.pi * (1 + 5**0.5) * k
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)


class _Projector:
    """Head units (X, Y, Z) to image pixels for one pose."""

    def __init__(self, pose: Pose):
        yaw, roll = np.radians(pose.yaw_deg), np.radians(pose.roll_deg)
        cy_, sy_ = np.cos(yaw), np.sin(yaw)
        cr, sr = np.cos(roll), np.sin(roll)
        self.pose = pose
        # Rotation about Y (yaw), then roll in the image plane.
        self.yaw_rot = np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
        self.roll_2d = np.array([[cr, -sr], [sr, cr]]) * pose.scale

    def rotate(self, pts: np.ndarray) -> np.ndarray:
        return pts @ self.yaw_rot.T

    def image(self, rotated: np.ndarray) -> np.ndarray:
        return rotated[:, :2] @ self.roll_2d.T + (self.pose.cx, self.pose.cy)

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image points (N, 2) and depth towards the camera (N,)."""
        r = self.rotate(pts)
        return self.image(r), r[:, 2]


def _ellipsoid(center, axes) -> np.ndarray:
    return _sphere() * np.asarray(axes) + np.asarray(center)


def _poly(img, pts, colour, closed=True, thickness=-1):
    p = np.round(pts * 16).astype(np.int32)  # 4 bits of sub-pixel precision
    if thickness < 0:
        cv2.fillPoly(img, [p], colour, cv2.LINE_AA, 4)
    else:
        cv2.polylines(img, [p], closed, colour, thickness, cv2.LINE_AA, 4)


def _hull(pts: np.ndarray) -> np.ndarray:
    return cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2)


def _shade(bgr, factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in bgr)


def _ear_outline(side: int, look: Look, ears: float) -> np.ndarray:
    """Ear outline in head units (X, Y, Z), at the top of the head on one side (-1 or +1)."""
    t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    h = 0.34 * look.ear_size * (1 + 0.12 * ears)  # pain: ears look longer, pointed
    w = 0.27 * look.ear_size * (1 - 0.22 * ears)  # pain: folded, narrower
    x, y = w * np.sin(t), -h * (0.5 - 0.5 * np.cos(t))  # base at y=0, tip at y=-h
    pointed = np.clip(1 - look.ear_roundness + 0.35 * ears, 0, 1)
    x = x * (1 - pointed * np.clip(-y / h, 0, 1) ** 2 * 0.8)  # narrow towards the tip
    angle = np.radians(side * (18 + 24 * ears))  # rotated outward with pain
    ca, sa = np.cos(angle), np.sin(angle)
    xr, yr = x * ca - y * sa, x * sa + y * ca
    base = np.array([side * 0.27 * look.head_width, -0.36, -0.08 - 0.06 * ears])
    return np.stack([xr, yr, np.zeros_like(xr)], axis=1) + base


def face_points(pose: Pose, look: Look) -> dict[str, np.ndarray]:
    """3-D construction points of the head (head units), before posing."""
    snout = look.snout_length * (1 + 0.14 * pose.nose)
    hw = look.head_width
    return {
        "cranium": _ellipsoid((0, -0.08, -0.05), (0.36 * hw, 0.34, 0.38)),
        "snout": _ellipsoid((0, 0.18, 0.28 * snout), (0.2 * hw, 0.22, 0.3 * snout)),
        "nose_tip": np.array([[0, 0.3, 0.58 * snout]]),
        "eyes": np.array([[-0.2 * hw, -0.1, 0.25], [0.2 * hw, -0.1, 0.25]]),
        "pads": np.array([[-0.12, 0.28, 0.45 * snout], [0.12, 0.28, 0.45 * snout]]),
    }


def draw_rat(img: np.ndarray, pose: Pose, look: Look) -> tuple[float, float, float, float]:
    """Draws body and head onto img in place; returns the face box (x0, y0, x1, y1), unclipped."""
    proj = _Projector(pose)
    pts = face_points(pose, look)
    s = pose.scale

    # Body: behind the head, away from where the face points.
    body = _ellipsoid((0, 0.45, -1.05), (0.62, 0.5, 1.1))
    body_px, _ = proj.project(body)
    _poly(img, _hull(body_px), _shade(look.fur, 0.93))

    # Ears first: the head covers their base.
    ear_px = []
    for side in (-1, 1):
        outline = _ear_outline(side, look, pose.ears)
        e_px, e_z = proj.project(outline)
        ear_px.append(e_px)
        _poly(img, e_px, look.ear)
        if e_z.mean() > -0.15:  # inside of the ear is seen from the front
            inner = outline.copy()
            c = outline.mean(axis=0)
            inner = c + (inner - c) * 0.62
            _poly(img, proj.project(inner)[0], look.inner_ear)

    head_px = np.concatenate([proj.project(pts["cranium"])[0], proj.project(pts["snout"])[0]])
    hull = _hull(head_px)
    _poly(img, hull, look.head_fur)
    _poly(img, hull, _shade(look.head_fur, 0.8), thickness=max(1, int(s * 0.015)))

    # Whisker pads (cheek bulge): flatten with the nose AU.
    pad_r = 0.12 * (1 - 0.4 * pose.nose)
    pads_px, pads_z = proj.project(pts["pads"])
    for p, z in zip(pads_px, pads_z):
        if z > 0.0:
            cv2.ellipse(img, tuple(np.round(p).astype(int)), (max(1, int(s * pad_r)), max(1, int(s * pad_r * 0.8))),
                        pose.roll_deg, 0, 360, _shade(look.head_fur, 1.06 - 0.1 * pose.nose), -1, cv2.LINE_AA)
            cv2.ellipse(img, tuple(np.round(p).astype(int)), (max(1, int(s * pad_r)), max(1, int(s * pad_r * 0.8))),
                        pose.roll_deg, 200, 340, _shade(look.head_fur, 0.82), max(1, int(s * 0.01)), cv2.LINE_AA)

    # Eyes: foreshortened by the turn, narrowed by orbital tightening.
    eyes_px, eyes_z = proj.project(pts["eyes"])
    normals = proj.rotate(np.array([[-0.6, 0, 0.8], [0.6, 0, 0.8]]))
    aperture = max(0.06, 1 - 0.45 * pose.orbital)
    for p, z, n in zip(eyes_px, eyes_z, normals):
        facing = n[2]
        if facing < 0.05:
            continue
        w = 0.075 * s * (0.35 + 0.65 * facing)
        h = 0.07 * s * aperture
        c = tuple(np.round(p).astype(int))
        cv2.ellipse(img, c, (max(1, int(w)), max(1, int(h))), pose.roll_deg, 0, 360, look.eye, -1, cv2.LINE_AA)
        if pose.orbital > 0.3:  # squint crease above the eye
            cv2.ellipse(img, (c[0], c[1] - int(h * 0.6)), (max(1, int(w * 1.3)), max(1, int(w * 0.5))),
                        pose.roll_deg, 200, 340, _shade(look.head_fur, 0.72), max(1, int(s * 0.012 * pose.orbital)),
                        cv2.LINE_AA)

    # Nose tip.
    nose_px, nose_z = proj.project(pts["nose_tip"])
    r = max(1, int(0.055 * s))
    if nose_z[0] > -0.2:
        cv2.ellipse(img, tuple(np.round(nose_px[0]).astype(int)), (r, int(r * 0.75)), pose.roll_deg, 0, 360,
                    look.nose, -1, cv2.LINE_AA)

    # Whiskers: 5 per side from the pads; pain pulls them back, straightens and bunches them.
    n_wh = 5
    spread = np.radians(32 * (1 - 0.32 * pose.whiskers))
    base_angle = np.radians(18 - 12 * pose.whiskers)  # drooping at rest, level and swept back with pain
    curve = 0.22 * (1 - pose.whiskers / 2)
    length = 0.62
    for side, pad in zip((-1, 1), pts["pads"]):
        a = base_angle + np.linspace(-spread, spread, n_wh)
        u = np.linspace(0, 1, 4)[:, None]
        dx = side * np.cos(a)[None, :] * u * length
        dy = (np.sin(a)[None, :] * u + curve * u**2) * length
        dz = -(0.1 + 0.7 * pose.whiskers / 2) * u * length * np.ones_like(a)[None, :]
        lines = np.stack([dx, dy, dz], axis=-1) + pad  # (4 points, n_wh, 3)
        pix, z = proj.project(lines.reshape(-1, 3))
        if z.reshape(4, n_wh)[0].mean() < -0.15:
            continue
        pix = pix.reshape(4, n_wh, 2)
        _poly_lines = [np.round(pix[:, k] * 16).astype(np.int32) for k in range(n_wh)]
        cv2.polylines(img, _poly_lines, False, look.whisker, 1, cv2.LINE_AA, 4)

    all_px = np.concatenate([hull, *ear_px, nose_px - r, nose_px + r])
    x0, y0 = all_px.min(axis=0)
    x1, y1 = all_px.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)
