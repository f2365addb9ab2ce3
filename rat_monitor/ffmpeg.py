"""The ffmpeg binary that imageio-ffmpeg ships: found once, asked what a file's video stream is, and used to
decode what OpenCV cannot convert (interlaced frames) and to encode H.264 (encode.py)."""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The field orders ffmpeg prints for interlaced streams ("top first", "bottom coded first (swapped)", ...).
_INTERLACED = re.compile(r"\b(top|bottom)( coded)? first\b")
_RATE = re.compile(r"([\d.]+) fps\b")
_BASE_RATE = re.compile(r"([\d.]+k?) tbr\b")
_INPUT = re.compile(r"Input #0, ([\w,]+?), from ")
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


@functools.cache
def exe() -> str | None:
    """The path of the ffmpeg binary, or None where imageio-ffmpeg or its binary is missing."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError, OSError):
        return None


@dataclass(frozen=True)
class StreamFacts:
    """What ffmpeg says of a file's first video stream that OpenCV does not."""

    interlaced: bool = False  # stored as fields (broadcast cameras, DVD, many DVRs)
    variable_rate: bool = False  # average frame rate differs from the base rate (phones, screen recorders)
    still_image: str = ""  # the format of a still picture (a JPEG named .mp4 reads as a one-frame "video")
    duration_s: float | None = None  # what plays: an edit list (a stream-copied cut) hides pre-roll frames


def stream_facts(path: Path) -> StreamFacts:
    """Reads the stream line ffmpeg prints for the file. OpenCV's scaler refuses interlaced frames and hands back
    black ones, so those files are decoded through ffmpeg with a deinterlacer; in a variable-rate file a long
    gap between timestamps is the recording, not lost frames. Nothing known when ffmpeg is unavailable."""
    binary = exe()
    if binary is None:
        return StreamFacts()
    try:
        probe = subprocess.run([binary, "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True,
                               timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return StreamFacts()
    still, duration = "", None
    for line in probe.stderr.decode(errors="replace").splitlines():
        length = _DURATION.search(line)
        if length and duration is None:
            duration = int(length[1]) * 3600 + int(length[2]) * 60 + float(length[3])
        container = _INPUT.match(line)
        if container and (container[1] == "image2" or container[1].endswith("_pipe")):
            still = container[1]  # ffmpeg's image demuxers: image2, jpeg_pipe, png_pipe, ...
        if "Video:" in line:
            average, base = _RATE.search(line), _BASE_RATE.search(line)
            variable = bool(average and base and abs(float(average[1]) / _number(base[1]) - 1) > 0.01)
            return StreamFacts(interlaced=bool(_INTERLACED.search(line)), variable_rate=variable, still_image=still,
                               duration_s=duration)
    return StreamFacts()


def _number(text: str) -> float:
    """'30', '29.97' or '90k' as a number."""
    return float(text[:-1]) * 1000 if text.endswith("k") else float(text)
