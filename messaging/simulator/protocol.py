"""A lean HTTP/1.1 server protocol: keep-alive, Content-Length bodies, one request at a time.

Written on asyncio.Protocol rather than http.server or streams because the simulator has to
answer several thousand requests a second on one core (see docs/benchmarks.md "Simulator").
Delayed answers use loop.call_later, so a slow answer never holds up other connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024
_REASONS = {status.value: status.phrase for status in HTTPStatus}
# SO_LINGER on, timeout 0: close() sends a TCP RST, so the client sees "connection reset".
_LINGER_RST = struct.pack("ii", 1, 0)


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    # Seconds to wait before answering.
    delay: float = 0.0
    # Reset the connection instead of answering (after `delay`).
    drop: bool = False
    extra_headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Response]


class HttpProtocol(asyncio.Protocol):
    """One client connection. Requests are answered in order; no pipelining in parallel."""

    __slots__ = ("_buf", "_busy", "_closed", "_connections", "_handler", "_loop", "_transport")

    def __init__(self, handler: Handler, connections: set[HttpProtocol]) -> None:
        self._handler = handler
        self._connections = connections
        self._buf = bytearray()
        self._busy = False
        self._closed = False
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > MAX_HEADER_BYTES + MAX_BODY_BYTES:
            self.reset()
            return
        if not self._busy:
            self._serve()

    def close(self) -> None:
        if not self._closed and self._transport is not None:
            self._closed = True
            self._transport.close()

    def reset(self) -> None:
        """Drop the connection with a TCP reset."""
        if self._closed or self._transport is None:
            return
        self._closed = True
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        self._transport.abort()

    def _serve(self) -> None:
        while not self._busy and not self._closed:
            parsed = self._parse_one()
            if parsed is None:
                return
            request, keep_alive = parsed
            try:
                response = self._handler(request)
            except Exception:
                logger.exception("Simulator handler failed on %s %s", request.method, request.path)
                response = Response(500, b'{"error":{"message":"simulator bug","code":1}}')
            if response.delay > 0:
                self._busy = True
                self._loop.call_later(response.delay, self._finish_delayed, response, keep_alive)
                return
            self._respond(response, keep_alive)

    def _finish_delayed(self, response: Response, keep_alive: bool) -> None:
        self._busy = False
        if self._closed:
            return
        self._respond(response, keep_alive)
        if not self._closed and self._buf:
            self._serve()

    def _respond(self, response: Response, keep_alive: bool) -> None:
        if response.drop:
            self.reset()
            return
        head = [
            f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
        ]
        head.extend(f"{name}: {value}" for name, value in response.extra_headers)
        if not keep_alive:
            head.append("Connection: close")
        head.append("\r\n")
        assert self._transport is not None
        self._transport.write("\r\n".join(head).encode("latin-1") + response.body)
        if not keep_alive:
            self.close()

    def _fail(self, status: int, message: str) -> None:
        self._respond(Response(status, message.encode(), "text/plain"), keep_alive=False)

    def _parse_one(self) -> tuple[Request, bool] | None:
        """Take one complete request off the buffer, or None if more bytes are needed."""
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                self._fail(431, "request headers too large")
            return None
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._fail(400, f"malformed request line {lines[0][:100]!r}")
            return None
        method, target, version = parts
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            self._fail(501, "chunked request bodies are not supported; send Content-Length")
            return None
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._fail(400, "Content-Length is not a number")
            return None
        if length < 0 or length > MAX_BODY_BYTES:
            self._fail(413, f"body of {length} bytes refused (max {MAX_BODY_BYTES})")
            return None
        total = end + 4 + length
        if len(buf) < total:
            return None
        body = bytes(buf[end + 4 : total])
        del buf[:total]
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        path, _, query = target.partition("?")
        return Request(method, path, query, headers, body), keep_alive
