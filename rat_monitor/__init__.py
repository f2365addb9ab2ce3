"""rat-monitor: pain from rat facial expressions (Rat Grimace Scale), minute by minute."""

import os

# FFmpeg and OpenCV print their own warnings on stderr for every odd file; rat-monitor reports problems itself,
# in one line. Set before OpenCV loads; a user's own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

__version__ = "0.1.0"
