"""Image helpers shared by the synthetic generator and the pipeline, so training crops and live crops match."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")  # still images the tool reads
CROP_MARGIN = 0.1  # face crops are squares around the box, 10% wider than its longer side
CROP_JPEG_QUALITY = 90  # scored face crops are kept as JPEG in the run folder


MAX_IMAGE_PIXELS = 40_000_000  # an 8K frame has 33 MP; a header claiming more is refused before decoding


def images_in(folder: Path | str) -> list[Path]:
    """The still images inside FOLDER, recursively, sorted."""
    return sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_EXTS and f.is_file())


def read_image(path: Path | str) -> tuple[np.ndarray | None, str]:
    """A still image as BGR, or None and why. Only regular files are opened (a FIFO named .jpg would block), and
    the size its header claims is checked before any pixel is decoded (a 60000x60000 header would take GBs)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        return None, "no such file"
    if not path.is_file():
        return None, "not a regular file"
    limit = f"at most {MAX_IMAGE_PIXELS // 1_000_000} MP"
    try:
        with Image.open(path) as header:  # reads the header only
            width, height = header.size
    except Image.DecompressionBombError:  # Pillow's own refusal, above 2 x 89 MP
        return None, f"image too large (its header claims over {2 * Image.MAX_IMAGE_PIXELS // 1_000_000} MP; {limit})"
    except (UnidentifiedImageError, OSError, ValueError):
        return None, "not a readable image"
    if width * height > MAX_IMAGE_PIXELS:
        return None, f"image too large ({width}x{height} pixels; {limit})"
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return (img, "") if img is not None and img.size else (None, "not a readable image")


def square_crop(img: np.ndarray, box, margin: float = CROP_MARGIN, shift=(0.0, 0.0), zoom: float = 1.0) -> np.ndarray:
    """A square crop centred on a face box (optionally shifted by a fraction of its side and zoomed);
    the frame edge is replicated where the square leaves the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, 2.0) * (1 + margin) * zoom
    cx = (x0 + x1) / 2 + shift[0] * side
    cy = (y0 + y1) / 2 + shift[1] * side
    h, w = img.shape[:2]
    half = side / 2
    a0, b0 = int(round(cx - half)), int(round(cy - half))
    a1, b1 = max(a0 + 1, int(round(cx + half))), max(b0 + 1, int(round(cy + half)))
    if a0 >= 0 and b0 >= 0 and a1 <= w and b1 <= h:
        return img[b0:b1, a0:a1]
    # the square leaves the frame: its rows and columns beyond the edge repeat the edge's; only the crop is padded
    # (padding the whole frame cost 0.4 ms at 1080p)
    if a0 < w and b0 < h and a1 > 0 and b1 > 0:
        return cv2.copyMakeBorder(img[max(b0, 0):min(b1, h), max(a0, 0):min(a1, w)], max(0, -b0), max(0, b1 - h),
                                  max(0, -a0), max(0, a1 - w), cv2.BORDER_REPLICATE)
    rows = np.clip(np.arange(b0, b1), 0, h - 1)  # wholly outside: the nearest edge pixels, repeated
    cols = np.clip(np.arange(a0, a1), 0, w - 1)
    return img[rows[:, None], cols[None, :]]


def as_stored(crop: np.ndarray) -> tuple[np.ndarray, bytes]:
    """A face crop as the run folder keeps it: the JPEG bytes and the image they decode to. The classifier scores
    the decoded image, so the crop a person audits is exactly the one scored, and face crops labelled later
    (JPEGs, as curate and datasets store them) look like the ones scored live."""
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY])
    data = buf.tobytes()
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), data


def downscale(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-averaged downscale, fast: INTER_AREA straight from 1080p costs ~5 ms; a bilinear step to twice the
    target first, then INTER_AREA, costs ~0.25 ms and looks the same to the detector."""
    h, w = img.shape[:2]
    if w > 2 * width and h > 2 * height:
        img = cv2.resize(img, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def to_grey(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a (N, 4) and b (M, 4) -> (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def rgb_batch(crops: list[np.ndarray], size: int) -> np.ndarray:
    """Face crops (any size, BGR or grey) -> (N, 3, size, size) float32 RGB in [0, 1]: what the ImageNet networks
    take before their normalisation."""
    out = np.empty((len(crops), 3, size, size), np.float32)
    for i, crop in enumerate(crops):
        if crop.ndim == 2:
            crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
        rgb = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)[:, :, ::-1]
        out[i] = rgb.transpose(2, 0, 1) * np.float32(1 / 255)
    return out
