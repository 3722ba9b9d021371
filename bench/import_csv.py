"""Benchmark of campaign creation from a CSV: seconds, rows/s and peak memory.

    .venv/bin/python -m bench.import_csv [--rows 1000000] [--runs 1] [--keep]

Runs against the PostgreSQL of scripts/services.sh, in a database of its own
(`wac_bench_import`, dropped and created afresh on each start, so other databases are never
touched). The CSV (phone, name, code, city) mixes number formats and holds about 3 % invalid
and 2 % duplicate numbers; three templates (two positional, one NAMED) share the contacts.
The second and later --runs import the same file again, so every contact already exists (the
update path). Floor: 1,000,000 rows into a ready campaign in 60 s with a peak RSS under 300 MB.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import tempfile
import time
from pathlib import Path

from bench.common import fresh_database, services_env, setup_django

DB_NAME = "wac_bench_import"
FLOOR_SECONDS_PER_MILLION = 60.0
FLOOR_RSS_MB = 300.0


def _line(i: int) -> int:
    """The local part of row i's number: distinct per row, in scrambled order as in a real
    list (sorted numbers would turn every index insert into an append). 7,919 is prime to
    10^6, so each block of a million rows is a permutation."""
    return 2_000_000 + (i * 7_919 + 13) % 1_000_000 + (i // 1_000_000) * 1_000_000


def write_csv(path: Path, rows: int, *, seed: int = 7) -> None:
    """`rows` data rows: ~3 % invalid, ~2 % repeats of an earlier number, mixed formats."""
    rng = random.Random(seed)
    cities = ["Lisbon", "São Paulo", "Chicago", "Pune", "Berlin", "Austin"]
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["phone", "name", "code", "city"])
        for i in range(rows):
            draw = rng.random()
            line = _line(i)
            if draw < 0.03:
                phone = rng.choice(["12345", "n/a", "+999 1234", "415-555"])
            elif draw < 0.05 and i:
                phone = f"+1 415 {_line(rng.randrange(i)):07d}"  # an earlier row's number
            elif draw < 0.35:
                phone = f"(415) {line // 10000:03d}-{line % 10000:04d}"
            elif draw < 0.45:
                phone = f"001415{line:07d}"
            else:
                phone = f"+1 415 {line:07d}"
            out.writerow([phone, f"Name {i}", f"C{i:07d}", cities[i % len(cities)]])


def _templates():
    from campaigns.models import MessageTemplate, SenderNumber, WhatsAppAccount

    account = WhatsAppAccount.objects.create(waba_id="bench-waba")
    sender = SenderNumber.objects.create(
        account=account, phone_number_id="bench-pnid", display_number="+15550001111"
    )
    bodies = [
        ("bench_a", "POSITIONAL", "Hi {{1}}, your code is {{2}}"),
        ("bench_b", "POSITIONAL", "{{1}} in {{3}}: use {{2}} today"),
        ("bench_c", "NAMED", "Hello {{name}}, news from {{city}}"),
    ]
    templates = [
        MessageTemplate.objects.create(
            account=account,
            name=name,
            language="en_US",
            parameter_format=fmt,
            components=[{"type": "BODY", "text": body}],
        )
        for name, fmt, body in bodies
    ]
    return sender, templates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1, help="imports of the same file")
    parser.add_argument("--keep", action="store_true", help="keep the generated CSV")
    args = parser.parse_args(argv)

    env = services_env(db_name=DB_NAME)
    fresh_database(env["DATABASE_URL"])
    setup_django({"DATABASE_URL": env["DATABASE_URL"]})
    from messaging.campaign_import import create_campaign_from_csv

    sender, templates = _templates()
    path = Path(tempfile.mkstemp(prefix="wac-bench-", suffix=".csv")[1])
    try:
        began = time.monotonic()
        write_csv(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        print(
            f"csv: {args.rows:,} rows, {size_mb:.1f} MB, written in {time.monotonic() - began:.1f}s"
        )
        for run in range(1, args.runs + 1):
            began = time.monotonic()
            result = create_campaign_from_csv(
                name=f"bench {run}",
                csv_file=path,
                sender=sender,
                templates=[(t, 1) for t in templates],
                default_region="US",
            )
            elapsed = time.monotonic() - began
            load = os.getloadavg()[0]
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            floor = FLOOR_SECONDS_PER_MILLION * args.rows / 1_000_000
            print(
                f"run {run}: {elapsed:.1f}s, {args.rows / elapsed:,.0f} rows/s, "
                f"peak RSS {peak_mb:.0f} MB | queued {result.queued:,}, "
                f"rejected {result.rejected:,}, duplicates {result.duplicates:,}, "
                f"suppressed {result.suppressed:,} | time {elapsed / floor:.2f}x of the "
                f"{floor:.0f}s floor, memory {peak_mb / FLOOR_RSS_MB:.2f}x of "
                f"{FLOOR_RSS_MB:.0f} MB | load average {load:.1f} (the VM is shared)"
            )
    finally:
        if args.keep:
            print(f"kept {path}")
        else:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
