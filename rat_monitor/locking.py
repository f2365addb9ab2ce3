"""One writer per folder: an exclusive advisory lock on a file inside it, held until released or the process
ends (the system drops it even after kill -9). A second process, or a second opening in this one, is refused."""

from __future__ import annotations

import fcntl
from pathlib import Path

from .errors import ConfigError


def exclusive(lock_file: Path, busy: str):
    """The open lock file, locked; ConfigError(BUSY) when another writer holds it. Close it to release."""
    handle = open(lock_file, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(busy) from None
    return handle
