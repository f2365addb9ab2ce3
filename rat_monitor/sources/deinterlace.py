"""Interlaced files decoded by the ffmpeg binary through a deinterlacer (bwdif, one frame per frame, so frame
counts and times match the file), read as raw BGR frames from a pipe. It answers the few calls of
cv2.VideoCapture that CaptureSource makes, so both decoders sit behind one reader."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np

from .. import ffmpeg


class DeinterlacingCapture:
    def __init__(self, path: Path, width: int, height: int):
        self.width, self.height = width, height
        cmd = [ffmpeg.exe(), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0", "-vf",
               "bwdif=mode=send_frame", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "bgr24",
               "-s", f"{width}x{height}", "-"]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      stdin=subprocess.DEVNULL)

    def grab(self) -> bool:
        return self.read()[0]

    def read(self) -> tuple[bool, np.ndarray | None]:
        frame = np.empty((self.height, self.width, 3), np.uint8)
        if self._proc.stdout is None or self._proc.stdout.readinto(memoryview(frame).cast("B")) < frame.nbytes:
            return False, None
        return True, frame

    def get(self, prop: int) -> float:
        # No timestamps through the pipe: NaN lets the media clock count frames at the file's rate.
        return float("nan") if prop == cv2.CAP_PROP_POS_MSEC else 0.0

    def release(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stdout:
            self._proc.stdout.close()
