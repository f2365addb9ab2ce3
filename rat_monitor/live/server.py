"""The live page and its JSON API, served while `watch --serve` runs (127.0.0.1 unless told otherwise; the
access token in the printed address, as on the label server).

    GET /                                 the page (no CDN: works offline)
    GET /api/sources                      [{name, state, fps, frames, dropped, minute, alert, last_minute, crops, models}]
    GET /api/sources/{name}/timeline      the rows of its timeline.csv so far
    GET /api/sources/{name}/snapshot.jpg  the latest frame with its face boxes (204 until one is drawn)
"""

from __future__ import annotations

from ..web import Reply, RequestError, TokenServer, page
from .board import LiveBoard


class LiveServer(TokenServer):
    def __init__(self, board: LiveBoard, host: str = "127.0.0.1", port: int = 0, token: str | None = None):
        self.board = board
        super().__init__(self._dispatch, host, port, token)

    def _dispatch(self, h: Reply, method: str, path: str, query: dict) -> None:
        if method not in ("GET", "HEAD"):
            raise RequestError(f"{method} is not offered: the live view only reads", 405)
        segments = path.strip("/").split("/")
        if path == "/":
            h.html(page("rat_monitor.live", "live.html"))
        elif path == "/api/sources":
            h.json(200, [b.summary() for b in self.board.sources.values()])
        elif len(segments) == 4 and segments[:2] == ["api", "sources"]:
            board = self.board.sources.get(segments[2])
            if board is None:
                raise RequestError(f"no source named {segments[2]!r}", 404)
            if segments[3] == "timeline":
                h.json(200, board.timeline())
            elif segments[3] == "snapshot.jpg":
                picture = board.picture()
                if picture is None:  # drawn from now on, within a second: no content yet, not an error
                    h.send(204, b"", "image/jpeg")
                else:
                    h.send(200, picture, "image/jpeg")
            else:
                raise RequestError(f"nothing at {path}", 404)
        else:
            raise RequestError(f"nothing at {path}", 404)
