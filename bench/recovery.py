"""Recovery under the django-q2 cluster: how soon sending resumes after Redis or PostgreSQL comes
back, and how soon a killed cluster's webhook backlog starts draining after it restarts.

    .venv/bin/python -m bench.recovery [--outage-seconds 5]

Runs `manage.py qcluster` (4 workers) on database `wac_bench` (dropped first) and Redis db 6 of
scripts/services.sh, sending a campaign at cap 200 to the simulator (100 ± 50 ms). Phases:
1. Redis is shut down for --outage-seconds and started again (same port, empty);
2. PostgreSQL is stopped (fast) for --outage-seconds and started again;
3. 20,000 webhook bodies are stored, the whole cluster is SIGKILLed while it drains them, and
   started again.
For each it prints the seconds from "the service answers again" (or "the cluster was started")
to the first accepted send (or the first applied body). It stops and restarts the services of
scripts/services.sh, so never run it beside the test suite on the same ports. Loopback only;
every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import engine
from bench.common import ROOT, fresh_database, services_env, start_redis

POLL = 0.05


def _wait(condition, what: str, timeout: float = 120.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(POLL)
    return time.monotonic() - started


def _cluster(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage-seconds", type=float, default=5.0)
    args = parser.parse_args()
    env = services_env(db_name=engine.DB_NAME, redis_db=engine.REDIS_DB)
    fresh_database(env["DATABASE_URL"])
    engine._setup_django(env)
    import psycopg
    import redis

    from messaging.simulator.harness import start_simulator

    pg_port = os.environ.get("WAC_PG_PORT", "54329")
    redis_port = os.environ.get("WAC_REDIS_PORT", "63799")
    pg_bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    pg_dir = os.environ.get("WAC_PG_DIR", f"/tmp/wacampaigns-pg-{pg_port}")
    as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []

    def redis_up() -> bool:
        try:
            return bool(redis.Redis.from_url(env["REDIS_URL"], socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def pg_up() -> bool:
        try:
            with psycopg.connect(env["DATABASE_URL"], connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    engine.create_campaign(messages=40_000, rate=200)
    results: dict[str, float] = {}
    with start_simulator(latency_ms=100, jitter_ms=50, mps=200, seed=7) as sim:
        cluster_env = {
            **os.environ,
            "WHATSAPP_API_BASE_URL": sim.base_url,
            "WHATSAPP_ACCESS_TOKEN": sim.token,
            "Q_WORKERS": "4",
            "LOG_LEVEL": "WARNING",
        }
        cluster = _cluster(cluster_env)
        try:

            def accepted() -> int:
                return sim.stats()["accepted"]

            print(f"cluster up; first send after {_wait(lambda: accepted() > 0, 'a send'):.1f} s")
            time.sleep(5)

            # 1. Redis away.
            subprocess.run(["redis-cli", "-p", redis_port, "shutdown", "nosave"], check=False)
            time.sleep(args.outage_seconds)
            before = accepted()
            start_redis(redis_port)
            _wait(redis_up, "Redis")
            # Sends during the outage (a PostgreSQL fallback) count as resumed at once.
            results["redis"] = _wait(lambda: accepted() > before, "sends after Redis")
            print(f"Redis back: sending resumed after {results['redis']:.2f} s")
            time.sleep(5)

            # 2. PostgreSQL away.
            subprocess.run(
                [*as_pg, str(pg_bin / "pg_ctl"), "-D", pg_dir, "-m", "fast", "-w", "stop"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            time.sleep(args.outage_seconds)
            subprocess.run(
                [
                    *as_pg,
                    str(pg_bin / "pg_ctl"),
                    "-D",
                    pg_dir,
                    "-l",
                    f"{pg_dir}/server.log",
                    "-w",
                    "start",
                    "-o",
                    f"-p {pg_port} -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300 "
                    "-c fsync=off -c shared_buffers=256MB",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            _wait(pg_up, "PostgreSQL")
            before = accepted()
            results["postgresql"] = _wait(lambda: accepted() > before, "sends after PostgreSQL")
            print(f"PostgreSQL back: sending resumed after {results['postgresql']:.2f} s")

            # 3. The applier's cluster killed mid-drain, then started again.
            with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO webhooks_rawevent (body, received_at, error) "
                    'SELECT convert_to(\'{"object":"whatsapp_business_account","entry":[]}\','
                    " 'UTF8'), now(), '' FROM generate_series(1, 20000)"
                )

            def pending() -> int:
                with psycopg.connect(env["DATABASE_URL"]) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM webhooks_rawevent WHERE applied_at IS NULL"
                    ).fetchone()
                return int(row[0]) if row else 0

            _wait(lambda: pending() < 19_000, "the drain to start")
            _kill(cluster)
            left = pending()
            cluster = _cluster(cluster_env)
            results["drain"] = _wait(lambda: pending() < left, "the drain after a restart")
            print(
                f"cluster killed with {left:,} bodies pending; restarted: draining after "
                f"{results['drain']:.2f} s"
            )
        finally:
            _kill(cluster)
    print(f"load average {os.getloadavg()[0]:.2f}; results {results}")


if __name__ == "__main__":
    main()
