"""Draws one rat (body, head, ears, eyes, nose, whiskers) from a small 3-D model, posed and expressive, the
way a camera sees it: furred and shaded, not flat.

The head is a set of 3-D points in head units (the head is about 1 unit tall): X to the rat's left as seen
by the camera, Y down, Z towards the camera when yaw is 0. Yaw turns the head about Y, pitch tilts the
camera to look down on the rat (90 = from above), roll tilts the image. Projection is orthographic: at a
camcorder's distance perspective hardly matters and this keeps it fast.

Appearance is layered on a patch around the rat: silhouettes become soft domes (a blurred mask is the
height field, its gradient the normal, lit by the scene's light, darker towards the rim), fur is noise
smeared along the hair direction, outlines are fuzzy, the head shadows the body; then glossy eyes with a
specular highlight, a pink nose with nostrils, translucent ears, whisker pads with follicle rows and
whiskers that thin out towards the tip.
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
    coat: str = "albino"
    seed: int = 0  # the fur texture and whisker lengths of this individual


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
        head_fur, eye = fur, _jitter(rng, (70, 50, 190), 25)  # albino eyes are red
        ear = _jitter(rng, (170, 175, 235), 15)
    elif coat == "hooded":
        fur = _jitter(rng, (225, 230, 232), 12)
        head_fur, eye = _jitter(rng, (45, 50, 60), 12), (15, 15, 20)
        ear = _jitter(rng, (110, 115, 150), 14)
    elif coat == "dark":
        fur = _jitter(rng, (40, 42, 48), 10)
        head_fur, eye = fur, (10, 10, 12)
        ear = _jitter(rng, (110, 112, 145), 14)
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
        nose=_jitter(rng, (150, 150, 225), 15) if coat == "albino" else _jitter(rng, (120, 120, 175), 15),
        whisker=_jitter(rng, (205, 210, 215), 20) if coat != "albino" else _jitter(rng, (175, 180, 185), 15),
        ear_size=float(rng.uniform(0.85, 1.2)),
        ear_roundness=float(rng.uniform(0.7, 1.0)),
        snout_length=float(rng.uniform(0.9, 1.12)),
        head_width=float(rng.uniform(0.9, 1.1)),
        size=float(rng.uniform(0.88, 1.12)),
        coat=coat,
        seed=int(rng.integers(1 << 30)),
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
    pitch_deg: float = 0.0  # 0 camera level with the head, 90 looking straight down on it
    body_up: float = 0.0  # 0 body stretched out behind the head, 1 sitting up below it (as in a reach box)


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
        yaw, roll, pitch = np.radians(pose.yaw_deg), np.radians(pose.roll_deg), np.radians(pose.pitch_deg)
        cy_, sy_ = np.cos(yaw), np.sin(yaw)
        cr, sr = np.cos(roll), np.sin(roll)
        cp, sp = np.cos(pitch), np.sin(pitch)
        self.pose = pose
        # Rotation about Y (yaw), then about X (the camera looking down: the top of the head comes towards
        # it), then roll in the image plane.
        pitch_rot = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
        self.yaw_rot = pitch_rot @ np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
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
    base = np.array([side * 0.25 * look.head_width, -0.24, -0.14 - 0.06 * ears])  # lower third behind the skull
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


LIGHT = (-0.35, -0.6, 0.72)  # default light: from the upper left and in front of the rat
FUR_CONTRAST = {"albino": 0.06, "hooded": 0.12, "dark": 0.16, "agouti": 0.22}  # how much single hairs show


def streak_kernel(dx: float, dy: float) -> np.ndarray:
    """A normalised line kernel: what a point becomes when it moves by (dx, dy) while the shutter is open
    (motion blur); also what noise becomes when smeared along the hair (fur)."""
    k = int(np.ceil(np.hypot(dx, dy))) | 1
    kernel = np.zeros((k, k), np.float32)
    c = k // 2
    cv2.line(kernel, (int(round(c - dx / 2)), int(round(c - dy / 2))),
             (int(round(c + dx / 2)), int(round(c + dy / 2))), 1.0, 1, cv2.LINE_AA)
    return kernel / max(float(kernel.sum()), 1e-6)


def _body(up: float) -> tuple[np.ndarray, np.ndarray]:
    """The trunk's centre and half-axes: stretched out behind the head (up=0) or sitting up below it (up=1)."""
    centre = np.array([0, 0.45, -1.05]) * (1 - up) + np.array([0, 1.15, -0.45]) * up
    axes = np.array([0.62, 0.5, 1.1]) * (1 - up) + np.array([0.8, 1.0, 0.7]) * up
    return centre, axes


