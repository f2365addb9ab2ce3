"""Randomised lab scenes for training the face detector: what labs film, and everything a detector could
latch on to varied.

Settings: transparent cages from the side, reach boxes from the front (a slot with rods in front of the face,
a shelf, lamps), open fields and bedding from above, and random textures. Rats of every coat, several per
frame, sitting up or stretched out, 20-pixel faces to faces filling the frame, some with head implants,
some turned away (negatives). Then what sits between the rat and the sensor: glass reflections, bars and
rods, gloved hands, LEDs, infrared greyscale, colour casts, wide-angle lenses, blur, low resolution, noise
and JPEG. Each frame is a pure function of (seed, index).
"""

from __future__ import annotations

import cv2
import numpy as np

from .face import COATS, Pose, draw_rat, look_for
from .photos import paste_photo_patches, photo_crop
from .scene import Scene
from .script import face_visible

SETTINGS = ("cage_side", "reach_box", "open_field", "bedding", "random")
SIZES = ((640, 360), (640, 480), (480, 480), (500, 520), (720, 405), (512, 384), (400, 600), (960, 540),
         (1000, 1000), (800, 600))


def _colour(rng, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def _neutral(rng, lo: int, hi: int) -> tuple[int, int, int]:
    """A grey, cream or white with a slight tint: the walls and boxes of most labs."""
    level = rng.uniform(lo, hi)
    return tuple(int(np.clip(level * t, 0, 255)) for t in rng.uniform(0.88, 1.08, 3))


def _smooth_noise(rng, h: int, w: int, cells: int) -> np.ndarray:
    """Blotchy [0, 1] field: uniform noise on a coarse grid, enlarged."""
    small = rng.random((max(2, h // cells), max(2, w // cells)), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _tinted(base, field: np.ndarray, depth: float) -> np.ndarray:
    """A flat colour modulated by +-depth/2 with a [0, 1] field."""
    return np.clip(np.asarray(base, np.float32) * (1 - depth / 2 + depth * field[..., None]), 0, 255)


# ----------------------------------------------------------------------------------------- backgrounds
def _background(setting: str, rng, w: int, h: int) -> np.ndarray:
    if setting == "cage_side":
        return Scene(w, h, int(rng.integers(1 << 30)), noise_sigma=1.0, bars=False).background.copy()
    if setting == "reach_box":
        wall = _neutral(rng, 150, 256) if rng.random() < 0.7 else _colour(rng, 150, 256)
        img = _tinted(wall, _smooth_noise(rng, h, w, 60), 0.15)
        ramp = np.linspace(float(rng.uniform(0.8, 1.1)), float(rng.uniform(0.8, 1.1)), w, dtype=np.float32)
        img = (img * ramp[None, :, None]).clip(0, 255).astype(np.uint8)
        # box edges and side walls in perspective
        for _ in range(int(rng.integers(2, 6))):
            x = int(rng.uniform(0, w))
            cv2.line(img, (x, 0), (x + int(rng.normal(0, 0.05 * w)), h), _colour(rng, 90, 230),
                     int(rng.integers(1, 6)), cv2.LINE_AA)
        floor = int(h * rng.uniform(0.7, 0.92))
        img[floor:] = (img[floor:] * rng.uniform(0.5, 1.0)).astype(np.uint8)
        for _ in range(int(rng.integers(0, 3))):  # lamps: dark housings with a bright face
            c = (int(rng.uniform(0, w)), int(rng.uniform(0, 0.3 * h)))
            r = int(rng.uniform(0.03, 0.07) * w)
            cv2.circle(img, c, r, _colour(rng, 10, 50), -1, cv2.LINE_AA)
            cv2.circle(img, (c[0] + r // 3, c[1] + r // 3), r // 2, _colour(rng, 200, 256), -1, cv2.LINE_AA)
        return img
    if setting == "open_field":
        img = _tinted(_colour(rng, 20, 240), _smooth_noise(rng, h, w, 80), 0.2).astype(np.uint8)
        if rng.random() < 0.5:
            step = int(rng.uniform(0.08, 0.25) * w)
            line = _colour(rng, 0, 256)
            for x in range(int(rng.integers(step)), w, step):
                cv2.line(img, (x, 0), (x, h), line, 1, cv2.LINE_AA)
            for y in range(int(rng.integers(step)), h, step):
                cv2.line(img, (0, y), (w, y), line, 1, cv2.LINE_AA)
        m = int(rng.uniform(0, 0.08) * w)
        cv2.rectangle(img, (m, m), (w - m, h - m), _colour(rng, 0, 256), int(rng.integers(2, 12)))
        return img
    if setting == "bedding":
        img = np.empty((h, w, 3), np.uint8)
        img[:] = _colour(rng, 60, 200)
        base = np.array(rng.integers(110, 220, 3)) * np.array([0.65, 0.85, 1.0])
        n = int(w * h / rng.uniform(40, 160))
        xs, ys = rng.uniform(0, w, n).astype(int), rng.uniform(0, h, n).astype(int)
        sizes = rng.uniform(2, 0.02 * w + 3, (n, 2)).astype(int)
        angles = rng.uniform(0, 180, n)
        tones = rng.uniform(0.55, 1.15, n)
        for x, y, (a, b), ang, t in zip(xs, ys, sizes, angles, tones):
            cv2.ellipse(img, (int(x), int(y)), (int(a), max(1, int(b) // 2)), float(ang), 0, 360,
                        tuple(float(c * t) for c in base), -1)
        return cv2.GaussianBlur(img, (0, 0), 0.7)
    # random: smooth colour fields and clutter shapes
    img = np.zeros((h, w, 3), np.float32)
    for ch in range(3):
        img[..., ch] = _smooth_noise(rng, h, w, int(rng.integers(20, 200))) * rng.uniform(60, 255)
    img = img.astype(np.uint8)
    _clutter(img, rng, int(rng.integers(3, 15)))
    return img


def _clutter(img: np.ndarray, rng, n: int) -> None:
    """Shapes that are not rat faces: blobs, rods, boxes, rings."""
    h, w = img.shape[:2]
    for _ in range(n):
        kind = rng.integers(4)
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        size = int(rng.uniform(0.02, 0.2) * min(w, h)) + 2
        colour = _colour(rng)
        if kind == 0:
            cv2.ellipse(img, c, (size, int(size * rng.uniform(0.4, 1))), float(rng.uniform(0, 180)), 0, 360, colour,
                        -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.line(img, c, (c[0] + int(rng.normal(0, w / 3)), c[1] + int(rng.normal(0, h / 3))), colour,
                     int(rng.integers(1, 12)), cv2.LINE_AA)
        elif kind == 2:
            cv2.rectangle(img, c, (c[0] + size, c[1] + int(size * rng.uniform(0.3, 2))), colour, -1)
        else:
            cv2.circle(img, c, size, colour, int(rng.integers(1, 6)), cv2.LINE_AA)


# ------------------------------------------------------------------------------------- in front of rats
def _leds(img: np.ndarray, rng) -> None:
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(1, 4))):
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        r = int(rng.uniform(2, 0.012 * w + 3))
        colour = ((255, 60, 40), (40, 40, 255), (60, 255, 60), (255, 255, 255))[int(rng.integers(4))]
        x0, y0, x1, y1 = max(0, c[0] - 8 * r), max(0, c[1] - 8 * r), min(w, c[0] + 8 * r), min(h, c[1] + 8 * r)
        glow = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)  # the halo, blurred around the LED only
        cv2.circle(glow, (c[0] - x0, c[1] - y0), r * 3, colour, -1, cv2.LINE_AA)
        roi = img[y0:y1, x0:x1]
        cv2.add(roi, cv2.GaussianBlur(glow, (0, 0), r * 1.5) // 2, dst=roi)
        cv2.circle(img, c, r, (255, 255, 255), -1, cv2.LINE_AA)


def _gloved_hand(img: np.ndarray, rng, faces: list) -> None:
    """A gloved hand reaching in: palm and four fingers (blue, purple, white or black nitrile), placed where
    it does not hide a face (a hidden face is not labelled)."""
    h, w = img.shape[:2]
    colour = ((200, 120, 60), (180, 90, 140), (235, 235, 235), (40, 40, 40))[int(rng.integers(4))]
    size = rng.uniform(0.1, 0.3) * min(w, h)
    for _ in range(10):
        c = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        if all(not (b[0] - size < c[0] < b[2] + size and b[1] - size < c[1] < b[3] + size) for b in faces):
            break
    else:
        return
    ang = rng.uniform(0, 2 * np.pi)
    d = np.array([np.cos(ang), np.sin(ang)])
    n = np.array([-d[1], d[0]])
    cv2.ellipse(img, tuple(c.astype(int)), (int(size * 0.5), int(size * 0.4)), float(np.degrees(ang)), 0, 360,
                colour, -1, cv2.LINE_AA)
    for k in range(4):
        base = c + d * size * 0.4 + n * size * (k - 1.5) * 0.2
        tip = base + d * size * rng.uniform(0.4, 0.7)
        cv2.line(img, tuple(base.astype(int)), tuple(tip.astype(int)), colour, max(2, int(size * 0.16)),
                 cv2.LINE_AA)
    shade = tuple(int(v * 0.7) for v in colour)
    cv2.ellipse(img, tuple(c.astype(int)), (int(size * 0.5), int(size * 0.4)), float(np.degrees(ang)), 90, 270,
                shade, max(1, int(size * 0.03)), cv2.LINE_AA)


def _reach_box_front(img: np.ndarray, rng, faces: list) -> None:
    """The front wall of a reach box: a slot with rods in front of the face and a shelf below it."""
    h, w = img.shape[:2]
    centre = np.mean([(b[0] + b[2]) / 2 for b in faces]) if faces else rng.uniform(0.3, 0.7) * w
    colour = _colour(rng, 150, 240)
    for dx in (-1, 1):
        if rng.random() < 0.85:
            x = int(centre + dx * rng.uniform(0.01, 0.06) * w)
            cv2.line(img, (x, 0), (x, h), colour, int(rng.integers(1, 5)), cv2.LINE_AA)
    if rng.random() < 0.7:
        bottom = max((b[3] for b in faces), default=h * 0.6)
        y = int(min(h - 5, bottom + rng.uniform(-0.03, 0.1) * h))
        x0, x1 = int(rng.uniform(0, 0.3) * w), int(rng.uniform(0.7, 1) * w)
        thick = int(rng.uniform(0.01, 0.04) * h) + 2
        cv2.rectangle(img, (x0, y), (x1, y + thick), _colour(rng, 120, 230), -1)
        cv2.line(img, (x0, y), (x1, y), _colour(rng, 200, 256), 1, cv2.LINE_AA)


def _bars(img: np.ndarray, rng) -> None:
    h, w = img.shape[:2]
    spacing = rng.uniform(0.03, 0.15) * w
    thick = int(rng.integers(1, max(2, w // 150)))
    colour = _colour(rng, 30, 230)
    slant = rng.normal(0, 0.1) * h
    x = rng.uniform(0, spacing)
    horizontal = rng.random() < 0.3
    while x < (h if horizontal else w):
        if horizontal:
            cv2.line(img, (0, int(x)), (w, int(x + slant)), colour, thick, cv2.LINE_AA)
        else:
            cv2.line(img, (int(x), 0), (int(x + slant), h), colour, thick, cv2.LINE_AA)
        x += spacing


def _glass(img: np.ndarray, rng) -> np.ndarray:
    """Reflections on a transparent wall: bright soft streaks and a faint flipped ghost of the room."""
    h, w = img.shape[:2]
    refl = np.zeros_like(img)
    for _ in range(int(rng.integers(1, 4))):
        x, width, slant = rng.uniform(0, w), rng.uniform(0.01, 0.08) * w, rng.uniform(-0.6, 0.6) * h
        pts = np.array([[x, 0], [x + width, 0], [x + width - slant, h], [x - slant, h]], np.int32)
        cv2.fillConvexPoly(refl, pts, (int(rng.integers(15, 70)),) * 3, cv2.LINE_AA)
    small = cv2.resize(refl, (w // 4, h // 4), interpolation=cv2.INTER_AREA)  # soft streaks: blur at 1/4 size
    out = cv2.add(img, cv2.resize(cv2.GaussianBlur(small, (0, 0), max(1.0, w / 600)), (w, h)))
    if rng.random() < 0.4:
        out = cv2.addWeighted(out, 1.0, cv2.GaussianBlur(out[:, ::-1], (0, 0), 3), float(rng.uniform(0.05, 0.2)), 0)
    return out


# -------------------------------------------------------------------------------------------- camera
def _wide_angle(img: np.ndarray, boxes: list, k: float) -> tuple[np.ndarray, list]:
    """Barrel distortion (a wide-angle lens): each output pixel samples the input further from the centre.
    Boxes follow their corners and edge midpoints through the same mapping."""
    h, w = img.shape[:2]
    cx, cy, norm = w / 2, h / 2, max(w, h) / 2
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = (xx - cx) / norm, (yy - cy) / norm
    f = 1 + k * (dx * dx + dy * dy)
    out = cv2.remap(img, cx + dx * f * norm, cy + dy * f * norm, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def forward(p: np.ndarray) -> np.ndarray:  # input point -> output point (fixed-point inverse of f)
        q = (p - (cx, cy)) / norm
        u = q.copy()
        for _ in range(8):
            u = q / (1 + k * (u**2).sum(axis=1, keepdims=True))
        return u * norm + (cx, cy)

    moved = []
    for x0, y0, x1, y1 in boxes:
        xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
        p = forward(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1], [xm, y0], [xm, y1], [x0, ym], [x1, ym]]))
        moved.append((*p.min(axis=0), *p.max(axis=0)))
    return out, moved


def lab_frame(seed: int, index: int, setting: str | None = None,
              photos: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One randomised frame (BGR) and the boxes (N, 4) of the rat faces a person would label in it.
    setting: one of SETTINGS, or None to draw one at random. photos: the share of frames drawn on a real
    photograph instead (a third of them without a rat: real negatives); real photo patches are pasted as
    distractors into as many others. photos=0 gives the drawn scenes alone, frame for frame as before."""
    rng = np.random.default_rng([seed, index, 4242])
    prng = np.random.default_rng([seed, index, 777])  # the photo draws: a stream of their own
    w, h = SIZES[int(rng.integers(len(SIZES)))]
    drawn = SETTINGS[int(rng.choice(len(SETTINGS), p=[0.22, 0.3, 0.16, 0.14, 0.18]))]
    setting = setting or drawn
    img = _background(setting, rng, w, h)
    on_photo = setting != "reach_box" and prng.random() < photos
    backdrop = photo_crop(prng, w, h) if on_photo else None
    if backdrop is not None:
        img = backdrop
    if rng.random() < 0.5:
        _clutter(img, rng, int(rng.integers(1, 6)))
    from_above = setting in ("open_field", "bedding") or (setting == "random" and rng.random() < 0.3)
    light = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.9, 0.3), rng.uniform(0.4, 1.0)])
    n_rats = int(rng.choice([0, 1, 2, 3], p=[0.08, 0.67, 0.18, 0.07]))
    if backdrop is not None and prng.random() < 1 / 3:
        n_rats = 0
    boxes = []
    for r in range(n_rats):
        coat = COATS[int(rng.choice(4, p=[0.25, 0.35, 0.25, 0.15]))]
        look = look_for(int(rng.integers(1, 100000)), coat)
        # Face height as a share of the frame: 20-pixel faces up to faces filling the frame (log-uniform).
        share = float(np.exp(rng.uniform(np.log(0.05), np.log(0.55 if setting == "reach_box" else 0.45))))
        if setting == "reach_box":
            share = max(share, float(rng.uniform(0.12, 0.45)))
        scale = share * h / 1.05 * look.size
        yaw = float(rng.uniform(-180, 180)) if rng.random() < 0.2 else float(rng.normal(0, 40))
        pitch = float(rng.uniform(45, 88)) if from_above else float(rng.normal(5, 12))
        body_up = float(rng.uniform(0.6, 1)) if setting == "reach_box" else float(rng.uniform(0, 0.6))
        if n_rats == 1:
            cx = w * rng.uniform(0.15, 0.85)
        else:
            cx = w * ((r + 0.5) / n_rats + rng.uniform(-0.1, 0.1))
        cy = h * rng.uniform(0.2, 0.7)
        aus = rng.uniform(0, 2, 4)
        roll = float(rng.normal(0, 25 if from_above else 10))
        if from_above:  # seen from above, the rat lies in any direction
            roll = float(rng.uniform(-180, 180))
        pose = Pose(float(cx), float(cy), float(scale), yaw, roll, *(float(a) for a in aus), pitch_deg=pitch,
                    body_up=body_up)
        implant = _colour(rng, 100, 240) if rng.random() < 0.2 else None
        box = draw_rat(img, pose, look, light=light, implant=implant)
        if face_visible(box, yaw, w, h):
            boxes.append(box)
    if setting == "reach_box":
        _reach_box_front(img, rng, boxes)
    if backdrop is None and prng.random() < photos:
        paste_photo_patches(img, prng, int(prng.integers(1, 6)), boxes)
    if rng.random() < 0.25:
        _bars(img, rng)
    if rng.random() < 0.15:
        _gloved_hand(img, rng, boxes)
    if rng.random() < 0.25:
        _leds(img, rng)
    if setting in ("cage_side", "reach_box") or rng.random() < 0.2:
        img = _glass(img, rng)
    # camera: colour cast and exposure, vignette, lens, blur, resolution, infrared, noise, compression
    img = cv2.convertScaleAbs(img * rng.uniform(0.8, 1.2, 3).astype(np.float32), alpha=float(rng.uniform(0.5, 1.3)),
                              beta=float(rng.uniform(-20, 20)))
    if rng.random() < 0.3:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (max(w, h) / 2) ** 2
        img = (img * (1 - rng.uniform(0.1, 0.5) * r2)[..., None]).clip(0, 255).astype(np.uint8)
    if rng.random() < 0.15:
        img, boxes = _wide_angle(img, boxes, float(rng.uniform(0.05, 0.3)))
    if rng.random() < 0.25:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 2.5)))
    if rng.random() < 0.2:
        f = rng.uniform(0.2, 0.5)
        small = cv2.resize(img, (max(16, int(w * f)), max(16, int(h * f))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.15:
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        img = cv2.cvtColor(cv2.equalizeHist(grey) if rng.random() < 0.5 else grey, cv2.COLOR_GRAY2BGR)
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(1, 8))
    img = cv2.add(img, noise, dtype=cv2.CV_8U)
    if rng.random() < 0.7:
        q = int(rng.integers(30, 95))
        img = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR)
    b = np.array(boxes, np.float32).reshape(-1, 4)
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w - 1)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h - 1)
    return img, b
