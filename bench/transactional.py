"""Benchmark: a transactional message queued while a 1,000 msg/s campaign runs on the same
number — how long until it is sent.

    .venv/bin/python -m bench.transactional [--messages 30000] [--every 0.25]

bench/engine.py's set-up (database `wac_bench_tx`, Redis db 9, one number at 1,000 mps, one
running campaign of --messages rows, the simulator at 100 ± 50 ms latency with its cap = the
rate) and one `run_sender` process through bench/counting_sender.py, which also records the
wall-clock start of every accepted send by callback data. While the campaign sends, this
process queues one transactional message every --every seconds through the service the API
calls (`messaging.integrations.transactional.send_message`; the HTTP part is bench/api.py's), from
3 s after the start until 3 s before the campaign's expected end. Latency = the start of its
accepted send − the moment `send_message` returned. Also counted: campaign rows sent between
a message's queueing and its send (what it waited behind).
Floor (issue 9): every transactional message goes out within 1 s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import engine
from bench.common import fresh_database, services_env

DB_NAME = "wac_bench_tx"
REDIS_DB = 9
RATE = 1000
FLOOR_S = 1.0


def _queue_during(stop: threading.Event, *, every: float, start_after: float, until: float):
    """Queue transactional sends until `stop` or `until` (monotonic); [(row id, queued at)]."""
    from django.db import connection

    from campaigns.models import MessageTemplate, SenderNumber
    from messaging.integrations.transactional import MessageSpec, send_message

    sender = SenderNumber.objects.get(phone_number_id=engine.PHONE_NUMBER_ID)
    template = MessageTemplate.objects.filter(account_id=sender.account_id).first()
    assert template is not None
    rng = random.Random(5)
    queued: list[tuple[int, float]] = []
    started = time.monotonic()
    stop.wait(start_after)
    while not stop.is_set() and time.monotonic() < until:
        spec = MessageSpec(
            to=f"+1650{rng.randrange(2_000_000, 9_999_999):07d}",
            template=template.name,
            language=template.language,
            variables={"1": "123456"},
        )
        row = send_message(sender=sender, message=spec)
        queued.append((row.pk, time.time()))
        stop.wait(max(0.0, started + start_after + len(queued) * every - time.monotonic()))
    connection.close()
    return queued


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30_000, help="campaign rows")
    parser.add_argument("--every", type=float, default=0.25, help="seconds between sends")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    target = RATE * engine.HEADROOM
    expected_s = options.messages / target
    if expected_s < 10 or options.every <= 0:
        parser.error("--messages must give at least 10 s of sending; --every positive")

    env = services_env(db_name=DB_NAME, redis_db=REDIS_DB)
    fresh_database(env["DATABASE_URL"])
    engine._setup_django(env)
    from django.db import connection

    from campaigns.models import SenderNumber
    from messaging.integrations.transactional import stream_for
    from messaging.models import OutboundMessage
    from messaging.simulator.harness import start_simulator

    engine.create_campaign(messages=options.messages, rate=RATE)
    # The stream exists before the sender starts (it would be made by the first send anyway).
    stream = stream_for(SenderNumber.objects.get(phone_number_id=engine.PHONE_NUMBER_ID))
    connection.close()
    load_before = os.getloadavg()
    with (
        start_simulator(latency_ms=100, jitter_ms=50, mps=RATE, seed=7) as sim,
        tempfile.TemporaryDirectory() as workdir,
    ):
        times_path = Path(workdir) / "send_times.json"
        os.environ["WAC_BENCH_SEND_TIMES"] = str(times_path)
        stop = threading.Event()
        result: dict = {}
        t0 = time.monotonic()
        feeder = threading.Thread(
            target=lambda: result.update(
                queued=_queue_during(
                    stop, every=options.every, start_after=3.0, until=t0 + expected_s - 3.0
                )
            )
        )
        feeder.start()
        workers = engine.run_senders(
            sim, processes=1, max_seconds=expected_s * 1.5 + 60, workdir=Path(workdir)
        )
        stop.set()
        feeder.join()
        send_times: dict[str, float] = json.loads(times_path.read_text())
        sim_stats = sim.stats()
    queued = result["queued"]
    latencies = sorted(
        send_times[f"out:{pk}"] - at for pk, at in queued if f"out:{pk}" in send_times
    )
    campaign_sends = sorted(
        t for cb, t in send_times.items() if int(cb[4:]) not in {pk for pk, _ in queued}
    )

    def sent_between(a: float, b: float) -> int:
        import bisect

        return bisect.bisect_left(campaign_sends, b) - bisect.bisect_left(campaign_sends, a)

    behind = sorted(
        sent_between(at, send_times[f"out:{pk}"]) for pk, at in queued if f"out:{pk}" in send_times
    )
    # The sender's own stalls (no send at all, e.g. starved of CPU) delay a transactional row
    # as much as any campaign row: the longest pause between two campaign sends while
    # transactional messages were being queued tells those apart from waiting in line.
    window = [t for t in campaign_sends if queued and queued[0][1] <= t <= queued[-1][1] + 1]
    gaps = sorted((b - a for a, b in itertools.pairwise(window)), reverse=True)
    rows = dict(OutboundMessage.objects.filter(campaign_id=stream.pk).values_list("pk", "status"))
    # Every send (campaign and transactional): the cap holds for both together.
    figures = engine.rate_figures(
        {i: n for w in workers for i, n in w.get("histogram", [])}, target=target
    )
    report = {
        "messages": options.messages,
        "target": target,
        "loadavg_1m_before_after": [load_before[0], os.getloadavg()[0]],
        "returncodes": [w["returncode"] for w in workers],
        "queued": len(queued),
        "sent": len(latencies),
        "stream_rows_by_status": {str(s): list(rows.values()).count(s) for s in set(rows.values())},
        "latency_s": {
            "p50": latencies[len(latencies) // 2] if latencies else math.nan,
            "p90": latencies[int(len(latencies) * 0.9)] if latencies else math.nan,
            "p99": latencies[int(len(latencies) * 0.99)] if latencies else math.nan,
            "max": latencies[-1] if latencies else math.nan,
        },
        "campaign_rows_sent_meanwhile": {
            "p50": behind[len(behind) // 2] if behind else 0,
            "max": behind[-1] if behind else 0,
        },
        "campaign_send_gaps_s": gaps[:3],
        "campaign_rate": figures.get("steady_rate"),
        "busiest_1s": figures.get("busiest_1s"),
        "simulator": {"accepted": sim_stats["accepted"], "errors": sim_stats["errors"]},
    }
    lat = report["latency_s"]
    print()
    print(
        f"load average {report['loadavg_1m_before_after']} (before, after; 2 cores); campaign "
        f"{options.messages:,} rows at {report['campaign_rate']:.0f}/s (target {target:g}, "
        f"busiest second {report['busiest_1s']} sends); "
        f"simulator {sim_stats['accepted']:,} accepted, errors {sim_stats['errors'] or 'none'}"
    )
    print(
        f"transactional: {len(queued)} queued, {len(latencies)} sent; queued → sent p50 "
        f"{1000 * lat['p50']:.0f} ms, p90 {1000 * lat['p90']:.0f} ms, p99 "
        f"{1000 * lat['p99']:.0f} ms, max {1000 * lat['max']:.0f} ms; campaign rows sent "
        f"meanwhile p50 {report['campaign_rows_sent_meanwhile']['p50']}, "
        f"max {report['campaign_rows_sent_meanwhile']['max']}; the campaign's longest pauses "
        f"between two sends meanwhile: {', '.join(f'{1000 * g:.0f}' for g in gaps[:3])} ms"
    )
    ok = bool(latencies) and len(latencies) == len(queued) and lat["max"] < FLOOR_S
    print(f"[{'ok ' if ok else 'LOW'}] every transactional message sent within {FLOOR_S:g} s")
    if options.json:
        options.json.write_text(json.dumps(report, indent=2, default=str))
    print("FLOORS MET" if ok else "FLOORS NOT MET")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
