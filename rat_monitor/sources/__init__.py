"""Where frames come from: files, cameras, stream URLs (one interface, a threaded bounded-queue reader)."""

from .capture import CaptureSource, FrameSource

__all__ = ["CaptureSource", "FrameSource"]
