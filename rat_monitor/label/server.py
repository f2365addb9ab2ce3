"""The labelling server: the boxes page, the scoring page and the JSON API they use (scripts and tests use the
same API). Local by default (127.0.0.1) and closed without the access token the command prints, given as
?token=... or an 'Authorization: Bearer ...' header. Every accepted change is on disk before it is answered.

    GET  /api/frames                 [{id, image, boxes, status}]   boxes [x0, y0, x1, y1] in frame pixels
    GET  /api/frames/{id}            one of them, with width and height
    PUT  /api/frames/{id}            {boxes, status}  status: unlabelled | labelled | no_face
    GET  /api/progress               counts of frames by status, crops, scores per rater
    GET  /api/crops?rater=NAME       the crops in this rater's blind order, with their scores so far
    PUT  /api/scores/{crop}?rater=N  {orbital, nose, ears, whiskers (0-2), level} or {not_scorable: true}
    GET  /api/agreement              weighted kappa per action unit and level, ICC(2,1) of the RGS score
    GET  /frames/{id}.jpg, /crops/{crop}.jpg, /, /score
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from .project import LabelError, Project

MAX_BODY = 1 << 20  # 1 MB: far more than any box list or score


def _page(name: str) -> bytes:
    return resources.files("rat_monitor.label").joinpath("static", name).read_bytes()


class LabelServer:
    """The server for one project; serve_forever() in the caller's thread, or start() for a background one."""

    def __init__(self, project: Project, host: str = "127.0.0.1", port: int = 0, token: str | None = None):
        self.project = project
        self.token = token or secrets.token_urlsafe(18)
        handler = type("Handler", (_Handler,), {"server_state": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def start(self) -> LabelServer:
        self._thread = threading.Thread(target=self.serve_forever, name="label-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    server_state: LabelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # the CLI is the only place that prints
        pass

    # -- plumbing ------------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _error(self, status: int, reason: str) -> None:
        self._json(status, {"error": reason})

    def _authorised(self, query: dict) -> bool:
        given = query.get("token", [""])[0]
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = header[7:].strip()
        return hmac.compare_digest(given.encode(), self.server_state.token.encode())

    def _body(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise LabelError("a body with a Content-Length is required", 411)
        if int(length) > MAX_BODY:
            raise LabelError(f"the body is over {MAX_BODY // 1024} kB", 413)
        raw = self.rfile.read(int(length))
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise LabelError("the body is not JSON") from None

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        path = parts.path
        if ".." in path or "//" in path:
            self._error(HTTPStatus.BAD_REQUEST, "no '..' or '//' in paths")
            return
        if not self._authorised(query):
            self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong access token (the URL the label command printed "
                                                 "has it)")
            return
        try:
            self._dispatch(method, path.rstrip("/") or "/", query)
        except LabelError as exc:
            if int(exc.status) == 413:  # the unread body would be taken for the next request
                self.close_connection = True
            self._error(exc.status, str(exc))

    def _dispatch(self, method: str, path: str, query: dict) -> None:
        project = self.server_state.project
        segments = path.strip("/").split("/")
        rater = query.get("rater", [""])[0]
        if method == "GET":
            if path == "/":
                self._send(200, _page("boxes.html"), "text/html; charset=utf-8")
            elif path == "/score":
                self._send(200, _page("score.html"), "text/html; charset=utf-8")
            elif path == "/api/frames":
                self._json(200, [_public(f) for f in project.frames()])
            elif len(segments) == 3 and segments[:2] == ["api", "frames"]:
                self._json(200, _public(project.frame(segments[2]), full=True))
            elif path == "/api/progress":
                self._json(200, project.progress())
            elif path == "/api/crops":
                self._json(200, project.blind_queue(rater))
            elif path == "/api/agreement":
                self._json(200, project.agreement())
            elif len(segments) == 2 and segments[0] in ("frames", "crops") and segments[1].endswith(".jpg"):
                item = segments[1][:-4]
                image = project.frame_image(item) if segments[0] == "frames" else project.crop_image(item)
                self._send(200, image.read_bytes(), "image/jpeg")
            else:
                raise LabelError(f"nothing at {path}", 404)
        elif method == "PUT":
            if len(segments) == 3 and segments[:2] == ["api", "frames"]:
                self._json(200, _public(project.save_frame(segments[2], self._body()), full=True))
            elif len(segments) == 3 and segments[:2] == ["api", "scores"]:
                self._json(200, project.save_score(rater, segments[2], self._body()))
            else:
                raise LabelError(f"nothing to change at {path}", 404)
        else:
            raise LabelError(f"{method} is not offered", 405)

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._route("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._route("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


def _public(frame: dict, full: bool = False) -> dict:
    """What the API shows of a frame: the boxes page needs no video path or animal (labels stay unbiased)."""
    out = {"id": frame["id"], "image": f"/frames/{frame['id']}.jpg", "boxes": frame["boxes"],
           "status": frame["status"], "boxes_from": frame.get("boxes_from")}
    if full:
        out.update(width=frame["width"], height=frame["height"])
    return out
