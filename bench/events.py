"""Benchmark of outbound event delivery: events/s to a loopback receiver, latency from the
status applied to the event delivered, and the CPU the events add per message.

    .venv/bin/python -m bench.events [--rate 1000] [--seconds 10] [--fail-share 0.05]

A fresh database `wac_bench_events` (Redis db 8, flushed) holds accepted queue rows of one
running campaign. This process applies status webhooks to them the way the drain does
(`webhooks.statuses.record_statuses`, 50 messages × sent, delivered and read per call, i.e.
three status events per message, one transaction per call). One `manage.py deliver_events
--keep-running` process delivers the outbox as the cluster would. The receiver is a separate
process (HTTP/1.1 keep-alive, `http.server`) that accepts batches (`max_batch` 100), fails
--fail-share of the POSTs with 503 (seeded), records each event's first arrival and counts
the repeats; the deliverer retries with its backoff.

Phases:
  A. paced, no subscription — statuses of `rate` messages/s for --seconds: the engine's apply
     cost without events (this process + PostgreSQL)
  B0. paced, one subscription to message.sent/delivered/read, deliverer running, every POST
     accepted — the same load; then until the backlog is empty. Latency = arrival at the
     receiver − the commit of the apply that wrote the event. The CPU figures come from here.
  A and B0 run --pairs times, interleaved (the subscription switched off and on), with the
  written tables vacuumed before each phase (autovacuum off for them): the median pair's
  B0 − A is reported, since one pair moves by ±20 % with nothing changed.
  B. the same with --fail-share of the POSTs failing
  C. capacity — a backlog of --backlog messages × 3 events written with the deliverer
     stopped, then delivered: events/s from its start until nothing is pending, once with
     every POST accepted and once with --fail-share failing
Added CPU per message = (B0 − A) of this process and PostgreSQL + the deliverer's CPU in B0,
as a share of A (the webhook apply) and of A + the sender's CPU per message measured by
bench/engine.py (docs/benchmarks.md, "Sending engine": 0.51 ms at 1,000 mps).
Floors (issue 9): ≥ 3,000 events/s delivered; ≤ 10 % CPU per message added to the engine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.common import (
    ROOT,
    cpu_seconds,
    fresh_database,
    postgres_cpu_seconds,
    services_env,
    setup_django,
)
from bench.webhooks import _free_port, _wait_port

DB_NAME = "wac_bench_events"
REDIS_DB = 8
PNID = "106500000088"
PER_CALL = 50  # messages per apply call (× 3 statuses), like a drained batch of bodies
SENDER_MS_PER_MESSAGE = 0.51  # docs/benchmarks.md, "Sending engine", 1,000 mps, 1 process
EVENTS_FLOOR = 3000.0
CPU_FLOOR = 0.10
LADDER = ("sent", "delivered", "read")
# Written by every phase; vacuumed between phases (_settle) instead of by autovacuum, whose
# runs would land in one phase or another at random.
HOT_TABLES = (
    "messaging_outboundmessage",
    "webhooks_statuslog",
    "integrations_messageeventlog",
    "integrations_eventlogcursor",
    "integrations_outboxevent",
    "messaging_campaignminute",
    "campaigns_campaign",
)


# --- the receiver ---------------------------------------------------------------------------
def _receiver(port: int, fail_share: float, seed: int, control) -> None:
    """Serve until told to stop; `control` (a Pipe end) gets the recorded arrivals."""
    rng = random.Random(seed)
    lock = threading.Lock()
    state = {"fail_share": fail_share, "posts": 0, "failed_posts": 0, "repeats": 0}
    arrivals: dict[str, tuple[int, str, float]] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                state["posts"] += 1
                fail = rng.random() < state["fail_share"]
                if fail:
                    state["failed_posts"] += 1
                else:
                    now = time.time()
                    data = json.loads(body)
                    for event in data.get("events", [data]):
                        if event["id"] in arrivals:
                            state["repeats"] += 1
                            continue
                        arrivals[event["id"]] = (
                            event["data"]["message_id"],
                            event["data"]["status"],
                            now,
                        )
            self.send_response(503 if fail else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # /count: events received so far
            with lock:
                payload = json.dumps({"received": len(arrivals), **state}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    while True:
        command = control.recv()
        if command == "stop":
            break
        if isinstance(command, tuple) and command[0] == "fail_share":
            with lock:
                state["fail_share"] = command[1]
            control.send("ok")
        elif command == "dump":
            with lock:
                control.send({"arrivals": dict(arrivals), **state})
                arrivals.clear()
                state.update(posts=0, failed_posts=0, repeats=0)
    server.shutdown()


# --- data and load --------------------------------------------------------------------------
def seed(messages: int) -> tuple[int, list[tuple[int, str]]]:
    """One running campaign of `messages` accepted rows; (campaign id, [(row id, wamid)])."""
    from django.db import connection, transaction
    from django.utils import timezone

    from campaigns.models import Campaign, Contact, MessageTemplate, SenderNumber, WhatsAppAccount
    from messaging.models import OutboundMessage

    account = WhatsAppAccount.objects.create(waba_id="100000000000088", name="Events bench")
    sender = SenderNumber.objects.create(
        account=account, phone_number_id=PNID, display_number="+15550000088", rate_mps=1000
    )
    template = MessageTemplate.objects.create(
        account=account, name="bench_events", language="en_US", category="UTILITY"
    )
    campaign = Campaign.objects.create(
        name="events bench",
        sender=sender,
        status=Campaign.Status.RUNNING,
        total=messages,
        sent=messages,
        started_at=timezone.now(),
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Contact._meta.db_table} (phone, name, attributes, wa_id, created_at) "
            "SELECT '+1415' || lpad((2000000 + g)::text, 7, '0'), '', '{}', '', now() "
            "FROM generate_series(0, %s - 1) AS g",
            [messages],
        )
        cursor.execute(
            f"INSERT INTO {OutboundMessage._meta.db_table} (campaign_id, contact_id, "
            "template_id, sender_id, phone, parameters, priority, status, attempts, "
            "next_attempt_at, claimed_by, error_category, error_detail, wamid, accepted_at) "
            "SELECT %s, c.id, %s, %s, c.phone, '[]', 0, 10, 1, now(), '', '', '', "
            f"'wamid.E' || c.id, now() FROM {Contact._meta.db_table} c ORDER BY c.id",
            [campaign.pk, template.pk, sender.pk],
        )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {OutboundMessage._meta.db_table}")
        for table in HOT_TABLES:
            cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    rows = list(OutboundMessage.objects.order_by("pk").values_list("pk", "wamid"))
    connection.close()
    return campaign.pk, rows


def _events_for(rows: list[tuple[int, str]]) -> list:
    from webhooks.payload import StatusEvent

    ts = datetime.now(UTC).replace(microsecond=0)
    out = []
    for _pk, wamid in rows:
        for name in LADDER:
            out.append(StatusEvent(wamid=wamid, status=name, timestamp=ts, recipient_id=""))
    return out


def apply_paced(rows: list[tuple[int, str]], *, rate: float) -> dict:
    """Apply the rows' statuses at `rate` messages/s; commit time per row id, own CPU."""
    from django.db import connection

    from webhooks.statuses import record_statuses

    committed: dict[int, float] = {}
    cpu0, t0 = time.process_time(), time.perf_counter()
    late = 0.0
    for i in range(0, len(rows), PER_CALL):
        chunk = rows[i : i + PER_CALL]
        scheduled = t0 + i / rate if rate else time.perf_counter()
        wait = scheduled - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        else:
            late = max(late, -wait)
        record_statuses(events=_events_for(chunk))
        now = time.time()
        for pk, _ in chunk:
            committed[pk] = now
    elapsed = time.perf_counter() - t0
    connection.close()
    return {
        "messages": len(rows),
        "elapsed_s": elapsed,
        "achieved_mps": len(rows) / elapsed,
        "most_behind_s": late,
        "cpu_s": time.process_time() - cpu0,
        "committed": committed,
    }


