"""Writing videos: H.264 through the ffmpeg binary that imageio-ffmpeg ships, OpenCV's MPEG-4 encoder where
that binary is missing. Used by the synthetic videos and by analyze --annotate."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np

from . import ffmpeg
from .errors import ConfigError


class VideoWriter:
    """H.264 through the ffmpeg binary that imageio-ffmpeg ships; OpenCV's MPEG-4 encoder where that fails."""

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int = 23, preset: str = "veryfast"):
        self.path = path
        self._proc = None
        self._cv = None
        exe = ffmpeg.exe()
        try:
            if exe is None:
                raise OSError("no ffmpeg binary")
            cmd = [exe, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
                   "-r", f"{fps:g}", "-i", "-", "-an", "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
                   "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)]
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError:
            self._cv = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not self._cv.isOpened():
                raise ConfigError(f"cannot write video {path}") from None

    def write(self, frame: np.ndarray) -> None:
        if self._proc is not None:
            self._proc.stdin.write(frame.tobytes())
        else:
            self._cv.write(frame)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.stdin.close()
            err = self._proc.stderr.read().decode(errors="replace").strip()
            if self._proc.wait() != 0:
                raise ConfigError(f"video encoder failed for {self.path}: {err.splitlines()[-1] if err else '?'}")
        else:
            self._cv.release()
