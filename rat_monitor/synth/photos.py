"""Real photographs that installed packages ship, used as backgrounds and distractors of training frames.

A detector that has only seen drawn scenes calls any small high-contrast real thing a face; real clutter
(stone, grass, brick, fabric, faces of people and cats, metal, coins, text) teaches it what a face is not.
The photographs are read from the packages where they lie (never copied into this repository, never
downloaded): scikit-image's sample data (public domain or CC0, per its docstrings), scikit-learn's two
sample images (CC BY 2.0) and matplotlib's sample photograph (public domain, US Navy).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from ..models import package_file

# (package, file inside it, licence): only still photographs of real scenes and objects.
PHOTOS = (
    ("skimage", "data/astronaut.png", "public domain (NASA)"),
    ("skimage", "data/brick.png", "CC0"),
    ("skimage", "data/camera.png", "CC0"),
    ("skimage", "data/chelsea.png", "CC0"),
    ("skimage", "data/coffee.png", "CC0"),
    ("skimage", "data/coins.png", "no known copyright restrictions"),
    ("skimage", "data/grass.png", "CC0"),
    ("skimage", "data/gravel.png", "CC0"),
    ("skimage", "data/rocket.jpg", "public domain (SpaceX)"),
    ("skimage", "data/hubble_deep_field.jpg", "public domain (NASA)"),
    ("skimage", "data/text.png", "public domain"),
    ("sklearn", "datasets/images/china.jpg", "CC BY 2.0 (danielbuechele)"),
    ("sklearn", "datasets/images/flower.jpg", "CC BY 2.0 (vultilion)"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "public domain (US Navy)"),
)


@lru_cache(maxsize=1)
def photo_bank() -> tuple[np.ndarray, ...]:
    """The photographs found among the installed packages (BGR uint8), in PHOTOS order; those of a package
    that is not installed are left out (scikit-image comes with the training extra)."""
    out = []
    for module, rel, _ in PHOTOS:
        path = package_file(module, rel)
        img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path else None
        if img is not None:
            out.append(img)
    return tuple(out)


def photo_names() -> list[str]:
    """'package/file (licence)' of every photograph in the bank, for a model card."""
    return [f"{m}/{rel} ({lic})" for m, rel, lic in PHOTOS if package_file(m, rel)]


def photo_crop(rng, w: int, h: int) -> np.ndarray | None:
    """A random crop of a random photograph, scaled to (w, h), mirrored and tinted at random; None when no
    photograph is installed."""
    bank = photo_bank()
    if not bank:
        return None
    src = bank[int(rng.integers(len(bank)))]
    sh, sw = src.shape[:2]
    # the crop keeps the output's aspect ratio and covers 30-100 % of the photograph's shorter side
    frac = float(rng.uniform(0.3, 1.0))
    ch = int(min(sh, sw * h / w) * frac)
    cw = int(ch * w / h)
    y0, x0 = int(rng.integers(0, sh - ch + 1)), int(rng.integers(0, sw - cw + 1))
    crop = cv2.resize(src[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.2:
        crop = crop[::-1]
    tint = rng.uniform(0.7, 1.2, 3).astype(np.float32)
    return np.clip(crop.astype(np.float32) * tint, 0, 255).astype(np.uint8)


def paste_photo_patches(img: np.ndarray, rng, n: int, avoid: list) -> None:
    """n small photo patches (elliptic, soft-edged) as real-looking distractors, away from the face boxes."""
    h, w = img.shape[:2]
    for _ in range(n):
        size = int(rng.uniform(0.03, 0.18) * min(w, h)) + 4
        pw, ph = size, max(4, int(size * rng.uniform(0.5, 1.5)))
        x0, y0 = int(rng.integers(0, max(1, w - pw))), int(rng.integers(0, max(1, h - ph)))
        if any(x0 < b[2] and x0 + pw > b[0] and y0 < b[3] and y0 + ph > b[1] for b in avoid):
            continue
        patch = photo_crop(rng, pw, ph)
        if patch is None:
            return
        mask = np.zeros((ph, pw), np.float32)
        cv2.ellipse(mask, (pw // 2, ph // 2), (pw // 2, ph // 2), 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, size / 20))[..., None]
        roi = img[y0:y0 + ph, x0:x0 + pw]
        roi[:] = (roi * (1 - mask) + patch[:roi.shape[0], :roi.shape[1]] * mask).astype(np.uint8)