def _pending() -> int:
    from django.db import connection

    from messaging.integrations.events.delivery import backlog

    n = backlog()
    connection.close()
    return n


def _wait_drained(timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while _pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    return time.perf_counter()


class Deliverer:
    """`manage.py deliver_events --keep-running`, started and stopped by the benchmark."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "deliver_events", "--seconds", "3600", "--keep-running"],
            cwd=ROOT,
            env=self.env,
        )

    def cpu(self) -> float:
        assert self.process is not None
        return cpu_seconds([self.process.pid])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _latencies(arrivals: dict, committed: dict[int, float]) -> dict:
    lat = sorted(
        at - committed[message_id]
        for message_id, _status, at in arrivals.values()
        if message_id in committed
    )
    if not lat:
        return {}
    return {
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)],
        "max_ms": 1000 * lat[-1],
    }


def _event_order(event_id: str) -> tuple[int, ...]:
    """A message event's place: `evt_m<entry>_<position>` from the message event log, in
    entry then position order."""
    return tuple(int(part) for part in event_id.removeprefix("evt_m").split("_"))


def _order_violations(arrivals: dict) -> int:
    """Messages whose first arrivals are not sent < delivered < read in event order."""
    by_message: dict[int, list[tuple[tuple[int, ...], str]]] = {}
    for event_id, (message_id, status, _at) in arrivals.items():
        by_message.setdefault(message_id, []).append((_event_order(event_id), status))
    bad = 0
    for events in by_message.values():
        events.sort()
        if [s for _, s in events] != list(LADDER):
            bad += 1
    return bad


def _added_ms(a: dict, b: dict) -> float:
    """CPU per message that B (subscribed) took beyond A: the applying process, PostgreSQL
    and the deliverer, until B's events were all delivered."""
    return (
        1000
        * (
            (b["cpu_s"] - a["cpu_s"])
            + (b["db_cpu_until_drained_s"] - a["db_cpu_s"])
            + (b["deliverer_cpu_until_drained_s"] - a["deliverer_cpu_s"])
        )
        / a["messages"]
    )


def _settle() -> None:
    """Vacuum the tables the phases write, outside the measured time: autovacuum is off for
    them (seed), so no phase pays for the one before."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in HOT_TABLES:
            cursor.execute(f"VACUUM {table}")
    connection.close()
    time.sleep(0.5)


def _paced_subscribed(rows, *, rate: float, url: str, deliverer: Deliverer, control) -> dict:
    db0, d0 = postgres_cpu_seconds(url), deliverer.cpu()
    t0 = time.perf_counter()
    b = apply_paced(rows, rate=rate)
    b["db_cpu_s"] = postgres_cpu_seconds(url) - db0
    b["deliverer_cpu_s"] = deliverer.cpu() - d0
    b["backlog_at_end"] = _pending()
    b["drained_after_s"] = _wait_drained(300) - t0
    b["deliverer_cpu_until_drained_s"] = deliverer.cpu() - d0
    b["db_cpu_until_drained_s"] = postgres_cpu_seconds(url) - db0
    control.send("dump")
    got = control.recv()
    committed = b.pop("committed")
    b["events"] = len(got["arrivals"])
    b["expected_events"] = 3 * len(rows)
    b["events_per_s_whole"] = b["events"] / b["drained_after_s"]
    b["latency"] = _latencies(got["arrivals"], committed)
    b["order_violations"] = _order_violations(got["arrivals"])
    b["posts"], b["failed_posts"], b["repeats"] = got["posts"], got["failed_posts"], got["repeats"]
    return b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="messages/s applied")
    parser.add_argument("--seconds", type=float, default=10.0, help="per paced phase")
    parser.add_argument("--backlog", type=int, default=10_000, help="messages in phase C")
    parser.add_argument("--fail-share", type=float, default=0.05)
    parser.add_argument("--max-batch", type=int, default=100)
    parser.add_argument(
        "--pairs", type=int, default=3, help="A/B0 pairs, interleaved; the median pair counts"
    )
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    if not 0 <= options.fail_share < 1 or options.rate <= 0 or options.seconds <= 0:
        parser.error("--fail-share in [0, 1), --rate and --seconds positive")

    paced = int(options.rate * options.seconds)
    total = (2 * options.pairs + 1) * paced + 2 * options.backlog
    env = services_env(db_name=DB_NAME, redis_db=REDIS_DB)
    fresh_database(env["DATABASE_URL"])
    setup_django(env)
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    started = time.monotonic()
    _campaign, rows = seed(total)
    print(f"seeded {total:,} accepted messages in {time.monotonic() - started:.1f} s", flush=True)
    names = [f"{p}{i}" for i in range(options.pairs) for p in ("A", "B0_")] + ["B"]
    phase_rows = {name: rows[k * paced : (k + 1) * paced] for k, name in enumerate(names)}
    rest = rows[len(names) * paced :]
    phase_rows.update(C0=rest[: options.backlog], C=rest[options.backlog :])

    port = _free_port()
    ours, theirs = mp.get_context("fork").Pipe()
    receiver = mp.get_context("fork").Process(
        target=_receiver, args=(port, options.fail_share, 7, theirs), daemon=True
    )
    receiver.start()
    _wait_port(port)
    deliverer = Deliverer({**os.environ, **env, "LOG_LEVEL": "ERROR"})
    url = env["DATABASE_URL"]
    report: dict = {"options": {k: str(v) for k, v in vars(options).items()}}
    load_before = os.getloadavg()
    try:
        from messaging.integrations.models import EventSubscription

        deliverer.start()
        time.sleep(2.0)  # Django start-up of the deliverer, outside the measured phases
        subscription = EventSubscription.objects.create(
            name="bench",
            url=f"http://127.0.0.1:{port}/hook",
            secret="bench-secret",
            event_types=["message.sent", "message.delivered", "message.read"],
            max_batch=options.max_batch,
            active=False,
        )
        # A and B0 interleaved: A without the subscription, B0 with it, every POST accepted.
        # The machine's own drift (other processes, caches) is as large as the effect, so
        # the added CPU is B0 - A of each pair, and the median pair is reported.
        ours.send(("fail_share", 0.0))
        ours.recv()
        pairs = []
        for i in range(options.pairs):
            _settle()
            db0, d0 = postgres_cpu_seconds(url), deliverer.cpu()
            a = apply_paced(phase_rows[f"A{i}"], rate=options.rate)
            a["db_cpu_s"] = postgres_cpu_seconds(url) - db0
            a["deliverer_cpu_s"] = deliverer.cpu() - d0
            a.pop("committed")
            subscription.active = True
            subscription.save()
            _settle()
            b0 = _paced_subscribed(
                phase_rows[f"B0_{i}"], rate=options.rate, url=url, deliverer=deliverer, control=ours
            )
            b0["fail_share"] = 0.0
            subscription.active = False
            subscription.save()
            pairs.append((_added_ms(a, b0), a, b0))
            print(f"pair {i}: events add {pairs[-1][0]:.3f} ms CPU per message", flush=True)
        _median, report["A"], report["B0"] = sorted(pairs, key=lambda p: p[0])[len(pairs) // 2]
        report["pairs_added_ms"] = [p[0] for p in pairs]
        subscription.active = True
        subscription.save()
        # B: the same load with failures; the deliverer keeps up (or not).
        for name, share in [("B", options.fail_share)]:
            ours.send(("fail_share", share))
            ours.recv()
            report[name] = _paced_subscribed(
                phase_rows[name], rate=options.rate, url=url, deliverer=deliverer, control=ours
            )
            report[name]["fail_share"] = share
            print(
                f"{name}: {report[name]['events']:,} events, drained after "
                f"{report[name]['drained_after_s']:.1f} s",
                flush=True,
            )

        # C: capacity from a backlog, without and with failures.
        for name, share in (("C0", 0.0), ("C", options.fail_share)):
            deliverer.stop()
            ours.send(("fail_share", share))
            ours.recv()
            apply_paced(phase_rows[name], rate=0)
            backlog = _pending()
            deliverer.start()
            _wait_drained(600)
            ours.send("dump")
            got = ours.recv()
            # From the first event's arrival to the last: the deliverer's own start-up
            # (Django set-up) is left out.
            times = [at for _m, _s, at in got["arrivals"].values()]
            elapsed = max(times) - min(times) if len(times) > 1 else float("nan")
            report[name] = {
                "fail_share": share,
                "backlog_events": backlog,
                "delivered": len(got["arrivals"]),
                "elapsed_s": elapsed,
                "events_per_s": len(got["arrivals"]) / elapsed,
                "posts": got["posts"],
                "failed_posts": got["failed_posts"],
                "repeats": got["repeats"],
                "order_violations": _order_violations(got["arrivals"]),
            }
            print(f"{name}: {report[name]['events_per_s']:.0f} events/s", flush=True)
    finally:
        deliverer.stop()
        ours.send("stop")
        receiver.join(timeout=10)
    report.update(loadavg_1m_before_after=[load_before[0], os.getloadavg()[0]])
    a, b = report["A"], report["B0"]
    n = a["messages"]
    a_ms = 1000 * (a["cpu_s"] + a["db_cpu_s"]) / n
    added_ms = _added_ms(a, b)
    report["cpu"] = {
        "apply_ms_per_message": a_ms,
        "apply_with_events_ms_per_message": 1000 * (b["cpu_s"] + b["db_cpu_s"]) / n,
        "deliverer_ms_per_message": 1000 * b["deliverer_cpu_until_drained_s"] / n,
        "added_ms_per_message": added_ms,
        "added_share_of_apply": added_ms / a_ms,
        "added_share_of_engine": added_ms / (a_ms + SENDER_MS_PER_MESSAGE),
    }
    print_report(report)
    if options.json:
        options.json.write_text(json.dumps(report, indent=2, default=str))
    ok = (
        report["C0"]["events_per_s"] >= EVENTS_FLOOR
        and report["cpu"]["added_share_of_engine"] <= CPU_FLOOR
        and all(report[k]["events"] == report[k]["expected_events"] for k in ("B0", "B"))
        and all(report[k]["order_violations"] == 0 for k in ("B0", "B", "C0", "C"))
    )
    print("FLOORS MET" if ok else "FLOORS NOT MET")
    sys.exit(0 if ok else 1)


def print_report(r: dict) -> None:
    a, cpu = r["A"], r["cpu"]
    print()
    print(f"load average {r['loadavg_1m_before_after']} (before, after; 2 cores)")
    print(
        f"A (no subscription): {a['messages']:,} messages at {a['achieved_mps']:.0f}/s, "
        f"apply {cpu['apply_ms_per_message']:.3f} ms CPU per message (this process "
        f"{1000 * a['cpu_s'] / a['messages']:.3f} + PostgreSQL "
        f"{1000 * a['db_cpu_s'] / a['messages']:.3f}); idle deliverer {a['deliverer_cpu_s']:.2f} s"
    )
    for name in ("B0", "B"):
        b = r[name]
        lat = b["latency"]
        print(
            f"{name} (subscribed, fail share {b['fail_share']:g}): {b['messages']:,} messages at "
            f"{b['achieved_mps']:.0f}/s → {b['events']:,} of {b['expected_events']:,} events; "
            f"backlog at the end of the load {b['backlog_at_end']:,}; all delivered "
            f"{b['drained_after_s']:.1f} s after its start ({b['events_per_s_whole']:.0f} "
            f"events/s); {b['posts']} POSTs, {b['failed_posts']} failed, {b['repeats']} repeats; "
            f"order violations {b['order_violations']}"
        )
        if lat:
            print(
                f"   latency applied → delivered: p50 {lat['p50_ms']:.0f} ms, p99 "
                f"{lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms"
            )
    for name in ("C0", "C"):
        c = r[name]
        print(
            f"{name} (backlog of {c['backlog_events']:,} events, fail share {c['fail_share']:g}): "
            f"{c['events_per_s']:.0f} events/s ({c['delivered']:,} in {c['elapsed_s']:.1f} s; "
            f"{c['posts']} POSTs, {c['failed_posts']} failed, {c['repeats']} repeats, "
            f"order violations {c['order_violations']})"
        )
    print(
        f"[{'ok ' if r['C0']['events_per_s'] >= EVENTS_FLOOR else 'LOW'}] capacity "
        f"{r['C0']['events_per_s']:.0f} events/s (floor {EVENTS_FLOOR:,.0f})"
    )
    print(
        f"[{'ok ' if cpu['added_share_of_engine'] <= CPU_FLOOR else 'LOW'}] events add "
        f"{cpu['added_ms_per_message']:.3f} ms CPU per message (deliverer "
        f"{cpu['deliverer_ms_per_message']:.3f}) = {cpu['added_share_of_apply']:.1%} of the "
        f"webhook apply, {cpu['added_share_of_engine']:.1%} of apply + sender "
        f"({SENDER_MS_PER_MESSAGE} ms, docs/benchmarks.md) (floor 10 %); the pairs: "
        + ", ".join(f"{ms:.3f}" for ms in r["pairs_added_ms"])
    )


if __name__ == "__main__":
    main()
