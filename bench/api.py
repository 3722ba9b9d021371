"""Benchmark of the transactional send API: requests/s, messages/s, server CPU per message
against a raw INSERT, and the p99 of a single send at 200 requests/s.

    .venv/bin/python -m bench.api [--seconds 8] [--clients 4]

gunicorn (`-k gthread -w 2 --threads 8`, DEBUG off, `CONN_MAX_AGE=600`) serves config.wsgi on
loopback against the PostgreSQL of scripts/services.sh, in a database of its own
(`wac_bench_api`, dropped and created afresh) and Redis db 7 (the per-key rate limit, flushed).
No sender runs: what is measured is accepting a send (validation, policy look-ups, the
transactional stream's queue row), which is what the caller waits for.

Phases (same run, same machine, same client code; clients are processes with one keep-alive
`http.client` connection each):
  0. raw INSERT — this process writes queue rows with psycopg on one connection: one row per
     transaction (the baseline of a single send), then 1,000 rows per statement (of a batch)
  1. bare       — POST of the same body to a view that only answers 200 (bench-only setting)
  2. single     — POST /api/v1/messages, closed loop
  3. single+key — the same with an Idempotency-Key per request
  4. paced      — open loop at --paced-rate (200) requests/s; latency from each request's
                  scheduled time, so a stall counts against every request it delays
  5. batch      — POST /api/v1/messages/batch of 1,000 recipients, closed loop, 2 clients
Server CPU of a phase = user + sys of the gunicorn workers and of every PostgreSQL server
process (from /proc) over the phase, so the API and the raw INSERT are charged alike (the
raw INSERT's client is this process, whose CPU is added to its figure).
Floor (issue 9): p99 < 50 ms at 200 requests/s; a single send costs a few ms of server time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    ROOT,
    child_pids,
    cpu_seconds,
    fresh_database,
    postgres_cpu_seconds,
    request_schedule,
    services_env,
    setup_django,
    start_gunicorn,
)
from bench.webhooks import _free_port, _wait_port

DB_NAME = "wac_bench_api"
REDIS_DB = 7
PNID = "106500000077"
BATCH = 1000
P99_FLOOR_MS = 50.0


# --- CPU of server processes ----------------------------------------------------------------
class ServerCpu:
    """CPU seconds of the gunicorn workers and the PostgreSQL processes of our cluster."""

    def __init__(self, gunicorn_pid: int, database_url: str) -> None:
        self.gunicorn_pid = gunicorn_pid
        self.database_url = database_url

    def sample(self) -> dict[str, float]:
        return {
            "web": cpu_seconds(child_pids(self.gunicorn_pid)),
            "db": postgres_cpu_seconds(self.database_url),
        }


def _spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


# --- data -----------------------------------------------------------------------------------
def seed() -> tuple[str, int, int]:
    """Account, number, a utility template, an API key; (key, sender id, template id)."""
    from campaigns.models import MessageTemplate, SenderNumber, WhatsAppAccount
    from messaging.integrations.keys import create_api_key
    from messaging.integrations.models import ApiKey

    account = WhatsAppAccount.objects.create(waba_id="100000000000077", name="API bench")
    sender = SenderNumber.objects.create(
        account=account, phone_number_id=PNID, display_number="+15550000077", rate_mps=1000
    )
    template = MessageTemplate.objects.create(
        account=account,
        name="bench_code",
        language="en_US",
        components=[{"type": "BODY", "text": "Your code is {{1}}"}],
        category="UTILITY",
    )
    new = create_api_key(name="bench", scopes=[ApiKey.Scope.MESSAGES_SEND])
    # The limit protects the engine from one client; the benchmark is that client.
    ApiKey.objects.filter(pk=new.api_key.pk).update(rate_limit_per_minute=10**9)
    return new.secret, sender.pk, template.pk


def _phone(rng: random.Random) -> str:
    return f"+1415{rng.randrange(2_000_000, 9_999_999):07d}"


def _message(rng: random.Random) -> dict:
    return {
        "to": _phone(rng),
        "template": {
            "name": "bench_code",
            "language": "en_US",
            "variables": {"1": f"{rng.randrange(10**6):06d}"},
        },
        "ttl_seconds": 600,
    }


def _body(kind: str, rng: random.Random) -> bytes:
    if kind == "batch":
        body: dict = {"sender": PNID, "messages": [_message(rng) for _ in range(BATCH)]}
    else:
        body = {"sender": PNID, **_message(rng)}
    return json.dumps(body, separators=(",", ":")).encode()


# --- load -----------------------------------------------------------------------------------
def _client(args: tuple) -> dict:
    """One load process: one keep-alive connection, closed loop or paced (rate > 0)."""
    port, path, kind, key, seconds, seed_, rate, idempotent = args
    rng = random.Random(seed_)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    messages = 0
    for n, scheduled in request_schedule(seconds, rate):
        body = _body(kind, rng)
        extra = {"Idempotency-Key": f"k-{seed_}-{n}"} if idempotent else {}
        conn.request("POST", path, body=body, headers={**headers, **extra})
        response = conn.getresponse()
        data = response.read()
        latencies.append(time.perf_counter() - scheduled)
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if response.status == 202:
            messages += 1
        elif response.status == 200 and kind == "batch":
            messages += json.loads(data)["queued"]
    conn.close()
    return {
        "requests": len(latencies),
        "latencies": latencies,
        "statuses": statuses,
        "messages": messages,
    }


def _phase(
    cpu: ServerCpu,
    port: int,
    *,
    path: str,
    kind: str,
    key: str,
    seconds: float,
    clients: int,
    rate: float = 0.0,
    idempotent: bool = False,
    seed_: int = 0,
) -> dict:
    per_rate = rate / clients if rate else 0.0
    with mp.get_context("fork").Pool(clients) as pool:
        before = cpu.sample()
        t0 = time.perf_counter()
        results = pool.map(
            _client,
            [
                (port, path, kind, key, seconds, seed_ + i, per_rate, idempotent)
                for i in range(clients)
            ],
        )
        elapsed = time.perf_counter() - t0
        spent = _spent(before, cpu.sample())
    latencies = sorted(x for r in results for x in r["latencies"])
    requests = sum(r["requests"] for r in results)
    messages = sum(r["messages"] for r in results)
    statuses: dict[int, int] = {}
    for r in results:
        for code, n in r["statuses"].items():
            statuses[code] = statuses.get(code, 0) + n
    server_s = spent["web"] + spent["db"]
    unit = max(1, messages or requests)
    return {
        "requests": requests,
        "rps": requests / seconds,
        "messages": messages,
        "mps": messages / seconds,
        "statuses": statuses,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        "max_ms": 1000 * latencies[-1] if latencies else 0.0,
        "elapsed_s": elapsed,
        "cpu_web_s": spent["web"],
        "cpu_db_s": spent["db"],
        "server_ms_per_request": 1000 * server_s / max(1, requests),
        "server_ms_per_message": 1000 * server_s / unit,
    }


# --- the raw INSERT baseline -----------------------------------------------------------------
_INSERT = (
    "INSERT INTO messaging_outboundmessage (campaign_id, contact_id, template_id, sender_id, "
    "phone, parameters, priority, transactional, status, attempts, next_attempt_at, "
    "claimed_by, error_category, error_detail, valid_until) "
)


def raw_inserts(cpu: ServerCpu, url: str, *, sender: int, template: int, seconds: float) -> dict:
    """Queue rows written as directly as PostgreSQL allows: one per transaction, then 1,000
    per statement; CPU of this process + the database per row."""
    import psycopg

    from campaigns.models import Campaign, Contact

    campaign = Campaign.objects.create(name="raw", sender_id=sender, status=Campaign.Status.RUNNING)
    contact = Contact.objects.create(phone="+14150000001")
    params = json.dumps([{"type": "body", "parameters": [{"type": "text", "text": "123456"}]}])
    out = {}
    with psycopg.connect(url) as conn:
        one = (
            _INSERT + "VALUES (%s, %s, %s, %s, %s, %s::jsonb, 100, true, 0, 0, now(), '', '', '', "
            "now() + interval '10 minutes')"
        )
        many = (
            _INSERT + "SELECT %s, %s, %s, %s, '+1415' || lpad(g::text, 7, '0'), %s::jsonb, 100, "
            "true, 0, 0, now(), '', '', '', now() + interval '10 minutes' "
            "FROM generate_series(1, %s) g"
        )
        for name, statement, rows_per in (("single", one, 1), ("batch", many, BATCH)):
            before, mine = cpu.sample(), time.process_time()
            t0 = time.perf_counter()
            rows = 0
            while time.perf_counter() - t0 < seconds:
                args = [campaign.pk, contact.pk, template, sender]
                if rows_per == 1:
                    conn.execute(statement, [*args, "+14155550100", params], prepare=True)
                else:
                    conn.execute(statement, [*args, params, BATCH], prepare=True)
                conn.commit()
                rows += rows_per
            elapsed = time.perf_counter() - t0
            spent = _spent(before, cpu.sample())
            own = time.process_time() - mine
            out[name] = {
                "rows": rows,
                "rows_per_s": rows / elapsed,
                "client_ms_per_row": 1000 * own / rows,
                "db_ms_per_row": 1000 * spent["db"] / rows,
                "ms_per_row": 1000 * (own + spent["db"]) / rows,
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per phase")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--paced-rate", type=float, default=200.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    options = parser.parse_args()
    if options.seconds <= 0 or options.clients < 1 or options.paced_rate <= 0:
        parser.error("--seconds, --clients and --paced-rate must be positive")

    env = services_env(db_name=DB_NAME, redis_db=REDIS_DB)
    fresh_database(env["DATABASE_URL"])
    setup_django(env)
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    key, sender, template = seed()
    from django.db import connection

    connection.close()

    tmp = Path(tempfile.mkdtemp(prefix="wac-bench-api-"))
    (tmp / "wac_bench_api_settings.py").write_text(
        "from config.settings import *  # noqa\nWEBHOOK_BENCH_BARE_VIEW = True\n"
    )
    server_env = {
        **os.environ,
        **env,
        "DJANGO_SETTINGS_MODULE": "wac_bench_api_settings",
        "PYTHONPATH": f"{tmp}:{ROOT}",
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 50,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "CONN_MAX_AGE": "600",
        "LOG_LEVEL": "WARNING",
    }
    port = _free_port()
    server = start_gunicorn(
        port=port, workers=options.workers, threads=options.threads, env=server_env
    )
    results: dict[str, dict] = {}
    load_before = os.getloadavg()
    try:
        _wait_port(port)
        cpu = ServerCpu(server.pid, env["DATABASE_URL"])
        # A few seconds are enough for a steady figure (and keep the table near its size).
        results["raw"] = raw_inserts(
            cpu, env["DATABASE_URL"], sender=sender, template=template, seconds=3.0
        )
        connection.close()
        common = {"key": key, "seconds": options.seconds, "clients": options.clients}
        api = "/api/v1/messages"
        # Warm-up: every worker thread opens its database connection and imports its views.
        results["warm_up"] = _phase(
            cpu, port, path=api, kind="single", **{**common, "seconds": 1.5}, seed_=900
        )
        results["bare"] = _phase(cpu, port, path="/webhooks/_bare/", kind="single", **common)
        results["single"] = _phase(cpu, port, path=api, kind="single", **common, seed_=100)
        results["single_key"] = _phase(
            cpu, port, path=api, kind="single", idempotent=True, **common, seed_=200
        )
        results["paced"] = _phase(
            cpu, port, path=api, kind="single", rate=options.paced_rate, **common, seed_=300
        )
        results["batch"] = _phase(
            cpu,
            port,
            path=f"{api}/batch",
            kind="batch",
            **{**common, "clients": 2},
            seed_=400,
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    load_after = os.getloadavg()
    from messaging.models import OutboundMessage

    queued = OutboundMessage.objects.filter(transactional=True).count()
    raw_rows = sum(r["rows"] for r in results["raw"].values())
    accepted = sum(
        results[k]["messages"] for k in ("warm_up", "single", "single_key", "paced", "batch")
    )
    report = {
        "options": vars(options) | {"json": str(options.json) if options.json else None},
        "loadavg_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "results": results,
        "queue_rows_check": {"api_accepted": accepted, "rows_written": queued - raw_rows},
    }
    print_report(report)
    if options.json:
        options.json.write_text(json.dumps(report, indent=2, default=str))
    ok = results["paced"]["p99_ms"] < P99_FLOOR_MS and all(
        set(results[k]["statuses"]) <= {200, 202}
        for k in ("bare", "single", "single_key", "paced", "batch")
    )
    print("FLOORS MET" if ok else "FLOORS NOT MET")
    sys.exit(0 if ok else 1)


def print_report(report: dict) -> None:
    r = report["results"]
    raw1, raw_many = r["raw"]["single"], r["raw"]["batch"]
    print()
    print(
        f"load average {report['loadavg_1m_before_after']} (before, after; 2 cores); "
        f"{report['options']['clients']} clients, {report['options']['seconds']:g} s per phase"
    )
    print(
        f"raw INSERT, 1 row per transaction: {raw1['rows_per_s']:8.0f} rows/s, "
        f"{raw1['ms_per_row']:.3f} ms CPU per row (client {raw1['client_ms_per_row']:.3f} + "
        f"database {raw1['db_ms_per_row']:.3f})"
    )
    print(
        f"raw INSERT, {BATCH} rows per statement: {raw_many['rows_per_s']:8.0f} rows/s, "
        f"{raw_many['ms_per_row']:.4f} ms CPU per row"
    )
    lines = [
        ("bare view", r["bare"], raw1),
        ("single send", r["single"], raw1),
        ("single + Idempotency-Key", r["single_key"], raw1),
        (f"paced {report['options']['paced_rate']:g}/s", r["paced"], raw1),
        (f"batch of {BATCH}", r["batch"], raw_many),
    ]
    for name, p, base in lines:
        print(
            f"{name:26} {p['rps']:7.1f} req/s {p['mps']:8.0f} msg/s  p50 {p['p50_ms']:6.1f} ms "
            f"p99 {p['p99_ms']:6.1f} ms  server CPU {p['server_ms_per_request']:.2f} ms/req "
            f"(web {1000 * p['cpu_web_s'] / max(1, p['requests']):.2f}, "
            f"db {1000 * p['cpu_db_s'] / max(1, p['requests']):.2f})"
            + (
                f", {p['server_ms_per_message']:.3f} ms/msg = "
                f"{p['server_ms_per_message'] / base['ms_per_row']:.1f} × raw INSERT"
                if p["messages"]
                else ""
            )
            + f"  answers {p['statuses']}"
        )
    print(
        f"[{'ok ' if r['paced']['p99_ms'] < P99_FLOOR_MS else 'LOW'}] p99 at "
        f"{report['options']['paced_rate']:g} requests/s: {r['paced']['p99_ms']:.1f} ms "
        f"(floor < {P99_FLOOR_MS:g} ms)"
    )
    print(f"queue rows: {report['queue_rows_check']}")


if __name__ == "__main__":
    main()
