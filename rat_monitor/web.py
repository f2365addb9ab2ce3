"""The small HTTP server under the browser pages (labelling, live view): local by default (127.0.0.1), closed
without the access token it makes (taken as ?token=... or an 'Authorization: Bearer ...' header; 401
without it), JSON answers, one-line reasons for refused requests, request bodies capped at 1 MB. Each page
supplies a dispatch(handler, method, path, query) that answers or raises RequestError."""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 1 << 20  # 1 MB: far more than any request these pages make
IDLE_TIMEOUT_S = 30  # a connection that sends nothing for this long is closed (half-open ones held a thread each)
MAX_JSON_DEPTH = 32  # the pages send objects a few levels deep
DRAIN_LIMIT = 16 << 20  # a bigger body than this is not read at all: the connection is closed on it


class RequestError(ValueError):
    """A request refused, with its reason in one line and its HTTP status."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.status = status


def page(package: str, name: str) -> bytes:
    """A page shipped in PACKAGE/static/."""
    return resources.files(package).joinpath("static", name).read_bytes()


def parse_address(text: str) -> tuple[str, int]:
    """'8080' or 'HOST:8080' -> (host, port); the host defaults to 127.0.0.1 (this machine only)."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not a port or HOST:PORT")
    return host or "127.0.0.1", int(port)


class TokenServer:
    """A threaded HTTP server whose every request must carry the token; serve_forever() in the caller's
    thread, or start() for a background one."""

    def __init__(self, dispatch: Callable[[Handler, str, str, dict], None], host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None):
        self.token = token or secrets.token_urlsafe(18)
        handler = type("BoundHandler", (Handler,), {"dispatch": staticmethod(dispatch), "token": self.token})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.requests = 0
        self.cpu_s = 0.0  # CPU time spent answering, all threads together: what the pages cost the machine
        self._count = threading.Lock()
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/") -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}{path}?token={self.token}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> TokenServer:
        self._thread = threading.Thread(target=self.serve_forever, name="web-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _depth(raw: bytes) -> int:
    """How deeply a JSON text nests (brackets outside strings), counted without parsing it: json.loads of
    100,000 nested brackets overflows the stack."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


class Handler(BaseHTTPRequestHandler):
    dispatch: Callable[[Handler, str, str, dict], None]
    token: str
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S  # socketserver applies it to each connection

    def log_message(self, *args) -> None:  # the CLI is the only place that prints
        pass

    def send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def json(self, status: int, value) -> None:
        self.send(status, json.dumps(value).encode(), "application/json")

    def html(self, body: bytes) -> None:
        self.send(200, body, "text/html; charset=utf-8")

    def body(self):
        """The request's JSON body (at most MAX_BODY)."""
        length = self.headers.get("Content-Length")
        if length is None or not (length.isascii() and length.isdigit()):
            raise RequestError("a body with a Content-Length (ASCII digits) is required", 411)
        if int(length) > MAX_BODY:
            # Read it away first (up to a limit): a client still sending would see a broken pipe, not the reason.
            left = int(length) if int(length) <= DRAIN_LIMIT else 0
            while left > 0:
                left -= len(self.rfile.read(min(left, 1 << 16))) or left
            raise RequestError(f"the body is over {MAX_BODY // 1024} kB", 413)
        raw = self.rfile.read(int(length))
        if _depth(raw) > MAX_JSON_DEPTH:
            raise RequestError(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise RequestError("the body is not JSON") from None

    def _authorised(self, query: dict) -> bool:
        given = query.get("token", [""])[0]
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = header[7:].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _route(self, method: str) -> None:
        started = time.thread_time()
        try:
            self._answer(method)
        finally:
            owner = self.server.owner
            with owner._count:
                owner.requests += 1
                owner.cpu_s += time.thread_time() - started

    def _answer(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        try:
            if parts.path == "/api.js":  # the pages' shared code: no data in it, so no token needed
                self.send(200, page("rat_monitor", "api.js"), "text/javascript; charset=utf-8")
                return
            if ".." in parts.path or "//" in parts.path:
                raise RequestError("no '..' or '//' in paths")
            if not self._authorised(query):
                raise RequestError("missing or wrong access token (the address the command printed has it)",
                                   HTTPStatus.UNAUTHORIZED)
            self.dispatch(self, method, parts.path.rstrip("/") or "/", query)
        except RequestError as exc:
            if method not in ("GET", "HEAD"):  # an unread body would be taken for the next request
                self.close_connection = True
            self.json(int(exc.status), {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):  # the browser went away mid-answer
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - every request gets an answer, never a dropped connection
            self.close_connection = True
            self.json(500, {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._route("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._route("HEAD")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._route("OPTIONS")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line or header, an unknown method) as JSON, like
        every other answer, instead of its HTML page."""
        self.close_connection = True
        try:
            self.json(int(code), {"error": message or HTTPStatus(code).phrase})
        except (OSError, ValueError):
            pass
