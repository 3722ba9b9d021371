"""Simulator fixtures, plus a tiny loopback webhook receiver that records what it gets."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests


class Receiver:
    """Records webhook POSTs; answers `fail_first` of them with HTTP 500, the rest with 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 0
        self.lock = threading.Lock()
        # Cleared: each POST waits for it before it is answered (a slow webhook endpoint).
        self.answering = threading.Event()
        self.answering.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.answering.wait(timeout=30)
                with receiver.lock:
                    failing = receiver.fail_first > 0
                    if failing:
                        receiver.fail_first -= 1
                    else:
                        receiver.posts.append((dict(self.headers), body))
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/whatsapp"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def statuses(self) -> list[dict]:
        with self.lock:
            posts = list(self.posts)
        found = []
        for _, body in posts:
            for entry in json.loads(body)["entry"]:
                for change in entry["changes"]:
                    found.extend(change["value"]["statuses"])
        return found

    def wait_for_statuses(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = self.statuses()
            if len(statuses) >= count:
                return statuses
            time.sleep(0.05)
        raise AssertionError(f"expected {count} statuses, got {len(self.statuses())}")

    def close(self) -> None:
        self.answering.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def http():
    with requests.Session() as session:
        session.trust_env = False
        yield session
