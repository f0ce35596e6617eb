"""A stand-in for a Slack incoming webhook on 127.0.0.1: answers like Slack (`200 ok`, `400 invalid_payload`,
`429` + `Retry-After`, 5xx, or no answer at all) and records every POST it receives, before answering."""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LEAD_ID = re.compile(r"anomaly #(\d+)")
FOLDED = re.compile(r"\(\+(\d+) more for ")


@dataclass
class Answer:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before answering; the wait ends early when the server is released or stopped.
    delay: float = 0.0


OK = Answer()


@dataclass
class Post:
    received: float  # time.monotonic() when the request body was read
    path: str
    payload: dict
    answered: int | None = None

    @property
    def lead_id(self) -> int:
        return int(LEAD_ID.search(self.payload["text"]).group(1))

    @property
    def folded(self) -> int:
        match = FOLDED.search(self.payload["text"])
        return int(match.group(1)) if match else 0


class FakeSlack:
    """`script(n, post)` decides the answer to the n-th POST (0-based); default: always `200 ok`."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(12)
        self.path = f"/services/T0SPARKTR/B0ALERTS/{self.token}"
        self.posts: list[Post] = []
        self.script: Callable[[int, Post], Answer] = lambda n, post: OK
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def release_hung(self) -> None:
        """Answer every request that is waiting out its delay now; later delays wait again."""
        with self._lock:
            self._release.set()
            self._release = threading.Event()

    def answer_with(self, script: Callable[[int, Post], Answer]) -> None:
        with self._lock:
            self.script = script

    def snapshot(self) -> list[Post]:
        with self._lock:
            return list(self.posts)

    def lead_ids(self) -> list[int]:
        return [p.lead_id for p in self.snapshot()]

    def wait_for_posts(self, count: int, timeout: float = 20) -> list[Post]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            posts = self.snapshot()
            if len(posts) >= count:
                return posts
            time.sleep(0.02)
        raise AssertionError(f"expected >= {count} POSTs within {timeout}s, got {len(self.snapshot())}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the body waits for the client's delayed
            # ACK (~40 ms), which would be measured as alerter latency.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != fake.path:
                    self._send(Answer(404, "no_service"))
                    return
                post = Post(time.monotonic(), self.path, json.loads(body))
                with fake._lock:
                    n = len(fake.posts)
                    fake.posts.append(post)
                    answer = fake.script(n, post)
                    release = fake._release
                if answer.delay:
                    release.wait(answer.delay)
                post.answered = answer.status
                try:
                    self._send(answer)
                except OSError:
                    pass  # the client gave up (timeout) or was killed

            def _send(self, answer: Answer) -> None:
                data = answer.body.encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
