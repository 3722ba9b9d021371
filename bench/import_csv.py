"""Benchmark of campaign creation from a CSV: seconds, rows/s and peak memory.

    .venv/bin/python -m bench.import_csv [--rows 1000000] [--runs 1] [--keep]

Runs against the PostgreSQL of scripts/services.sh, in a database of its own
(`wac_bench_import`, dropped and created afresh on each start, so other databases are never
touched). The CSV (phone, name, code, city) mixes number formats and holds about 3 % invalid
and 2 % duplicate numbers; three templates (two positional, one NAMED) share the contacts.
The second and later --runs import the same file again, so every contact already exists (the
update path). Floors: 1,000,000 rows into a ready campaign in 60 s and in at most 40 × a raw
COPY of the same file measured in the same run (goal 20 ×), with a peak RSS under 300 MB.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import fresh_database, services_env, setup_django

DB_NAME = "wac_bench_import"
FLOOR_SECONDS_PER_MILLION = 60.0
FLOOR_RSS_MB = 300.0
FLOOR_COPY_RATIO = 40.0
GOAL_COPY_RATIO = 20.0


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


def _backend_cpu() -> float:
    """CPU seconds used so far by this connection's PostgreSQL backend (same machine)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Timing:
    wall: float
    cpu_python: float  # this process, every thread (and worker processes, once waited for)
    cpu_postgres: float  # the backend of this connection

    @classmethod
    def measure(cls, work: Callable[[], object]) -> tuple[Timing, object]:
        before = (time.monotonic(), _own_cpu(), _backend_cpu())
        result = work()
        after = (time.monotonic(), _own_cpu(), _backend_cpu())
        return cls(*(b - a for a, b in zip(before, after, strict=True))), result


def _own_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def raw_copy(path: Path) -> Timing:
    """The plainest load of the same file: COPY … (FORMAT csv) into a table of text columns
    without indexes, streamed in 1 MB blocks, commit included. The import's floor is a ratio
    to this, so both are measured in the same run on the same machine."""
    from django.db import connection, transaction

    with path.open("rb") as f:
        header = f.readline().decode().strip().split(",")
    columns = ", ".join(f'"{c}" text' for c in header)
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_raw_copy")
        cursor.execute(f"CREATE TABLE bench_raw_copy ({columns})")

    def load() -> None:
        with transaction.atomic(), connection.cursor() as cursor, path.open("rb") as f:
            sql = "COPY bench_raw_copy FROM STDIN (FORMAT csv, HEADER true)"
            with cursor.cursor.copy(sql) as copy:
                while block := f.read(1 << 20):
                    copy.write(block)

    timing, _ = Timing.measure(load)
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_raw_copy")
    return timing


def _median_copy(path: Path, times: int = 3) -> Timing:
    runs = sorted((raw_copy(path) for _ in range(times)), key=lambda t: t.wall)
    return runs[len(runs) // 2]


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
            copy_before = _median_copy(path)
            timing, result = Timing.measure(
                lambda run=run: create_campaign_from_csv(
                    name=f"bench {run}",
                    csv_file=path,
                    sender=sender,
                    templates=[(t, 1) for t in templates],
                    default_region="US",
                )
            )
            copy_after = _median_copy(path)
            load = os.getloadavg()[0]
            _report(run, args.rows, timing, result, copy_before, copy_after, load)
    finally:
        if args.keep:
            print(f"kept {path}")
        else:
            path.unlink(missing_ok=True)


def _report(
    run: int, rows: int, timing: Timing, result: Any, before: Timing, after: Timing, load: float
) -> None:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The largest child process waited for so far (the parse process of a big file).
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    floor = FLOOR_SECONDS_PER_MILLION * rows / 1_000_000
    copy_wall = (before.wall + after.wall) / 2
    copy_cpu = (before.cpu_postgres + after.cpu_postgres + before.cpu_python + after.cpu_python) / 2
    print(
        f"run {run}: {timing.wall:.1f}s, {rows / timing.wall:,.0f} rows/s, peak RSS "
        f"{peak_mb:.0f} MB | queued {result.queued:,}, rejected {result.rejected:,}, "
        f"duplicates {result.duplicates:,}, suppressed {result.suppressed:,} | time "
        f"{timing.wall / floor:.2f}x of the {floor:.0f}s floor, memory "
        f"{peak_mb / FLOOR_RSS_MB:.2f}x of {FLOOR_RSS_MB:.0f} MB | load average {load:.1f}"
    )
    print(f"  CPU: Python {timing.cpu_python:.1f}s, PostgreSQL backend {timing.cpu_postgres:.1f}s")
    print(f"  peak RSS of a child process (the parse process): {child_mb:.0f} MB")
    print(
        f"  raw COPY of the same file (median of 3, before / after): {before.wall:.2f}s / "
        f"{after.wall:.2f}s wall, {before.cpu_postgres:.2f}s / {after.cpu_postgres:.2f}s "
        f"backend CPU"
    )
    print(
        f"  import = {timing.wall / copy_wall:.1f}x the raw COPY in wall time (floor "
        f"{FLOOR_COPY_RATIO:.0f}x, goal {GOAL_COPY_RATIO:.0f}x); "
        f"{(timing.cpu_python + timing.cpu_postgres) / copy_cpu:.1f}x in CPU time"
    )


if __name__ == "__main__":
    main()
