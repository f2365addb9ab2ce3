"""Small helpers shared by the tests."""

from __future__ import annotations

import csv
import socket
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_stream(video: Path, port: int, loop: bool = False) -> subprocess.Popen:
    """A local live stream: ffmpeg sends the video at its real-time pace over HTTP on 127.0.0.1."""
    return subprocess.Popen([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "quiet", "-re", "-stream_loop",
                             "-1" if loop else "0", "-i", str(video), "-c", "copy", "-f", "mpegts", "-listen", "1",
                             f"http://127.0.0.1:{port}/live.ts"])


class PicklePayload:
    """Unpickling this creates a file: the proof that a loader ran code it should have refused."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# Python code that makes torch, torchvision and dask unimportable in the process it starts: the runtime install.
BLOCK_TORCH = ("import sys\nclass NoTorch:\n  def find_spec(self, name, path=None, target=None):\n"
               "    if name.split('.')[0] in ('torch', 'torchvision', 'dask'): raise ModuleNotFoundError(name)\n"
               "sys.meta_path.insert(0, NoTorch())\n")
# A torch that is installed but broken: its import raises as a missing shared library does
BROKEN_TORCH = ("import sys\nclass BrokenTorch:\n  def find_spec(self, name, path=None, target=None):\n"
                "    if name.split('.')[0] == 'torch': raise OSError('libtorch_cpu.so: cannot open shared object file')\n"
                "sys.meta_path.insert(0, BrokenTorch())\n")


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """CODE in a fresh Python process of this environment (what a new rat-monitor process imports and holds)."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
