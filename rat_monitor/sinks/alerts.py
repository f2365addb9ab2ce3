"""--on-alert: hands each raised alert, as JSON on stdin, to a command the user chose (mail, pager, LED...), beside
the analysis: a slow or hanging command never holds a camera's frames (it ran on the pipeline's thread and held a
live camera up to 30 s per alert, every cage at once)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable

ALERT_COMMAND_TIMEOUT_S = 30  # one run of the command; it is killed after this
MAX_WAITING = 50  # alerts queued for a command that is slower than they come; more are not handed to it (said)


class AlertCommand:
    """The user's --on-alert command, run on a thread of its own for each alert handed to it, one at a time and in
    order, each bounded by its timeout. SAY gets one line per problem (a failure, a timeout, an alert not handed
    over). close() waits a bounded time for what is queued, then kills what still runs and says what was left."""

    def __init__(self, command: str, say: Callable[[str], None], timeout_s: float = ALERT_COMMAND_TIMEOUT_S):
        self.command, self.say, self.timeout_s = command, say, timeout_s
        self.waiting: queue.Queue = queue.Queue()
        self.running: subprocess.Popen | None = None
        self.thread = threading.Thread(target=self._work, name="on-alert", daemon=True)
        self.thread.start()

    def submit(self, record: dict) -> None:
        """Hands one alert over; returns at once."""
        if self.waiting.qsize() >= MAX_WAITING:
            self.say(f"--on-alert: {MAX_WAITING} alerts already wait for the command; the alert of minute "
                     f"{record.get('minute')} is not handed to it (it is in alerts.jsonl)")
            return
        self.waiting.put(record)

    def _work(self) -> None:
        while (record := self.waiting.get()) is not None:
            problem = self._run(record)
            self.running = None
            if problem:
                self.say(problem)

    def _run(self, record: dict) -> str | None:
        """The command through the shell with the alert on stdin, killed after its timeout (self.running while it
        runs, so that close() can kill it); a problem description, or None."""
        try:
            self.running = proc = subprocess.Popen(self.command, shell=True, stdin=subprocess.PIPE,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                                   start_new_session=True)
        except OSError as exc:
            return f"--on-alert command could not start: {exc.strerror or exc}"
        try:
            _, stderr = proc.communicate(json.dumps(record), timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.communicate()
            return f"--on-alert command did not finish within {self.timeout_s:g} s (killed) for the alert of " \
                   f"minute {record.get('minute')}"
        if proc.returncode != 0:
            return f"--on-alert command exited with {proc.returncode}: {stderr.strip()[:200]}"
        return None

    def close(self, wait_s: float | None = None) -> None:
        """Lets the queued alerts run for up to WAIT_S (one command's timeout by default), then stops."""
        self.waiting.put(None)
        self.thread.join(self.timeout_s if wait_s is None else wait_s)
        if not self.thread.is_alive():
            return
        left = self.waiting.qsize() - 1 + (self.running is not None)  # the None marker is not an alert
        if self.running is not None:
            _kill(self.running)
        self.say(f"--on-alert: {left} alert(s) not handed to the command before the end (they are in alerts.jsonl)")


def _kill(proc: subprocess.Popen) -> None:
    """The command and whatever its shell started (its own session, so its process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
