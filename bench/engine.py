"""Benchmark of the sending engine: rate held, busiest second, CPU, SQL and memory per message.

    .venv/bin/python -m bench.engine [--rate 80|1000] [--messages N] [--processes P] [--quick]

One campaign of N messages (three templates, one body parameter each) on one sender number
of `--rate` mps is sent by P `run_sender` processes (through bench/counting_sender.py, which
counts SQL statements, Redis commands and accepted sends) to the simulator (100 ± 50 ms
latency, its throughput cap = the rate). Before that, bench/bare_http.py sends up to 10,000
of the same payloads through the same client and thread-pool size with no database: the CPU
baseline. Runs on the PostgreSQL and Redis of scripts/services.sh, in database `wac_bench`
(dropped and created afresh) and Redis db 6 (flushed). Everything talks to 127.0.0.1 only and
every process has a deadline.

Floors (docs/benchmarks.md, "Sending engine"): achieved ≥ 0.97 × target and busiest second
≤ 1.05 × target (target = rate × SENDER_RATE_HEADROOM); sender CPU per message ≤ 2 × the bare
loop; ≤ 0.05 SQL statements per message; peak RSS + < 30 MB from 10,000 to 1,000,000 messages.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, fresh_database, services_env, setup_django

DB_NAME = "wac_bench"
REDIS_DB = 6
PHONE_NUMBER_ID = "106500000001"
BARE_PHONE_NUMBER_ID = "106500000099"
BUCKET_S = 0.01  # bench/counting_sender.py's histogram step
HEADROOM = 0.9  # settings.SENDER_RATE_HEADROOM, checked against settings at run time
BARE_MAX_MESSAGES = 10_000


# --- environment ------------------------------------------------------------------------------
def _setup_django(env: dict[str, str]) -> None:
    setup_django(env)
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()  # the number's bucket starts empty


# --- data ---------------------------------------------------------------------------------------
def create_campaign(*, messages: int, rate: int, policies: bool = False) -> int:
    """A running campaign of `messages` queue rows on one number, written by SQL in bulk.

    With `policies`, every rule of the send policy is active on it (bench/policy_load.py)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from campaigns.models import (
        Campaign,
        CampaignTemplate,
        Contact,
        MessageTemplate,
        SenderNumber,
        WhatsAppAccount,
    )
    from messaging.models import OutboundMessage

    account = WhatsAppAccount.objects.create(waba_id="100000000000001", name="Bench")
    if policies:
        from bench.policy_load import PHONE_PREFIX, portfolio_for

        account.portfolio = portfolio_for(messages)
        account.save()
    sender = SenderNumber.objects.create(
        account=account,
        phone_number_id=PHONE_NUMBER_ID,
        display_number="+15550000001",
        rate_mps=rate,
    )
    templates = [
        MessageTemplate.objects.create(
            account=account,
            name=name,
            language="en_US",
            components=[{"type": "BODY", "text": "Hi {{1}}"}],
            category="MARKETING" if policies else "UTILITY",
        )
        for name in ("bench_a", "bench_b", "bench_c")
    ]
    campaign = Campaign.objects.create(
        name="engine bench",
        sender=sender,
        status=Campaign.Status.RUNNING,
        total=messages,
        started_at=timezone.now(),
    )
    for position, template in enumerate(templates):
        CampaignTemplate.objects.create(campaign=campaign, template=template, position=position)
    t = [template.pk for template in templates]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Contact._meta.db_table} (phone, name, attributes, wa_id, created_at)
            SELECT %s || lpad((2000000 + g)::text, 7, '0'), 'Contact ' || g, '{{}}', '',
                   now()
            FROM generate_series(0, %s - 1) AS g
            """,
            [PHONE_PREFIX if policies else "+1415", messages],
        )
        cursor.execute(
            f"""
            INSERT INTO {OutboundMessage._meta.db_table} (
                campaign_id, contact_id, template_id, sender_id, phone, parameters, priority,
                status, attempts, next_attempt_at, claimed_by, error_category, error_detail)
            SELECT %s, c.id, (ARRAY[%s, %s, %s]::bigint[])[1 + (c.id %% 3)], %s, c.phone,
                   jsonb_build_array(jsonb_build_object('type', 'body', 'parameters',
                       jsonb_build_array(jsonb_build_object('type', 'text', 'text', c.name)))),
                   0, 0, 0, now(), '', '', ''
            FROM {Contact._meta.db_table} AS c ORDER BY c.id
            """,
            [campaign.pk, *t, sender.pk],
        )
    if policies:
        from bench.policy_load import activate

        activate(campaign)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {OutboundMessage._meta.db_table}")
        cursor.execute(f"VACUUM ANALYZE {Campaign._meta.db_table}")
    connection.close()
    return campaign.pk


def _transactions() -> int:
    """Committed + rolled-back transactions of the bench database so far (server side)."""
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            [DB_NAME],
        ).fetchone()
    return int(row[0])


# --- processes ----------------------------------------------------------------------------------
def _wait(pids: list[int], deadline: float) -> dict[int, tuple[int, object]]:
    """Reap each child with os.wait4 (its own rusage); kill what outlives the deadline."""
    done: dict[int, tuple[int, object]] = {}
    killed = False
    while len(done) < len(pids):
        for pid in pids:
            if pid in done:
                continue
            got, status, usage = os.wait4(pid, os.WNOHANG)
            if got:
                done[pid] = (status, usage)
        if time.monotonic() > deadline and not killed:
            for pid in pids:
                if pid not in done:
                    os.kill(pid, signal.SIGTERM)
            killed = True
            deadline += 30
        elif time.monotonic() > deadline:
            for pid in pids:
                if pid not in done:
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    return done


def run_bare(sim, *, messages: int, rate: float, threads: int) -> dict:
    env = {
        **os.environ,
        "WHATSAPP_API_BASE_URL": sim.base_url,
        "WHATSAPP_ACCESS_TOKEN": sim.token,
    }
    command = [
        sys.executable,
        "-m",
        "bench.bare_http",
        f"--messages={messages}",
        f"--rate={rate}",
        f"--threads={threads}",
        f"--phone-number-id={BARE_PHONE_NUMBER_ID}",
    ]
    timeout = messages / rate * 2 + 60
    out = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_senders(
    sim, *, processes: int, max_seconds: float, workdir: Path, t0: float | None = None
) -> list[dict]:
    """Run the counting senders to the end; `t0` (monotonic) is where their histograms start."""
    t0 = time.monotonic() if t0 is None else t0
    env = {
        **os.environ,
        "WHATSAPP_API_BASE_URL": sim.base_url,
        "WHATSAPP_ACCESS_TOKEN": sim.token,
        "WAC_BENCH_T0": repr(t0),
        "LOG_LEVEL": "WARNING",
    }
    children = []
    for i in range(processes):
        out = workdir / f"worker{i}.json"
        command = [
            sys.executable,
            "-m",
            "bench.counting_sender",
            "--until-idle",
            "--max-seconds",
            str(max_seconds),
            "--worker-id",
            f"bench{i}",
        ]
        child = subprocess.Popen(command, cwd=ROOT, env={**env, "WAC_BENCH_OUT": str(out)})
        children.append((child, out))
    reaped = _wait([c.pid for c, _ in children], time.monotonic() + max_seconds + 30)
    results = []
    for child, out in children:
        status, usage = reaped[child.pid]
        child.returncode = os.waitstatus_to_exitcode(status)
        result = json.loads(out.read_text()) if out.exists() else {}
        result["returncode"] = child.returncode
        result["wait4_cpu_s"] = usage.ru_utime + usage.ru_stime
        result["wait4_maxrss_kb"] = usage.ru_maxrss
        results.append(result)
    return results


# --- figures ------------------------------------------------------------------------------------
def rate_figures(histogram: dict[int, int], *, target: float) -> dict:
    """Steady rate and busiest 1 s window from the merged 10 ms histogram of send starts."""
    if not histogram:
        return {}
    first, last = min(histogram), max(histogram)
    per_second = round(1 / BUCKET_S)
    counts = [histogram.get(i, 0) for i in range(first, last + 1)]
    # Steady window: everything between the first and the last full second of sending.
    inner = counts[per_second:-per_second] if len(counts) > 3 * per_second else counts
    steady_s = len(inner) * BUCKET_S
    steady = sum(inner) / steady_s if steady_s else 0.0
    seconds = [sum(counts[i : i + per_second]) for i in range(0, len(counts), per_second)]
    whole = seconds[1:-1] if len(seconds) > 2 else seconds
    window = sum(counts[:per_second])
    busiest = window
    for i in range(per_second, len(counts)):
        window += counts[i] - counts[i - per_second]
        busiest = max(busiest, window)
    tenth = round(0.1 / BUCKET_S)
    busiest_100ms = max(
        sum(counts[i : i + tenth]) for i in range(0, max(1, len(counts) - tenth + 1))
    )
    return {
        "span_s": (last - first + 1) * BUCKET_S,
        "steady_rate": steady,
        "steady_window_s": steady_s,
        "median_second": statistics.median(whole),
        "busiest_1s": busiest,
        "busiest_100ms": busiest_100ms,
        "achieved_ratio": steady / target,
        "median_ratio": statistics.median(whole) / target,
        "busiest_ratio": busiest / target,
        "per_second": seconds,
        "per_100ms": [sum(counts[i : i + tenth]) for i in range(0, len(counts), tenth)],
    }


def queue_outcome(campaign_id: int) -> dict:
    from django.db import connection
    from django.db.models import Count

    from campaigns.models import Campaign
    from messaging.models import OutboundMessage

    by_status = dict(
        OutboundMessage.objects.filter(campaign_id=campaign_id)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    campaign = Campaign.objects.get(pk=campaign_id)
    connection.close()
    return {"by_status": by_status, "campaign_status": campaign.status, "sent": campaign.sent}


def sender_threads(rate: int, *, p95_latency_s: float = 0.145) -> int:
    """The in-flight cap NumberSender settles at for this rate and latency (same formula)."""
    from django.conf import settings

    from messaging import sender

    target = rate * settings.SENDER_RATE_HEADROOM
    wanted = math.ceil(target * p95_latency_s * sender.IN_FLIGHT_MARGIN) + sender.IN_FLIGHT_SPARE
    return max(sender.IN_FLIGHT_SPARE, min(settings.SENDER_MAX_IN_FLIGHT, wanted))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="the number's mps (80 or 1000)")
    parser.add_argument("--messages", type=int, help="default: 10,000 (3,000 at rate < 500)")
    parser.add_argument("--processes", type=int, default=1, help="run_sender processes")
    parser.add_argument("--quick", action="store_true", help="a short run (about 10 s)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument(
        "--policies",
        action="store_true",
        help="every send-policy rule active (suppression, validity, window, cap, budget), "
        "and staff opting numbers out while it runs",
    )
    args = parser.parse_args()
    if args.rate < 1 or args.processes < 1 or (args.messages is not None and args.messages < 1):
        parser.error("--rate, --messages and --processes must be positive")
    target = args.rate * HEADROOM
    messages = args.messages or (10_000 if args.rate >= 500 else 3_000)
    if args.quick:
        messages = min(messages, math.ceil(target * 8))
    max_seconds = messages / target * 1.3 + 60
    if max_seconds > 3900:
        parser.error(f"{messages} messages at {target:.0f}/s would take longer than an hour")

    env = services_env(db_name=DB_NAME, redis_db=REDIS_DB)
    fresh_database(env["DATABASE_URL"])
    _setup_django(env)
    from django.conf import settings

    if settings.SENDER_RATE_HEADROOM != HEADROOM:
        target = args.rate * settings.SENDER_RATE_HEADROOM
    from messaging.simulator.harness import start_simulator

    started = time.monotonic()
    campaign_id = create_campaign(messages=messages, rate=args.rate, policies=args.policies)
    print(f"created {messages:,} queue rows in {time.monotonic() - started:.1f} s", flush=True)

    threads = sender_threads(args.rate)
    bare_messages = min(messages, BARE_MAX_MESSAGES)
    with (
        start_simulator(latency_ms=100, jitter_ms=50, mps=args.rate, seed=7) as sim,
        tempfile.TemporaryDirectory() as workdir,
    ):
        print(f"bare HTTP loop: {bare_messages:,} sends, {threads} threads …", flush=True)
        # The bare loop is not what is paced here: lift the cap for its own number so a
        # catch-up after a stall on this shared machine is not answered with 130429.
        sim.configure(mps_overrides={BARE_PHONE_NUMBER_ID: 1_000_000})
        bare = run_bare(sim, messages=bare_messages, rate=target, threads=threads)
        sim.reset(config=True)
        load_before = os.getloadavg()
        xact_before = _transactions()
        print(
            f"sender: {messages:,} messages, {args.processes} process(es), target {target:g}/s …",
            flush=True,
        )
        opt_outs = None
        if args.policies:
            from bench.policy_load import OptOutsDuringRun

            opt_outs = OptOutsDuringRun(campaign_id, deadline=time.monotonic() + max_seconds)
            opt_outs.start()
        workers = run_senders(
            sim, processes=args.processes, max_seconds=max_seconds, workdir=Path(workdir)
        )
        if opt_outs is not None:
            opt_outs.stop()
        xact = _transactions() - xact_before - 1  # minus the reading connection's own
        load_after = os.getloadavg()
        sim_stats = sim.stats()

    histogram: dict[int, int] = {}
    for worker in workers:
        for index, n in worker.get("histogram", []):
            histogram[index] = histogram.get(index, 0) + n
    rates = rate_figures(histogram, target=target)
    accepted = sim_stats["accepted"]
    sender_cpu = sum(w.get("run_cpu_s", 0.0) for w in workers)
    process_cpu = sum(w["wait4_cpu_s"] for w in workers)
    bare_accepted = bare["outcomes"].get("accepted", 0)
    bare_cpu_ms = bare["cpu_s"] * 1000 / max(1, bare_accepted)
    cpu_ms = sender_cpu * 1000 / max(1, accepted)
    statements = sum(w.get("statements", 0) for w in workers)
    commits = sum(w.get("commits", 0) for w in workers)
    kinds: dict[str, int] = {}
    for worker in workers:
        for kind, n in worker.get("statement_kinds", {}).items():
            kinds[kind] = kinds.get(kind, 0) + n
    peak_rss_mb = max(w["wait4_maxrss_kb"] for w in workers) / 1024
    queue = queue_outcome(campaign_id)
    report = {
        "rate": args.rate,
        "target": target,
        "messages": messages,
        "processes": args.processes,
        "threads_per_process": threads,
        "returncodes": [w["returncode"] for w in workers],
        "loadavg_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "simulator": {
            "accepted": accepted,
            "errors": sim_stats["errors"],
            "max_accepted_1s": sim_stats["max_accepted_1s_by_number"].get(PHONE_NUMBER_ID),
            "exactly_once": sim_stats["callbacks"]["exactly_once"],
            "more_than_once": sim_stats["callbacks"]["more_than_once"],
        },
        "rates": rates,
        "cpu": {
            "sender_ms_per_message": cpu_ms,
            "sender_process_ms_per_message": process_cpu * 1000 / max(1, accepted),
            "bare_ms_per_message": bare_cpu_ms,
            "ratio": cpu_ms / bare_cpu_ms if bare_cpu_ms else None,
            "bare": bare,
        },
        "sql": {
            "statements": statements,
            "per_message": statements / max(1, accepted),
            "commits": commits,
            "server_transactions": xact,
            "by_kind": kinds,
        },
        "redis_commands_per_message": sum(w.get("redis", 0) for w in workers) / max(1, accepted),
        "peak_rss_mb": peak_rss_mb,
        "skipped_slots": sum(
            run["skipped_slots"] for w in workers for run in w.get("sender_runs", [])
        ),
        "run_wall_s": max(w.get("run_wall_s", 0.0) for w in workers),
        "queue": queue,
    }
    if opt_outs is not None:
        report["policies"] = opt_outs.report()
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


def _mark(ok: bool) -> str:
    return "ok " if ok else "LOW"


def print_report(r: dict) -> None:
    rates, cpu, sql, sim = r["rates"], r["cpu"], r["sql"], r["simulator"]
    target = r["target"]
    print()
    print(
        f"rate {r['rate']} mps, target {target:g}/s, {r['messages']:,} messages, "
        f"{r['processes']} process(es) × {r['threads_per_process']} HTTP threads; "
        f"exit codes {r['returncodes']}; load average {r['loadavg_1m_before_after']} "
        f"(before, after; 2 cores)"
    )
    print(
        f"simulator: {sim['accepted']:,} accepted, errors {sim['errors'] or 'none'}, "
        f"callbacks exactly once {sim['exactly_once']:,}, more than once {sim['more_than_once']}"
    )
    print(f"queue: {r['queue']}")
    if rates:
        ok = rates["achieved_ratio"] >= 0.97
        print(
            f"[{_mark(ok)}] achieved {rates['steady_rate']:.1f}/s = {rates['achieved_ratio']:.3f}"
            f" × target (sends over {rates['steady_window_s']:.1f} s, first and last second "
            f"left out; median second {rates['median_second']:g} = "
            f"{rates['median_ratio']:.3f} × target; whole span {rates['span_s']:.1f} s)"
        )
        ok = rates["busiest_ratio"] <= 1.05
        print(
            f"[{_mark(ok)}] busiest 1 s window {rates['busiest_1s']} = "
            f"{rates['busiest_ratio']:.3f} × target (10 ms steps; simulator's sliding max "
            f"{sim['max_accepted_1s']}; busiest 100 ms {rates['busiest_100ms']})"
        )
    ratio = cpu["ratio"] or float("inf")
    print(
        f"[{_mark(ratio <= 2)}] CPU {cpu['sender_ms_per_message']:.3f} ms/message "
        f"(whole processes incl. start-up {cpu['sender_process_ms_per_message']:.3f}) vs bare "
        f"loop {cpu['bare_ms_per_message']:.3f} ms/message "
        f"({cpu['bare']['outcomes']}): ratio {ratio:.2f}"
    )
    print(
        f"[{_mark(sql['per_message'] <= 0.05)}] SQL {sql['statements']:,} statements = "
        f"{sql['per_message']:.4f}/message (+ {sql['commits']} commits; server saw "
        f"{sql['server_transactions']:,} transactions)"
    )
    for kind, n in sorted(sql["by_kind"].items(), key=lambda kv: -kv[1])[:8]:
        print(f"      {n:7,}  {kind}")
    print(f"      Redis commands/message {r['redis_commands_per_message']:.4f}")
    print(
        f"      pacer slots skipped (late by > LATE_SLOT, or no free connection): "
        f"{r['skipped_slots']:,}"
    )
    print(
        f"      peak RSS of a sender process {r['peak_rss_mb']:.1f} MB; run {r['run_wall_s']:.1f} s"
    )
    if "policies" in r:
        from bench.policy_load import print_report as print_policy_report

        print_policy_report(r["policies"])


if __name__ == "__main__":
    main()