def _tail(up: float, seed: int) -> np.ndarray:
    """The tail's centre line (12 points): from the rump along the floor, with this animal's curl."""
    centre, axes = _body(up)
    root = centre + np.array([0, axes[1] * 0.7, -axes[2] * 0.85])
    rng = np.random.default_rng([seed, 11])
    bend = rng.uniform(-1.2, 1.2)
    t = np.linspace(0, 1, 12)
    return root + np.stack([bend * t**2 * 1.5, 0.1 * t, -2.4 * t], axis=1)


class _Patch:
    """The part of the image one rat covers; masks and drawing in its coordinates (4-bit sub-pixel)."""

    def __init__(self, img: np.ndarray, points: list[np.ndarray], pad: int):
        allp = np.concatenate([p.reshape(-1, 2) for p in points])
        h, w = img.shape[:2]
        self.x0, self.y0 = (max(0, int(np.floor(v)) - pad) for v in allp.min(axis=0))
        self.x1, self.y1 = (min(lim, int(np.ceil(v)) + pad) for v, lim in zip(allp.max(axis=0), (w, h)))
        self.empty = self.x1 <= self.x0 + 1 or self.y1 <= self.y0 + 1
        self.shape = (self.y1 - self.y0, self.x1 - self.x0)
        self.origin = np.array([self.x0, self.y0], np.float64)

    def fx(self, pts) -> np.ndarray:
        return np.round((np.asarray(pts, np.float64) - self.origin) * 16).astype(np.int32)

    def mask(self, *polys: np.ndarray) -> np.ndarray:
        m = np.zeros(self.shape, np.uint8)
        for p in polys:
            cv2.fillPoly(m, [self.fx(p)], 255, cv2.LINE_AA, 4)
        return m.astype(np.float32) * (1 / 255)

    def ellipse_mask(self, centre, axes, angle: float) -> np.ndarray:
        m = np.zeros(self.shape, np.uint8)
        cv2.ellipse(m, tuple(self.fx(centre)), tuple(int(max(16, a * 16)) for a in axes), angle, 0, 360, 255, -1,
                    cv2.LINE_AA, 4)
        return m.astype(np.float32) * (1 / 255)


