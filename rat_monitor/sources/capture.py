"""Frame sources: video files, cameras and stream URLs behind one interface, decoded ahead in a reader thread.

Files are read completely (the reader waits for the pipeline); live sources never wait: when the pipeline
falls behind, the oldest queued frame is dropped, and every drop is counted on the next delivered frame.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from .. import ffmpeg
from ..errors import SourceError
from ..types import Frame, SourceInfo
from .deinterlace import DeinterlacingCapture

OPEN_TIMEOUT_MS = 8000
QUEUE_SIZE = 64  # decoded frames the reader thread may run ahead
_END = object()


class FrameSource(Protocol):
    info: SourceInfo

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


def _check_video_path(path: Path) -> None:
    if not path.exists():
        raise SourceError(f"no such video file: {path}")
    if path.is_dir():
        raise SourceError(f"{path} is a directory, not a video file")
    if not path.is_file():  # a FIFO or a device would block the reader
        raise SourceError(f"{path} is not a regular file")
    if path.stat().st_size == 0:
        raise SourceError(f"{path} is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise SourceError(f"{path} is not readable")


def _unreachable(url: str) -> str:
    """Why a network stream cannot be reached, in words, or '' when its host answers (or the URL names no host and
    port to try). Asked only after OpenCV failed to open it (OpenCV says no more than that): a probe connection
    first could take the only client a one-client server accepts."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    default = {"http": 80, "https": 443, "rtsp": 554, "rtmp": 1935}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:
        return f"stream {url}: the port is not a number"
    if not parts.hostname or port is None:
        return ""
    try:
        with socket.create_connection((parts.hostname, port), timeout=OPEN_TIMEOUT_MS / 1000):
            return ""
    except ConnectionRefusedError:
        return f"stream {url} refused the connection (nothing listens on {parts.hostname}:{port})"
    except socket.gaierror:
        return f"stream {url}: no such host {parts.hostname!r}"
    except OSError as exc:
        return f"stream {url} did not answer within {OPEN_TIMEOUT_MS / 1000:g} s ({exc.strerror or exc})"


