"""Run the simulator: bind, serve until SIGTERM/SIGINT, --max-seconds or stdin EOF, then stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import dataclass

from messaging.simulator.app import SimulatorApp
from messaging.simulator.protocol import HttpProtocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8790
    max_seconds: float | None = None
    # Stop when stdin closes: the harness keeps a pipe open, so a dead parent stops us.
    exit_on_stdin_eof: bool = False


class _StdinWatch(asyncio.Protocol):
    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop.set()


async def serve(app: SimulatorApp, options: ServerOptions) -> None:
    loop = asyncio.get_running_loop()
    connections: set[HttpProtocol] = set()
    server = await loop.create_server(
        lambda: HttpProtocol(app.handle, connections),
        options.host,
        options.port,
        backlog=2048,
        reuse_address=True,
    )
    port = server.sockets[0].getsockname()[1]
    app.base_url = f"http://{options.host}:{port}"
    app.webhooks.start()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if options.max_seconds:
        loop.call_later(options.max_seconds, stop.set)
    if options.exit_on_stdin_eof:
        await loop.connect_read_pipe(lambda: _StdinWatch(stop), sys.stdin)
    print(f"listening on {app.base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        logger.info("Simulator stopping after %s requests", app.state.requests)
        server.close()
        for connection in list(connections):
            connection.close()
        await app.webhooks.stop()
        await server.wait_closed()


def run(app: SimulatorApp, options: ServerOptions) -> None:
    asyncio.run(serve(app, options))
