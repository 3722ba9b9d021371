"""The engine side by side with a bare urllib3 loop, against a strict fake of the Graph API.

    .venv/bin/python -m bench.side_by_side --rate 200 [--messages 12000] [--processes 1]
        [--latency-ms 100 --jitter-ms 50] [--error-rate 131000=0.02] [--json PATH]

The simulator is configured like issue 11's fake: a sliding one-second cap per number (= the
rate) checked on arrival, 100 ± 50 ms latency, 2 % of sends answered 131000. In one run and
against the same simulator, first bench/bare_urllib3.py sends N messages (retrying transient
answers at once), then P `run_sender` processes (bench/counting_sender.py) send a campaign of
the same N messages. Both pace at the same target (rate × SENDER_RATE_HEADROOM). Figures, each
as a ratio: mean rate over the whole campaign (first accepted send to last) ÷ target, 130429
answers ÷ sends, the simulator's busiest second ÷ cap, wall time engine ÷ bare, CPU per
accepted message engine ÷ bare. Database `wac_bench` (dropped first), Redis db 6; loopback only,
every process has a deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import engine
from bench.common import ROOT, fresh_database, services_env

BARE_PHONE_NUMBER_ID = "106500000099"


def _span(histogram: dict[int, int]) -> float:
    return (max(histogram) - min(histogram) + 1) * engine.BUCKET_S if histogram else 0.0


def run_bare(sim, *, messages: int, rate: float, threads: int, max_seconds: float) -> dict:
    env = {**os.environ, "WHATSAPP_API_BASE_URL": sim.base_url, "WHATSAPP_ACCESS_TOKEN": sim.token}
    command = [
        sys.executable,
        "-m",
        "bench.bare_urllib3",
        f"--messages={messages}",
        f"--rate={rate}",
        f"--threads={threads}",
        f"--phone-number-id={BARE_PHONE_NUMBER_ID}",
        f"--max-seconds={max_seconds}",
    ]
    out = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=max_seconds + 60,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def side(*, histogram: dict[int, int], accepted: int, stats: dict, number: str, cpu_s: float):
    span = _span(histogram)
    sends = stats["send_requests"]
    first = min(histogram, default=0)
    per_second: dict[int, int] = {}
    for index, n in histogram.items():
        second = int((index - first) * engine.BUCKET_S)
        per_second[second] = per_second.get(second, 0) + n
    return {
        "per_second": [per_second.get(i, 0) for i in range(max(per_second, default=-1) + 1)],
        "accepted": accepted,
        "wall_s": span,
        "mean_rate": accepted / span if span else 0.0,
        "throttled": stats["errors"].get("130429", 0),
        "throttled_share": stats["errors"].get("130429", 0) / max(1, sends),
        "errors": stats["errors"],
        "busiest_1s": stats["max_accepted_1s_by_number"].get(number, 0),
        "cpu_ms_per_message": cpu_s * 1000 / max(1, accepted),
        "exactly_once": stats["callbacks"]["exactly_once"],
        "more_than_once": stats["callbacks"]["more_than_once"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=200, help="the number's cap, msg/s")
    parser.add_argument("--messages", type=int, default=12_000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--jitter-ms", type=float, default=50.0)
    parser.add_argument("--error-rate", action="append", default=None, metavar="CODE=F")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    error_rates = {}
    for spec in args.error_rate or ["131000=0.02"]:
        code, _, fraction = spec.partition("=")
        error_rates[code] = float(fraction)

    env = services_env(db_name=engine.DB_NAME, redis_db=engine.REDIS_DB)
    fresh_database(env["DATABASE_URL"])
    engine._setup_django(env)
    from django.conf import settings

    from messaging.simulator.harness import start_simulator

    target = args.rate * settings.SENDER_RATE_HEADROOM
    max_seconds = args.messages / target * 1.5 + 60
    campaign_id = engine.create_campaign(messages=args.messages, rate=args.rate)
    p95 = (args.latency_ms + args.jitter_ms) / 1000
    threads = engine.sender_threads(args.rate, p95_latency_s=p95)
    sim_options = {
        "latency_ms": args.latency_ms,
        "jitter_ms": args.jitter_ms,
        "mps": args.rate,
        "error_rates": error_rates,
        "seed": 7,
    }
    with start_simulator(**sim_options) as sim, tempfile.TemporaryDirectory() as workdir:
        load = [round(os.getloadavg()[0], 2)]
        print(f"bare urllib3 loop: {args.messages:,} sends, {threads} threads …", flush=True)
        raw = run_bare(
            sim, messages=args.messages, rate=target, threads=threads, max_seconds=max_seconds
        )
        bare = side(
            histogram=dict(raw["histogram"]),
            accepted=raw["outcomes"].get("accepted", 0),
            stats=sim.stats(),
            number=BARE_PHONE_NUMBER_ID,
            cpu_s=raw["cpu_s"],
        )
        sim.reset()
        load.append(round(os.getloadavg()[0], 2))
        print(f"engine: {args.messages:,} messages, {args.processes} process(es) …", flush=True)
        workers = engine.run_senders(
            sim, processes=args.processes, max_seconds=max_seconds, workdir=Path(workdir)
        )
        load.append(round(os.getloadavg()[0], 2))
        histogram: dict[int, int] = {}
        for worker in workers:
            for index, n in worker.get("histogram", []):
                histogram[index] = histogram.get(index, 0) + n
        stats = sim.stats()
        ours = side(
            histogram=histogram,
            accepted=stats["accepted"],
            stats=stats,
            number=engine.PHONE_NUMBER_ID,
            cpu_s=sum(w.get("run_cpu_s", 0.0) for w in workers),
        )
    report = {
        "rate": args.rate,
        "target": target,
        "messages": args.messages,
        "processes": args.processes,
        "simulator": sim_options,
        "loadavg_1m_start_mid_end": load,
        "bare": bare,
        "engine": ours,
        "queue": engine.queue_outcome(campaign_id),
        "returncodes": [w["returncode"] for w in workers],
        "ratios": {
            "engine_mean_rate_to_target": ours["mean_rate"] / target,
            "bare_mean_rate_to_target": bare["mean_rate"] / target,
            "engine_busiest_to_cap": ours["busiest_1s"] / args.rate,
            "bare_busiest_to_cap": bare["busiest_1s"] / args.rate,
            "wall_engine_to_bare": ours["wall_s"] / bare["wall_s"] if bare["wall_s"] else None,
            "cpu_engine_to_bare": ours["cpu_ms_per_message"] / bare["cpu_ms_per_message"]
            if bare["cpu_ms_per_message"]
            else None,
        },
    }
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


def _print(r: dict) -> None:
    ratios = r["ratios"]
    print()
    print(
        f"cap {r['rate']}/s, target {r['target']:g}/s, {r['messages']:,} messages, "
        f"{r['processes']} engine process(es), simulator {r['simulator']}, "
        f"load average {r['loadavg_1m_start_mid_end']} (2 cores); exit codes {r['returncodes']}"
    )
    for name in ("bare", "engine"):
        s = r[name]
        print(
            f"  {name:6}: {s['accepted']:,} accepted in {s['wall_s']:.1f} s = "
            f"{s['mean_rate']:.1f}/s; 130429 {s['throttled']} ({s['throttled_share']:.4%}); "
            f"busiest second {s['busiest_1s']}; {s['cpu_ms_per_message']:.3f} ms CPU/message; "
            f"errors {s['errors']}; callbacks once {s['exactly_once']:,}, "
            f"more than once {s['more_than_once']}"
        )
    print(f"  engine queue: {r['queue']}")
    for name in ("bare", "engine"):
        print(f"  {name} per second: {r[name]['per_second']}")
    for key, value in ratios.items():
        print(f"  {key}: {value:.3f}" if value is not None else f"  {key}: n/a")


if __name__ == "__main__":
    main()