def _creation_time(path: Path) -> float | None:
    """The container's creation time, when the file says (FFmpeg metadata via OpenCV is not exposed,
    so this reads the mp4 'mvhd' box directly); None when absent."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
        i = head.find(b"mvhd")
        if i < 0:
            return None
        version = head[i + 4]
        raw = head[i + 8:i + 16] if version == 1 else head[i + 8:i + 12]
        secs = int.from_bytes(raw, "big")
        if secs <= 0:
            return None
        return secs - 2082844800  # seconds from 1904-01-01 to the Unix epoch
    except OSError:
        return None


class MediaClock:
    """Frame times of a file: its timestamps while they behave, the frame clock across a discontinuity. A
    timestamp that goes back (two recordings joined, timestamps restarting) or jumps further ahead than the file
    has frames left to fill (a corrupt timestamp; without a frame count in the header, more than a second
    beyond the frames read) would make a wrong timeline: time then goes on one frame interval per frame from
    the last good one, and the jump is recorded for run.json. A step forward within the file's frames is frames
    the decoder lost (a damaged stretch of an mkv or MPEG-TS file): they are counted as dropped, so the minute
    says it saw less than it spans."""

    JUMP_S = 1.0  # without a frame count: more than this beyond the frame clock is a discontinuity

    def __init__(self, fps: float, count_lost: bool = True, frame_count: int | None = None):
        self.fps = fps
        self.count_lost = count_lost  # False for variable-rate files, whose gaps are the recording's
        self.frame_count = frame_count  # what the header promises, when it says
        self.offset = 0.0
        self.last: tuple[int, float] | None = None  # (frame index, time) of the previous frame
        self.bridged = False  # whether the previous frame was put on the frame clock
        self.discontinuities: list[dict] = []
        self.lost = 0  # frames missing before delivered ones, over the whole file
        self.accounted = 0  # frames delivered or counted as lost (from the first one stepped)

    def _fits(self, gap_s: float, expected_s: float) -> bool:
        """Whether a step forward of GAP_S seconds can be frames lost rather than a broken timestamp."""
        if self.count_lost and self.frame_count:
            left = self.frame_count - self.accounted - 1  # frames the header still promises
            return round(gap_s * self.fps) - 1 <= left + max(2, 0.01 * self.frame_count)
        return gap_s <= expected_s + self.JUMP_S

    def step(self, index: int, pos_ms: float, last: bool = False) -> tuple[float, int]:
        """The time of frame INDEX, and how many frames are missing before it: by the timestamps where they are
        trusted (a frame the decoder failed on does not map to one timestamp), else by the frames skipped.
        last: the file's final frame. A cut made by stream copy (ffmpeg -c copy) ends on a frame that carries the
        time of the frames its edit list leaves out: a step forward there is no loss (nothing follows it that
        could be missing), so that frame goes on the frame clock instead."""
        raw = pos_ms / 1000.0 if index > 0 and np.isfinite(pos_ms) and pos_ms > 0 else index / self.fps
        t = raw + self.offset
        missing = 0
        if self.last is None:
            self.accounted = index  # a resumed run starts after frames its earlier run accounted for
        else:
            last_index, last_t = self.last
            skipped = index - last_index - 1
            expected = (skipped + 1) / self.fps
            if last:  # nothing follows: its own time is not needed to place any later frame
                t = min(t, last_t + expected)
            bridged = not (t > last_t and self._fits(t - last_t, expected))
            if bridged:
                self.discontinuities.append({"frame": index, "after_s": round(last_t, 3),
                                             "timestamp_s": round(raw, 3), "bridged_to_s": round(last_t + expected, 3)})
                self.offset += last_t + expected - t
                t = last_t + expected
            # Half a frame interval or less is timing jitter, not a loss; right after a bridged frame the step
            # measures the bridge, not the file.
            by_time = self.count_lost and not bridged and not self.bridged
            missing = max(0, round((t - last_t) * self.fps) - 1) if by_time else skipped
            self.bridged = bridged
        self.lost += missing
        self.accounted += missing + 1
        self.last = (index, t)
        return t, missing


class CaptureSource:
    """A file, a camera index or a stream URL read through OpenCV's FFmpeg backend."""

    def __init__(self, *, video: str | Path | None = None, camera: int | None = None, url: str | None = None,
                 realtime: bool = False, start_s: float = 0.0, give_up_s: float = 300.0,
                 start_epoch: float | None = None, speed: float = 1.0):
        chosen = [x is not None for x in (video, camera, url)]
        if sum(chosen) != 1:
            raise SourceError("give exactly one source: --video PATH, --camera N or --url URL")
        self.realtime = realtime
        self.speed = speed  # realtime files: this many seconds of video per second (a demo, a test)
        self.give_up_s = give_up_s  # live: how long to keep retrying a lost camera or stream
        self._open_args = (video, camera, url)
        if video is not None:
            _check_video_path(Path(video))
            name, live = str(video), False
            problem = f"{video} is not a video file OpenCV/FFmpeg can read"
        elif camera is not None:
            name, live = f"camera:{camera}", True
            problem = f"camera {camera} did not open (is it connected and free?)"
        else:
            name, live = url, True
            problem = ""  # found out below, only when it fails: a probe connection could take a one-client server
        cap = self._open_capture()
        if not cap.isOpened():
            raise SourceError(problem or _unreachable(url) or (
                f"stream {url} answered, but with nothing OpenCV/FFmpeg can read as video within "
                f"{OPEN_TIMEOUT_MS / 1000:g} s"))
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and 1 <= fps <= 1000 else 30.0
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not live else 0
        count = count if count > 0 else None
        facts = ffmpeg.stream_facts(Path(video)) if video is not None else ffmpeg.StreamFacts()
        if count and facts.duration_s and count > facts.duration_s * fps * 1.02 + 2:
            # The header counts the frames stored, but an edit list plays fewer: `ffmpeg -ss T -c copy` keeps
            # the frames from the keyframe before T and hides them. What plays is what a reader gets.
            count = max(1, round(facts.duration_s * fps))
        if facts.still_image:
            cap.release()
            raise SourceError(f"{video} is a still picture ({facts.still_image}), not a video; score pictures with "
                              "rat-monitor predict")
        self.deinterlaced = facts.interlaced
        if self.deinterlaced:  # OpenCV would hand back black frames; its header still gave rate and count
            size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            cap.release()
            cap = DeinterlacingCapture(Path(video), *size)
        self._cap = cap
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise SourceError(f"{name} has no readable frames")
        self._first = first
        h, w = first.shape[:2]
        # The clock time of t = 0 (epoch seconds), when known: START_EPOCH when given (a resumed live run's start,
        # a file's recording time from the user); else now for a live source, the container's creation time.
        start = start_epoch or (time.time() if live else _creation_time(Path(video)))
        self.info = SourceInfo(name=name, fps=fps, width=w, height=h, live=live,
                               duration_s=(count / fps if count else None), frame_count=count, start_time=start)
        self.start_frame = max(0, int(start_s * fps))  # files: frames before this are skipped undecoded (resume)
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self._stop = threading.Event()
        self.frames_read = 0  # the position reached in the source, frames skipped included
        self.decode_errors = 0  # files: unreadable frames skipped mid-stream
        self.outages: list[tuple[float, float]] = []  # live: (lost at, back at) in seconds since start
        self.given_up_at_s: float | None = None  # live: when retrying stopped (seconds since start)
        # files: timestamps made monotonic and sane
        self.state = "live"  # live | reconnecting | lost (given up) | ended: what a live view shows
        self.clock = MediaClock(self.info.fps or 30.0, count_lost=not facts.variable_rate, frame_count=count)
        self.error: str | None = None
        self._reader_done = threading.Event()  # waited on, not Thread.join (see runs._wait_for)
        self._thread = threading.Thread(target=self._read_all, name=f"reader:{name}", daemon=True)
        self._started = False

    # -- reader thread ---------------------------------------------------------------------------------
    def _put(self, item) -> None:
        """Files wait for room (no frame is lost). Live sources drop the oldest queued frame instead (a live view
        wants the freshest), and so does a stopped source: its consumer must still get the end marker."""
        while not self.info.live and not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass

    def _open_capture(self) -> cv2.VideoCapture:
        """Opens (or re-opens) the source; streams get open and read time-outs so a dead URL cannot hang."""
        video, camera, url = self._open_args
        if video is not None:
            return cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
        if camera is not None:
            return cv2.VideoCapture(int(camera))
        return cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
                                                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, OPEN_TIMEOUT_MS])

    def _reopen(self) -> bool:
        """Live source lost: retry with back-off (0.5 s doubling to 8 s) until it answers or give_up_s passes."""
        lost_at = time.time()
        delay = 0.5
        self.state = "reconnecting"
        self._cap.release()
        while not self._stop.is_set() and time.time() - lost_at < self.give_up_s:
            self._stop.wait(delay)
            delay = min(8.0, delay * 2)
            cap = self._open_capture()
            if cap.isOpened():
                self._cap = cap
                self.state = "live"
                start = self.info.start_time
                self.outages.append((lost_at - start, time.time() - start))
                return True
            cap.release()
        self.outages.append((lost_at - self.info.start_time, time.time() - self.info.start_time))
        if not self._stop.is_set():
            self.given_up_at_s = time.time() - self.info.start_time
            self.state = "lost"
        return False

    def _next_file_frame(self, index: int) -> tuple[bool, np.ndarray | None, int]:
        """The next decodable frame of a file, skipping (and counting) corrupt ones mid-stream."""
        count = self.info.frame_count
        ok, image = self._cap.read()
        skipped = 0
        # Not yet the end the header promises: a corrupt frame. Skip it and try the next, up to a limit past
        # which this is the end of a cut-short file rather than a damaged patch.
        while not ok and count is not None and index + 1 + skipped < count and skipped < 30:
            skipped += 1
            ok, image = self._cap.read()
        if ok:
            self.decode_errors += skipped
            index += skipped
        return ok, image, index + 1

    def _read_all(self) -> None:
        try:
            self._read()
        finally:
            self._reader_done.set()

    def _read(self) -> None:
        info = self.info
        index, image = 0, self._first
        if self.start_frame > 0:  # resume: skip decoded work already done, without converting pixels
            while index < self.start_frame - 1 and self._cap.grab():
                index += 1
            ok, image = self._cap.read()
            index += 1
            if not ok:
                self._put(_END)
                return
        t0 = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.time()
                lost = 0
                if info.live:
                    t_s = now - info.start_time
                else:
                    # The next frame is read first: whether this one is the file's last changes how its step is read.
                    pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
                    ok, following, next_index = self._next_file_frame(index)
                    t_s, lost = self.clock.step(index, pos_ms, last=not ok)
                    if self.realtime:  # pace a file like a live camera
                        delay = t0 + t_s / self.speed - time.monotonic()
                        if delay > 0:
                            self._stop.wait(delay)  # paced, and a stop ends the wait at once
                self._put(Frame(index=index, t_s=t_s, image=image, wall_time=now if info.live else None,
                                dropped_before=lost))
                self.frames_read = index + 1
                if info.live:
                    ok, image = self._cap.read()
                    if not ok and not self._stop.is_set() and self._reopen():
                        ok, image = self._cap.read()
                    index += 1
                else:
                    image, index = following, next_index
                if not ok:
                    break
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self.error = f"{info.name}: {exc}"
        finally:
            if self.state != "lost":
                self.state = "ended"
            self._put(_END)

    # -- consumer side ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        if not self._started:
            self._started = True
            self._thread.start()
        last = -1
        while True:
            item = self._queue.get()
            if item is _END:
                break
            gap = item.index - last - 1  # live: frames the reader dropped (a file's are counted by its clock)
            last = item.index
            if gap > 0 and self.info.live:
                item = Frame(item.index, item.t_s, item.image, item.wall_time,
                             dropped_before=gap)
            yield item
        if self.error:
            raise SourceError(self.error)

    @property
    def truncated(self) -> bool:
        """A file that ended well before the frame count its header promised (cut short or corrupt)."""
        count = self.info.frame_count
        return (not self.info.live and not self._stop.is_set() and count is not None
                and self.clock.accounted < 0.98 * count - 1)

    def stop(self) -> None:
        """Ends reading soon (a stream waiting to reconnect at once); the consumer gets the end of the source."""
        self._stop.set()

    def close(self) -> None:
        self.stop()
        # Unblock a reader waiting on a full queue, then let it finish.
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        # A stream's open or read gives up within the timeout; never release a capture a reader is still inside
        # (a crash at exit).
        if not self._started or self._reader_done.wait(OPEN_TIMEOUT_MS / 1000 + 2):
            self._cap.release()

    def __enter__(self) -> CaptureSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
