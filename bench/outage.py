"""Benchmark: a 1,000 msg/s run with Redis stopped for 30 s in the middle.

    .venv/bin/python -m bench.outage [--rate 1000] [--outage-seconds 30] [--processes 2]

The sending engine's benchmark (bench/engine.py: its campaign, its counting senders, its
figures) with one change: once the run has sent for --lead-seconds, the Redis of
scripts/services.sh is shut down (`redis-cli shutdown nosave`) for --outage-seconds, then
started again, empty. Meanwhile the number is paced by PostgreSQL (messaging/pacing_failover.py)
and moves back to Redis by itself. It stops and starts the services' Redis, so never run it
beside the test suite on the same ports. Loopback only; every wait is bounded.

Figures (docs/benchmarks.md, "Redis outage"): busiest 1 s window of send starts ÷ target over
the whole run (floor ≤ 1.05), and sends during the outage ÷ (outage seconds × target) (floor
≥ 0.9); also the simulator's own sliding maximum, how soon the number was back on Redis, and
that every message went exactly once.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench import engine
from bench.common import fresh_database, services_env, start_redis

POLL = 0.05


def _wait(condition, what: str, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(POLL)
    return time.monotonic() - started


def _redis_port(url: str) -> str:
    from urllib.parse import urlsplit

    return str(urlsplit(url).port)


def _stop_redis(port: str) -> None:
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], check=False)


def _window_max(starts: list[int], lo: int, hi: int, width: int) -> int:
    """Busiest `width`-bucket window of the histogram `starts` (bucket indices) in [lo, hi)."""
    best = 0
    for i in range(lo, max(lo, hi - width) + 1):
        best = max(best, bisect.bisect_left(starts, i + width) - bisect.bisect_left(starts, i))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="the number's mps")
    parser.add_argument("--outage-seconds", type=float, default=30.0)
    parser.add_argument("--lead-seconds", type=float, default=12.0, help="sending before it")
    parser.add_argument("--tail-seconds", type=float, default=18.0, help="sending after it")
    parser.add_argument("--processes", type=int, default=2, help="run_sender processes")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    target = args.rate * engine.HEADROOM
    span = args.lead_seconds + args.outage_seconds + args.tail_seconds
    messages = math.ceil(target * span)
    max_seconds = span * 1.5 + 60

    env = services_env(db_name=engine.DB_NAME, redis_db=engine.REDIS_DB)
    fresh_database(env["DATABASE_URL"])
    engine._setup_django(env)
    import psycopg
    import redis
    from django.conf import settings

    from messaging.simulator.harness import start_simulator

    if settings.SENDER_RATE_HEADROOM != engine.HEADROOM:
        target = args.rate * settings.SENDER_RATE_HEADROOM
    port = _redis_port(env["REDIS_URL"])

    def redis_up() -> bool:
        try:
            return bool(redis.Redis.from_url(env["REDIS_URL"], socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def mode() -> str:
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
            row = conn.execute("SELECT mode FROM messaging_pacingstate").fetchone()
        return row[0] if row else "redis"

    campaign_id = engine.create_campaign(messages=messages, rate=args.rate)
    print(f"created {messages:,} queue rows; target {target:g}/s", flush=True)
    marks: dict[str, float] = {}
    with (
        start_simulator(latency_ms=100, jitter_ms=50, mps=args.rate, seed=7) as sim,
        tempfile.TemporaryDirectory() as workdir,
    ):
        t0 = time.monotonic()
        results: list[list[dict]] = []
        runner = threading.Thread(
            target=lambda: results.append(
                engine.run_senders(
                    sim,
                    processes=args.processes,
                    max_seconds=max_seconds,
                    workdir=Path(workdir),
                    t0=t0,
                )
            )
        )
        runner.start()
        try:
            _wait(lambda: sim.stats()["accepted"] > 0, "the first send", 120)
            marks["first_send"] = time.monotonic() - t0
            time.sleep(args.lead_seconds)
            print(f"stopping Redis (port {port}) for {args.outage_seconds:g} s …", flush=True)
            marks["redis_stopped"] = time.monotonic() - t0
            _stop_redis(port)
            marks["on_postgresql_after_s"] = _wait(lambda: mode() == "postgres", "PG mode", 30)
            time.sleep(max(0.0, args.outage_seconds - marks["on_postgresql_after_s"]))
            start_redis(port)
            _wait(redis_up, "Redis", 30)
            marks["redis_started"] = time.monotonic() - t0
            print("Redis started again (empty)", flush=True)
            marks["back_on_redis_after_s"] = _wait(lambda: mode() == "redis", "Redis mode", 60)
        finally:
            if not redis_up():
                start_redis(port)
            runner.join()
        sim_stats = sim.stats()

    workers = results[0]
    histogram: dict[int, int] = {}
    for worker in workers:
        for index, n in worker.get("histogram", []):
            histogram[index] = histogram.get(index, 0) + n
    starts: list[int] = sorted(i for i, n in histogram.items() for _ in range(n))
    rates = engine.rate_figures(histogram, target=target)
    per_s = round(1 / engine.BUCKET_S)
    stop_i = round(marks["redis_stopped"] / engine.BUCKET_S)
    start_i = round(marks["redis_started"] / engine.BUCKET_S)
    during = bisect.bisect_left(starts, start_i) - bisect.bisect_left(starts, stop_i)
    outage_s = (start_i - stop_i) * engine.BUCKET_S
    around_stop = _window_max(starts, stop_i - 2 * per_s, stop_i + 3 * per_s, per_s)
    around_start = _window_max(starts, start_i - 2 * per_s, start_i + 8 * per_s, per_s)
    report = {
        "rate": args.rate,
        "target": target,
        "messages": messages,
        "processes": args.processes,
        "returncodes": [w["returncode"] for w in workers],
        "marks_s": marks,
        "outage_s": outage_s,
        "sent_during_outage": during,
        "outage_ratio": during / outage_s / target,
        "busiest_1s": rates.get("busiest_1s"),
        "busiest_ratio": rates.get("busiest_ratio"),
        "busiest_1s_around_stop": around_stop,
        "busiest_1s_around_start": around_start,
        "achieved_ratio": rates.get("achieved_ratio"),
        "simulator": {
            "accepted": sim_stats["accepted"],
            "errors": sim_stats["errors"],
            "max_accepted_1s": sim_stats["max_accepted_1s_by_number"].get(engine.PHONE_NUMBER_ID),
            "exactly_once": sim_stats["callbacks"]["exactly_once"],
            "more_than_once": sim_stats["callbacks"]["more_than_once"],
        },
        "queue": engine.queue_outcome(campaign_id),
        "per_second": rates.get("per_second"),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


def print_report(r: dict) -> None:
    target, sim, marks = r["target"], r["simulator"], r["marks_s"]
    print()
    print(
        f"rate {r['rate']} mps, target {target:g}/s, {r['messages']:,} messages, "
        f"{r['processes']} process(es); exit codes {r['returncodes']}; load average "
        f"{r['loadavg_1m']} (2 cores)"
    )
    print(
        f"Redis stopped at {marks['redis_stopped']:.1f} s, paced by PostgreSQL "
        f"{marks['on_postgresql_after_s']:.2f} s later; started again at "
        f"{marks['redis_started']:.1f} s ({r['outage_s']:.1f} s out), back on Redis "
        f"{marks['back_on_redis_after_s']:.2f} s later"
    )
    print(
        f"simulator: {sim['accepted']:,} accepted, errors {sim['errors'] or 'none'}, exactly "
        f"once {sim['exactly_once']:,}, more than once {sim['more_than_once']}; queue "
        f"{r['queue']}"
    )
    ok = (r["busiest_ratio"] or 99) <= 1.05
    print(
        f"[{engine._mark(ok)}] busiest 1 s window {r['busiest_1s']} = {r['busiest_ratio']:.3f} "
        f"× target (whole run; around the stop {r['busiest_1s_around_stop']}, around the "
        f"restart {r['busiest_1s_around_start']}; simulator's sliding max {sim['max_accepted_1s']})"
    )
    ok = r["outage_ratio"] >= 0.9
    print(
        f"[{engine._mark(ok)}] during the outage {r['sent_during_outage']:,} sends in "
        f"{r['outage_s']:.1f} s = {r['sent_during_outage'] / r['outage_s']:.1f}/s = "
        f"{r['outage_ratio']:.3f} × target"
    )
    print(f"      whole run: achieved {r['achieved_ratio']:.3f} × target")
    print(f"      per second: {r['per_second']}")


if __name__ == "__main__":
    main()