def _dome(mask: np.ndarray, radius_px: float, light: np.ndarray) -> np.ndarray:
    """Shading of a rounded, furry part: the blurred silhouette is its height, the height's slope its
    normal, lit by `light`; the rim is darker (self-shadow between hairs). Computed at reduced size."""
    h, w = mask.shape
    k = max(1, int(radius_px / 8))
    small = cv2.resize(mask, (max(2, w // k), max(2, h // k)), interpolation=cv2.INTER_AREA) if k > 1 else mask
    sigma = max(0.8, 0.45 * radius_px / k)
    height = cv2.GaussianBlur(small, (0, 0), sigma)
    gy, gx = np.gradient(height)
    nx, ny = -gx * (2 * sigma), -gy * (2 * sigma)
    lambert = (nx * light[0] + ny * light[1] + light[2]) / np.sqrt(nx * nx + ny * ny + 1)
    rim = np.sqrt(np.clip(height * 2.0, 0, 1))
    shade = (0.32 + 0.78 * np.clip(lambert, 0, 1)) * (0.5 + 0.5 * rim)
    return cv2.resize(shade, (w, h), interpolation=cv2.INTER_LINEAR) if k > 1 else shade


def _fur(shape: tuple[int, int], origin: np.ndarray, strand_px: float, seed: int, contrast: float) -> np.ndarray:
    """Brightness of single hairs around 1: noise smeared along the hair, which grows away from `origin`
    (the nose) in every direction; four orientations blended by the local hair angle."""
    noise = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    length = max(3.0, strand_px)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    hair = np.arctan2(yy - origin[1], xx - origin[0])
    texture = np.zeros(shape, np.float32)
    for k in range(4):
        a = k * np.pi / 4
        streaks = cv2.filter2D(noise, -1, streak_kernel(np.cos(a) * length, np.sin(a) * length))
        texture += streaks * np.maximum(np.cos(2 * (hair - a)), 0) ** 2
    texture *= 1 / (float(texture.std()) + 1e-6)
    texture += 0.35 * cv2.GaussianBlur(noise, (0, 0), 0.6)
    return 1 + contrast * texture


def _fuzzy(mask: np.ndarray, fur: np.ndarray, edge_px: float) -> np.ndarray:
    """Coverage of a furry part: hairs poke out of and into the outline instead of a clean edge."""
    soft = cv2.GaussianBlur(mask, (0, 0), edge_px)
    return np.clip((soft - 0.5) * 3 + 0.5 + 1.2 * (fur - 1), 0, 1) * np.clip(soft * 4, 0, 1)


def _over(dst: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> None:
    """Alpha-composites colour (H, W, 3 or 3) over dst (float32 H, W, 3) in place."""
    a = alpha[..., None]
    dst *= 1 - a
    dst += np.asarray(colour, np.float32) * a


def _whiskers(pose: Pose, look: Look, proj: _Projector, pads: np.ndarray) -> list[np.ndarray]:
    """Whisker polylines in image pixels (one (6, 2) array each) of the sides that face the camera.
    Pain (whisker AU) pulls them back, straightens and bunches them."""
    rng = np.random.default_rng([look.seed, 5])
    n = 12
    lengths = rng.uniform(0.45, 1.15, n)
    jitter = rng.normal(0, 0.05, n)
    roots = np.stack([rng.uniform(0, 0.1, n), rng.uniform(-0.05, 0.07, n), np.zeros(n)], axis=1)  # rows on the pad
    spread = np.radians(32 * (1 - 0.32 * pose.whiskers))
    base_angle = np.radians(18 - 12 * pose.whiskers)  # drooping at rest, level and swept back with pain
    curve = 0.22 * (1 - pose.whiskers / 2)
    lines = []
    for side, pad in zip((-1, 1), pads):
        a = base_angle + np.linspace(-spread, spread, n) + jitter
        u = np.linspace(0, 1, 6)[:, None] * lengths[None, :]
        dx = side * np.cos(a)[None, :] * u
        dy = np.sin(a)[None, :] * u + curve * u**2
        dz = -(0.1 + 0.7 * pose.whiskers / 2) * u
        pts3 = np.stack([dx, dy, dz], axis=-1) + pad + roots * (side, 1, 1)  # (6 points, n, 3)
        pix, z = proj.project(pts3.reshape(-1, 3))
        if z.reshape(6, n)[0].mean() < -0.15:
            continue
        pix = pix.reshape(6, n, 2)
        lines += [pix[:, k] for k in range(n)]
    return lines


def draw_rat(img: np.ndarray, pose: Pose, look: Look, light=LIGHT, implant: tuple[int, int, int] | None = None,
             parts: dict | None = None) -> tuple[float, float, float, float]:
    """Draws body and head onto img in place; returns the face box (x0, y0, x1, y1), unclipped.
    implant: colour of a head-mounted implant (dental cement cap), or None. parts: when a dict, receives
    full-image masks of the 'eye', 'ear' and 'whisker' pixels (what the action units change)."""
    proj = _Projector(pose)
    pts = face_points(pose, look)
    s = pose.scale
    light = np.asarray(light, np.float64) / np.linalg.norm(light)

    body_px = _hull(proj.project(_ellipsoid(*_body(pose.body_up)))[0])
    tail_px = proj.project(_tail(pose.body_up, look.seed))[0]
    cranium_px = _hull(proj.project(pts["cranium"])[0])
    snout_px = _hull(proj.project(pts["snout"])[0])
    head_px = _hull(np.concatenate([cranium_px, snout_px]))
    ears = []
    for side in (-1, 1):
        outline = _ear_outline(side, look, pose.ears)
        e_px, e_z = proj.project(outline)
        centre = outline.mean(axis=0)
        inner = proj.project(centre + (outline - centre) * 0.62)[0] if e_z.mean() > -0.15 else None
        ears.append((e_px, inner))
    nose_px, nose_z = proj.project(pts["nose_tip"])
    r_nose = max(1.0, 0.055 * s)
    whiskers = _whiskers(pose, look, proj, pts["pads"])

    face_px = np.concatenate([head_px, *(e for e, _ in ears), nose_px - r_nose, nose_px + r_nose])
    (bx0, by0), (bx1, by1) = face_px.min(axis=0), face_px.max(axis=0)
    box = (float(bx0), float(by0), float(bx1), float(by1))

    patch = _Patch(img, [body_px, face_px, tail_px, *whiskers], pad=int(0.05 * s) + 3)
    if patch.empty:
        return box
    region = img[patch.y0:patch.y1, patch.x0:patch.x1]
    out = region.astype(np.float32)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)

    # Hair grows from the nose back over the head to the body.
    fur = _fur(patch.shape, nose_px[0] - patch.origin, 0.05 * s, look.seed, FUR_CONTRAST.get(look.coat, 0.15))
    edge = max(0.6, 0.015 * s)

    # Tail: behind the body, thinning to the tip, scaly pink-grey.
    tail = np.zeros(patch.shape, np.uint8)
    q = patch.fx(tail_px)
    for k in range(len(q) - 1):
        cv2.line(tail, tuple(q[k]), tuple(q[k + 1]), 255, max(1, int(0.09 * s * (1 - k / len(q)))), cv2.LINE_AA, 4)
    _over(out, _shade(look.ear, 0.95), tail.astype(np.float32) * (1 / 255))

    # Body: lit dome, coat pattern (a hooded rat's dark hood covers head and shoulders), shadowed by the head.
    body = patch.mask(body_px)
    head = patch.mask(head_px)
    albedo = np.empty(patch.shape + (3,), np.float32)
    albedo[:] = look.fur
    if look.head_fur != look.fur:
        neck = proj.project(np.array([[0, 0.35 + 0.45 * pose.body_up, -0.3 * (1 - pose.body_up)]]))[0][0]
        hood = patch.ellipse_mask(neck, (0.8 * s, 0.62 * s), pose.roll_deg)
        hood = np.clip(cv2.GaussianBlur(hood, (0, 0), 0.06 * s + 0.5) + 1.5 * (fur - 1), 0, 1)
        _over(albedo, look.head_fur, hood)
    shadow = cv2.GaussianBlur(np.roll(head, (int(0.08 * s), int(-light[0] * 0.08 * s)), axis=(0, 1)),
                              (0, 0), 0.12 * s + 0.5)
    shade = _dome(body, 0.6 * s, light) * fur * (1 - 0.45 * shadow * (1 - head))
    _over(out, albedo * shade[..., None], _fuzzy(body, fur, edge))

    if pose.body_up > 0.5:  # forepaws held in front of the chest
        for side in (-1, 1):
            paw, paw_z = proj.project(np.array([[side * 0.2, 1.0, 0.3]]))
            if paw_z[0] > 0:
                pm = patch.ellipse_mask(paw[0], (0.09 * s, 0.07 * s), pose.roll_deg)
                _over(out, (150, 160, 215), pm * 0.95)

    # Ears: thin and translucent, the background shows through; the rim is darker, the inside pinker.
    ear_masks = []
    for e_px, inner in ears:
        m = patch.mask(e_px)
        ear_masks.append(m)
        tone = 0.78 + 0.3 * cv2.GaussianBlur(m, (0, 0), 0.03 * s + 0.5)
        _over(out, np.asarray(look.ear, np.float32) * tone[..., None], m * 0.86)
        if inner is not None:
            mi = cv2.GaussianBlur(patch.mask(inner), (0, 0), 0.02 * s + 0.5)
            _over(out, look.inner_ear, mi * 0.55)

    # Head: its own lit dome, the snout a smaller bulge in front.
    shade = _dome(head, 0.32 * s, light) * (0.9 + 0.1 * _dome(patch.mask(snout_px), 0.15 * s, light)) * fur
    albedo_head = np.asarray(look.head_fur, np.float32)
    _over(out, albedo_head * shade[..., None], _fuzzy(head, fur, edge))

    # Whisker pads: slightly raised and lighter; flattened by the nose/cheek AU.
    pad_r = 0.12 * (1 - 0.4 * pose.nose)
    pads_px, pads_z = proj.project(pts["pads"])
    for p, z in zip(pads_px, pads_z):
        if z > 0.0:
            pm = patch.ellipse_mask(p, (s * pad_r, s * pad_r * 0.8), pose.roll_deg)
            out *= (1 + (0.12 - 0.06 * pose.nose) * cv2.GaussianBlur(pm, (0, 0), 0.03 * s + 0.5))[..., None]

    det = np.clip(out, 0, 255).astype(np.uint8)
    dark = _shade(look.head_fur, 0.55)

    # Follicle rows on the pads: visible on large faces only.
    if s > 70:
        dots = np.zeros(patch.shape, np.uint8)
        for side, (p3, z) in zip((-1, 1), zip(pts["pads"], pads_z)):
            if z <= 0.15:
                continue
            grid = np.array([[side * (0.02 + 0.028 * c), -0.05 + 0.034 * r, 0.03] for r in range(4) for c in range(5)])
            for q in proj.project(grid + p3)[0]:
                cv2.circle(dots, tuple(patch.fx(q)), int(max(8, 0.005 * s * 16)), 255, -1, cv2.LINE_AA, 4)
        det_f = det.astype(np.float32)
        _over(det_f, dark, dots.astype(np.float32) * (0.5 / 255) * (head > 0.9))
        det = det_f.astype(np.uint8)
        for p, z in zip(pads_px, pads_z):  # the crease under each pad
            if z > 0:
                cv2.ellipse(det, tuple(patch.fx(p)), (int(s * pad_r * 16), int(s * pad_r * 0.8 * 16)), pose.roll_deg,
                            200, 340, _shade(look.head_fur, 0.75), max(1, int(s * 0.008)), cv2.LINE_AA, 4)

    # Eyes: foreshortened by the turn, narrowed by orbital tightening; glossy, with the light's highlight.
    eyes_px, eyes_z = proj.project(pts["eyes"])
    normals = proj.rotate(np.array([[-0.6, 0, 0.8], [0.6, 0, 0.8]]))
    aperture = max(0.06, 1 - 0.45 * pose.orbital)
    eye_mask = np.zeros(patch.shape, np.uint8)
    for p, n in zip(eyes_px, normals):
        facing = n[2]
        if facing < 0.05:
            continue
        w = 0.075 * s * (0.35 + 0.65 * facing)
        h = 0.07 * s * aperture
        c = tuple(patch.fx(p))
        cv2.ellipse(det, c, (int(max(16, (w + 0.01 * s) * 16)), int(max(16, (h + 0.01 * s) * 16))), pose.roll_deg,
                    0, 360, dark, -1, cv2.LINE_AA, 4)  # the lid rim
        axes = (int(max(16, w * 16)), int(max(16, h * 16)))
        cv2.ellipse(det, c, axes, pose.roll_deg, 0, 360, look.eye, -1, cv2.LINE_AA, 4)
        cv2.ellipse(eye_mask, c, axes, pose.roll_deg, 0, 360, 255, -1, cv2.LINE_8, 4)
        if h > 1.5 and aperture > 0.35:
            hl = (p[0] + light[0] * 0.4 * w, p[1] + light[1] * 0.4 * h)
            cv2.circle(det, tuple(patch.fx(hl)), int(max(10, 0.2 * min(w, h) * 16)), (235, 240, 245), -1,
                       cv2.LINE_AA, 4)
        if pose.orbital > 0.3:  # squint crease above the eye
            cv2.ellipse(det, (c[0], c[1] - int(h * 0.6 * 16)), (int(max(16, w * 1.3 * 16)), int(max(16, w * 0.5 * 16))),
                        pose.roll_deg, 200, 340, _shade(look.head_fur, 0.72), max(1, int(s * 0.012 * pose.orbital)),
                        cv2.LINE_AA, 4)

    # Nose: pink rhinarium with two nostrils.
    if nose_z[0] > -0.2:
        c = tuple(patch.fx(nose_px[0]))
        cv2.ellipse(det, c, (int(r_nose * 0.85 * 16), int(r_nose * 0.6 * 16)), pose.roll_deg, 0, 360, look.nose, -1,
                    cv2.LINE_AA, 4)
        if s > 50:
            for side in (-1, 1):
                q = nose_px[0] + proj.rotate(np.array([[side * 0.022, 0.01, 0]]))[0, :2] @ proj.roll_2d.T
                cv2.ellipse(det, tuple(patch.fx(q)), (int(r_nose * 3.5), int(r_nose * 2)), pose.roll_deg + side * 30,
                            0, 360, _shade(look.nose, 0.55), -1, cv2.LINE_AA, 4)

    if implant is not None:  # dental-cement cap on the skull, between the ears
        top, top_z = proj.project(np.array([[0, -0.44, -0.02], [0, -0.3, -0.02]]))
        if top_z[0] > -0.3:
            half = 0.1 * s
            cv2.ellipse(det, tuple(patch.fx(top[1])), (int(half * 16), int(half * 0.6 * 16)), pose.roll_deg, 0, 360,
                        _shade(implant, 0.75), -1, cv2.LINE_AA, 4)
            cv2.ellipse(det, tuple(patch.fx(top[0])), (int(half * 16), int(half * 0.6 * 16)), pose.roll_deg, 0, 360,
                        implant, -1, cv2.LINE_AA, 4)

    # Whiskers: thinner and fainter towards the tip.
    layer = np.zeros(patch.shape, np.uint8)
    base = max(1, int(round(0.006 * s)))
    for line in whiskers:
        q = patch.fx(line)
        for k in range(len(q) - 1):
            cv2.line(layer, tuple(q[k]), tuple(q[k + 1]), int(230 - 35 * k), max(1, base - k // 2), cv2.LINE_AA, 4)
    alpha = layer.astype(np.float32) * (0.85 / 255)
    det_f = det.astype(np.float32)
    _over(det_f, look.whisker, alpha)
    region[:] = np.clip(det_f, 0, 255).astype(np.uint8) if region.ndim == 3 else cv2.cvtColor(
        np.clip(det_f, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)

    if parts is not None:
        for name, m in (("eye", eye_mask > 0), ("ear", np.maximum(*ear_masks) > 0.5), ("whisker", layer > 0)):
            full = np.zeros(img.shape[:2], bool)
            full[patch.y0:patch.y1, patch.x0:patch.x1] = m
            parts[name] = full
    return box
