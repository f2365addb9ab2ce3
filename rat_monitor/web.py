"""The small web server under the browser pages (labelling, live view), on Starlette and uvicorn: local by
default (127.0.0.1), closed without the access token it makes (taken as ?token=... or an 'Authorization:
Bearer ...' header; 401 without it), JSON answers, one-line reasons for refused requests, request bodies
capped at 1 MB, and every request held to a deadline (a client that connects and sends nothing, or trickles a
request a byte at a time, is cut off). Each page supplies a dispatch(reply, method, path, query) that answers
through REPLY or raises RequestError; it runs on a worker thread, so a page's file work never holds the
server's event loop."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from importlib import resources
from urllib.parse import parse_qs

MAX_BODY = 1 << 20  # 1 MB: far more than any request these pages make
# From a request's first byte (or the connection's opening) to its answer: a slow or silent client is cut off
# after this long. uvicorn times out idle keep-alive connections only; the pages' requests take milliseconds.
REQUEST_DEADLINE_S = 30
KEEP_ALIVE_S = 5  # an idle connection between requests is closed after this long
MAX_JSON_DEPTH = 32  # the pages send objects a few levels deep
METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS")


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


class Reply:
    """What a page's dispatch answers through (send, json, html) and reads the request's JSON body from."""

    def __init__(self, raw_body: bytes | None):
        self._raw = raw_body
        self.status, self.content, self.kind = 500, b"", "application/json"

    def send(self, status: int, body: bytes, kind: str) -> None:
        self.status, self.content, self.kind = int(status), body, kind

    def json(self, status: int, value) -> None:
        self.send(status, json.dumps(value).encode(), "application/json")

    def html(self, body: bytes) -> None:
        self.send(200, body, "text/html; charset=utf-8")

    def body(self):
        """The request's JSON body (at most MAX_BODY, read before the dispatch)."""
        if self._raw is None:
            raise RequestError("a body with a Content-Length (ASCII digits) is required", 411)
        if _depth(self._raw) > MAX_JSON_DEPTH:
            raise RequestError(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            return json.loads(self._raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise RequestError("the body is not JSON") from None


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


def _deadline_protocol():
    """uvicorn's HTTP/1.1 protocol (h11) with REQUEST_DEADLINE_S from a request's first byte (or the
    connection's opening) to its answer: a silent or trickling client holds one socket for at most that long."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class DeadlineH11(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._deadline is None:  # a new request on a kept-alive connection
                self._arm()
            super().data_received(data)

        def on_response_complete(self) -> None:
            self._disarm()
            super().on_response_complete()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._deadline = self.loop.call_later(REQUEST_DEADLINE_S, self._cut_off)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _cut_off(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return DeadlineH11


def _quiet_uvicorn() -> None:
    """uvicorn's loggers say nothing: the CLI is the only place that prints (a refused request is answered)."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = [logging.NullHandler()]
        logger.propagate = False


class TokenServer:
    """A Starlette app on uvicorn whose every request must carry the token; serve_forever() in the caller's
    thread (Ctrl-C stops it), or start() for a background one."""

    def __init__(self, dispatch: Callable[[Reply, str, str, dict], None], host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None):
        import uvicorn
        from starlette.applications import Starlette
        from starlette.routing import Route

        self.token = token or secrets.token_urlsafe(18)
        self.dispatch = dispatch
        self.requests = 0
        self.cpu_s = 0.0  # CPU time spent answering, all threads together: what the pages cost the machine
        self._count = threading.Lock()
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=list(METHODS))])
        _quiet_uvicorn()
        config = uvicorn.Config(app, host=host, port=port, http=_deadline_protocol(), lifespan="off",
                                log_config=None, access_log=False, timeout_keep_alive=KEEP_ALIVE_S,
                                timeout_graceful_shutdown=2, server_header=False)
        # Bound and listening now: the port (0 = any free one) is known, and a request made as soon as the
        # address is printed waits in the backlog instead of being refused.
        self._socket = config.bind_socket()
        self._socket.listen(config.backlog)
        self.host, self.port = self._socket.getsockname()[:2]
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/") -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}{path}?token={self.token}"

    def serve_forever(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> TokenServer:
        self._thread = threading.Thread(target=self.serve_forever, name="web-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def close(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._socket.close()

    async def _endpoint(self, request):
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import Response

        reply = Reply(None)
        try:
            path = request.url.path
            if path == "/api.js":  # the pages' shared code: no data in it, so no token needed
                reply.send(200, page("rat_monitor", "api.js"), "text/javascript; charset=utf-8")
            else:
                if ".." in path or "//" in path:
                    raise RequestError("no '..' or '//' in paths")
                query = parse_qs(request.url.query)
                if not self._authorised(request, query):
                    raise RequestError("missing or wrong access token (the address the command printed has it)",
                                       HTTPStatus.UNAUTHORIZED)
                reply = Reply(await _read_body(request))
                await run_in_threadpool(self._dispatch, reply, request.method, path.rstrip("/") or "/", query)
        except RequestError as exc:
            reply.json(int(exc.status), {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - every request gets an answer, never a dropped connection
            reply.json(500, {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
        return Response(reply.content, status_code=reply.status, media_type=reply.kind,
                        headers={"Cache-Control": "no-store"})

    def _dispatch(self, reply: Reply, method: str, path: str, query: dict) -> None:
        started = time.thread_time()
        try:
            self.dispatch(reply, method, path, query)
        finally:
            with self._count:
                self.requests += 1
                self.cpu_s += time.thread_time() - started

    def _authorised(self, request, query: dict) -> bool:
        given = query.get("token", [""])[0]
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            given = header[7:].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())


async def _read_body(request) -> bytes | None:
    """The request's body when it has a Content-Length (None without one); over MAX_BODY is refused unread."""
    length = request.headers.get("content-length")
    if length is None:
        return None
    if not (length.isascii() and length.isdigit()):
        raise RequestError("a body with a Content-Length (ASCII digits) is required", 411)
    if int(length) > MAX_BODY:
        raise RequestError(f"the body is over {MAX_BODY // 1024} kB", 413)
    return await request.body()
