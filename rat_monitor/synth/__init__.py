"""Synthetic rat faces and videos with ground truth: the project's own test and training material."""

from .dataset import contact_sheet, write_dataset
from .face import COATS, Look, Pose, look_for
from .scene import Effects, Scene
from .script import MAX_RATS, PRESETS, FrameTruth, Script, VideoSpec, parse_schedule
from .video import render_cage, render_frames, write_video

__all__ = [
    "COATS", "MAX_RATS", "PRESETS", "Effects", "FrameTruth", "Look", "Pose", "Scene", "Script", "VideoSpec", "contact_sheet",
    "look_for", "parse_schedule", "render_cage", "render_frames", "write_dataset", "write_video",
]
