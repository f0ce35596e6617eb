"""Local stand-ins for the providers, speaking their real wire formats on 127.0.0.1: a WebSocket server
(websockets, asyncio, on a background thread) driven by a per-connection script, and a threaded HTTP server
driven by a request handler function. Both record what the client sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve


@dataclass
class WsConnection:
    index: int
    path: str
    headers: dict[str, str]
    received: list[str] = field(default_factory=list)
    ws: ServerConnection | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)

    async def recv_json(self, timeout: float = 5) -> dict:
        assert self.ws is not None
        text = await asyncio.wait_for(self.ws.recv(), timeout)
        self.received.append(text)
        return json.loads(text)


Script = Callable[[WsConnection], Awaitable[None]]


async def hold(conn: WsConnection, timeout: float = 30) -> None:
    """Keep a connection open until the client closes it (or the server stops)."""
    assert conn.ws is not None
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(conn.ws.wait_closed(), timeout)


class FakeWebSocketServer:
    """Each accepted connection runs `script(connection)`; when the script returns, the server closes."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections: list[WsConnection] = []
        self.errors: list[BaseException] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeWebSocketServer:
        self._thread.start()
        assert self._ready.wait(10), "fake WebSocket server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _handle(self, ws: ServerConnection) -> None:
        conn = WsConnection(
            index=len(self.connections),
            path=ws.request.path,
            headers={k.lower(): v for k, v in ws.request.headers.raw_items()},
            ws=ws,
        )
        self.connections.append(conn)
        try:
            await self.script(conn)
        except Exception as err:  # surfaced to the test through .errors
            self.errors.append(err)

    async def _serve(self) -> None:
        self._stop = self._loop.create_future()
        async with serve(self._handle, "127.0.0.1", 0, ping_interval=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def wait_connections(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.connections) < count:
            assert time.monotonic() < deadline, f"{len(self.connections)} of {count} connections within {timeout}s"
            time.sleep(0.05)


@dataclass
class HttpRequest:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float


Responder = Callable[[HttpRequest, list[HttpRequest]], tuple[int, dict[str, str], str]]


class FakeHttpServer:
    """Answers every GET with `responder(request, earlier)` -> (status, headers, body); `earlier` holds the previous
    requests to the same path for the same `symbol` parameter."""

    def __init__(self, responder: Responder) -> None:
        self.requests: list[HttpRequest] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                split = urlsplit(self.path)
                request = HttpRequest(
                    path=split.path,
                    query={k: v[0] for k, v in parse_qs(split.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    at=time.monotonic(),
                )
                with outer._lock:
                    symbol = request.query.get("symbol")
                    earlier = [r for r in outer.requests if r.path == request.path and r.query.get("symbol") == symbol]
                    outer.requests.append(request)
                status, headers, body = responder(request, earlier)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def matching(self, path: str, **query: str) -> list[HttpRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path and all(r.query.get(k) == v for k, v in query.items())]
