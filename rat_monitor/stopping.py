"""Ctrl-C and SIGTERM as a request that a run in this thread honours between two frames.

Python's own handling raises KeyboardInterrupt wherever the main thread happens to be: inside a queue's lock,
half-way through a CSV line, or inside a __del__ (where Python swallows it). A run stopped that way can hang at
exit or go on to the end (seen once in CI). While `signals_set()` is active, the first signal only sets
`stop`, which the pipeline checks at each frame; a second one raises KeyboardInterrupt, for a user who insists.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def signals_set() -> Iterator[threading.Event]:
    """A stop Event that SIGINT and SIGTERM set while the block runs (on the main thread only: elsewhere Python
    delivers no signals). A SIGINT that was ignored when the process started (a job started in the background)
    stays ignored."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request_stop(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signals = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else [])
    previous = {sig: signal.signal(sig, request_stop) for sig in signals}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
