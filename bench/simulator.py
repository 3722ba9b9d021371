"""Benchmark of the WhatsApp Cloud API simulator: requests/s and simulator CPU per request.

    .venv/bin/python -m bench.simulator [--seconds 10] [--clients 2] [--connections 64]

Phase 1 (throughput): latency 0, several client processes, each with many keep-alive
connections sending template POSTs as fast as the simulator answers. Phase 2 (in flight): the
sender's shape, 100 ms ± 50 ms latency, 300 connections, to show ~300 concurrent requests are
fine. Phase 3 adds signed status webhooks (sent/delivered/read) to a loopback sink, to
show what they cost the simulator. The clients are raw asyncio HTTP/1.1 (cheaper than the
simulator per request, so the simulator is what gets measured). Everything runs on
127.0.0.1 and stops after --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time

from messaging.simulator.harness import start_simulator
from messaging.simulator.templates import demo_template, example_components

COMPONENTS = example_components(demo_template("spring_promo"))
NUMBERS = 50  # spread over many phone-number-ids so the throughput cap never answers


def _request(host: str, port: int, token: str, n: int) -> bytes:
    body = json.dumps(
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": f"55119{n:08d}",
            "type": "template",
            "biz_opaque_callback_data": f"out:{n}",
            "template": {
                "name": "spring_promo",
                "language": {"code": "en_US"},
                "components": COMPONENTS,
            },
        }
    ).encode()
    head = (
        f"POST /v23.0/{1000 + n % NUMBERS}/messages HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Client(asyncio.Protocol):
    """One keep-alive connection sending the next request as soon as an answer is complete."""

    def __init__(self, requests: list[bytes], deadline: float, done: asyncio.Future) -> None:
        self.requests, self.deadline, self.done = requests, deadline, done
        self.buf = bytearray()
        self.count = 0
        self.statuses: dict[bytes, int] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        if time.monotonic() >= self.deadline:
            self.transport.close()
            return
        self.transport.write(self.requests[self.count % len(self.requests)])

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            at = self.buf.find(b"Content-Length: ", 0, end)
            length = int(self.buf[at + 16 : self.buf.find(b"\r\n", at)])
            if len(self.buf) < end + 4 + length:
                return
            status = bytes(self.buf[9:12])
            self.statuses[status] = self.statuses.get(status, 0) + 1
            del self.buf[: end + 4 + length]
            self.count += 1
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _drive(host: str, port: int, token: str, connections: int, seconds: float, seed: int):
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + seconds
    clients, waits = [], []
    for c in range(connections):
        requests = [_request(host, port, token, seed * 1_000_000 + c * 1000 + i) for i in range(50)]
        done = loop.create_future()
        _, client = await loop.create_connection(
            lambda r=requests, d=done: _Client(r, deadline, d), host, port
        )
        clients.append(client)
        waits.append(done)
    await asyncio.wait_for(asyncio.gather(*waits), seconds + 30)
    statuses: dict[str, int] = {}
    for client in clients:
        for status, n in client.statuses.items():
            statuses[status.decode()] = statuses.get(status.decode(), 0) + n
    return statuses


def _sink_process(port_queue: multiprocessing.Queue, seconds: float) -> None:
    """A webhook receiver that answers 200 to everything (the simulator's own protocol)."""
    from messaging.simulator.protocol import HttpProtocol, Response

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: HttpProtocol(lambda request: Response(200, b"{}"), set()), "127.0.0.1", 0
        )
        port_queue.put(server.sockets[0].getsockname()[1])
        await asyncio.sleep(seconds)

    asyncio.run(serve())


def _client_process(args: tuple, queue: multiprocessing.Queue) -> None:
    queue.put(asyncio.run(_drive(*args)))


def run_phase(sim, *, clients: int, connections: int, seconds: float) -> dict:
    host, port = sim.base_url.removeprefix("http://").split(":")
    sim.reset()
    queue: multiprocessing.Queue = multiprocessing.Queue()
    per_client = max(1, connections // clients)
    processes = [
        multiprocessing.Process(
            target=_client_process,
            args=((host, int(port), sim.token, per_client, seconds, n), queue),
        )
        for n in range(clients)
    ]
    started = time.monotonic()
    for process in processes:
        process.start()
    results = [queue.get(timeout=seconds + 60) for _ in processes]
    elapsed = time.monotonic() - started
    for process in processes:
        process.join(10)
    stats = sim.stats()
    statuses: dict[str, int] = {}
    for result in results:
        for status, n in result.items():
            statuses[status] = statuses.get(status, 0) + n
    answered = sum(statuses.values())
    return {
        "answered": answered,
        "statuses": statuses,
        "elapsed_s": round(elapsed, 2),
        "requests_per_s": round(stats["requests"] / seconds),
        "sim_cpu_s": stats["cpu_s"],
        "sim_cpu_us_per_request": round(stats["cpu_s"] / max(1, stats["requests"]) * 1e6, 1),
        "sim_capacity_per_core": round(stats["requests"] / max(stats["cpu_s"], 1e-9)),
        "accepted": stats["accepted"],
        "webhook_statuses_delivered": stats["webhooks"]["statuses_delivered"],
        "webhook_posts": stats["webhooks"]["posts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    parser.add_argument("--inflight-connections", type=int, default=300)
    options = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, duration per phase: {options.seconds} s")
    with start_simulator(mps=100_000, seed=1, max_seconds=options.seconds * 4 + 120) as sim:
        result = run_phase(
            sim, clients=options.clients, connections=options.connections, seconds=options.seconds
        )
        print("throughput (latency 0):", json.dumps(result))
        sim.configure(latency_ms=100, jitter_ms=50)
        result = run_phase(
            sim,
            clients=options.clients,
            connections=options.inflight_connections,
            seconds=options.seconds,
        )
        print("in flight (100 ± 50 ms):", json.dumps(result))
        port_queue: multiprocessing.Queue = multiprocessing.Queue()
        sink = multiprocessing.Process(target=_sink_process, args=(port_queue, options.seconds * 3))
        sink.start()
        try:
            sim.configure(webhook_url=f"http://127.0.0.1:{port_queue.get(timeout=10)}/hook")
            result = run_phase(
                sim,
                clients=options.clients,
                connections=options.inflight_connections,
                seconds=options.seconds,
            )
            # Let the last statuses (up to 3 steps of webhook_delay_ms) go out before counting.
            time.sleep(1.0)
            result["webhook_statuses_delivered"] = sim.stats()["webhooks"]["statuses_delivered"]
            print("in flight + webhooks:", json.dumps(result))
        finally:
            sink.terminate()
            sink.join(10)


if __name__ == "__main__":
    main()
