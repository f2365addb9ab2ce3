"""Fine-tuning while a person labels: after every few frames decided on the boxes page (or when asked), one
detector round of the loop (label.loop.train_round) runs in a background thread, one at a time, and the undecided
frames' proposals come from the better detector when it ends. The page polls its state; the labelling server
stays responsive (the work runs outside the request threads, and every save is on disk before it is answered)."""

from __future__ import annotations

import threading
import time

from ..errors import RatMonitorError, first_line
from .figures import verdict
from .project import Project

AUTO_EVERY = 3  # decided frames since the last round that start the next one


class BackgroundTrainer:
    def __init__(self, project: Project, epochs: int = 30, auto_every: int = AUTO_EVERY):
        self.project = project
        self.epochs = epochs
        self.auto_every = auto_every  # 0: only when asked
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state: dict = {"running": False, "epoch": 0, "epochs": epochs, "loss": None, "last": None,
                             "error": None, "started": None}
        self._decided_at_start = self._decided()
        self.unavailable = self._unavailable()

    @staticmethod
    def _unavailable() -> str:
        """Why this install cannot fine-tune ('' when it can)."""
        from ..detect.train import require_training_packages

        try:
            require_training_packages(fine_tune=True)
        except RatMonitorError as exc:
            return str(exc)
        return ""

    def _decided(self) -> int:
        return self.project.progress()["done"]

    def status(self) -> dict:
        with self._lock:
            state = dict(self._state)
        decided = self._decided()
        state.update(unavailable=self.unavailable, auto_every=self.auto_every,
                     decided_since=max(0, decided - self._decided_at_start))
        return state

    def saved(self) -> None:
        """A frame was saved: start a round when enough frames were decided since the last one."""
        if self.auto_every and not self.unavailable and self._decided() - self._decided_at_start >= self.auto_every:
            self.start()

    def start(self) -> bool:
        """Starts a round unless one is running or training is unavailable; True when started."""
        with self._lock:
            if self.unavailable or (self._thread is not None and self._thread.is_alive()):
                return False
            self._decided_at_start = self._decided()
            self._state.update(running=True, epoch=0, loss=None, error=None, started=time.time())
            self._thread = threading.Thread(target=self._run, name="label-fine-tune", daemon=True)
            self._thread.start()
            return True

    def _progress(self, epoch: int, epochs: int, loss: float) -> None:
        with self._lock:
            self._state.update(epoch=epoch, epochs=epochs, loss=round(loss, 4))

    def _run(self) -> None:
        from .loop import train_round

        last, error = None, None
        try:
            done = train_round(self.project, self.epochs, classifier=False, progress=self._progress)
            if "unchanged" in done:
                last = {"message": done["unchanged"]}
            else:
                checked = done["checked"]
                last = {"detector": done["trained"].name, "from": done["from"].name,
                        "recommended": done["recommended"].name, "kept_better": done["kept_better"],
                        "seconds": done["seconds"], "refilled": done["refilled"],
                        "input_size": done["input_size"], "frames": done["frames"]["frames"],
                        "verdict": verdict(checked["after"] if checked else None)}
        except RatMonitorError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a failed round is said on the page, the server goes on
            error = f"{type(exc).__name__}: {first_line(exc)}"
        with self._lock:
            self._state.update(running=False, last=last, error=error, finished=time.time())

    def wait(self, timeout: float | None = None) -> None:
        """Until the running round ends (tests, and the server's close)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
