"""Benchmark of the recipients export and of a cohort becoming a draft, against a CSV import.

    .venv/bin/python -m bench.audiences [--rows 1000000]

In a database of its own (`wac_bench_audiences`, dropped and created afresh): a CSV of --rows
rows (bench.import_csv's generator) becomes a campaign (timed: the CSV import), every queued
row is then marked delivered two days ago (one UPDATE), and

- the export: `csv_lines(EXPORT_HEADER, recipient_rows(...))`, what the admin download streams,
  consumed in a fresh process (so its peak RSS is the export's own), timed;
- the cohort: `follow_up_campaign(outcome=delivered_not_read, hours=24)`, timed, i.e. every
  recipient of the campaign becomes a draft through the import service.

Floors: export ≥ 50,000 rows/s with peak RSS < 150 MB; the cohort draft in ≤ the CSV import's
time for the same number of rows (compared per row: the CSV's queued rows are fewer than its
lines, a cohort's are all its rows).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, fresh_database, services_env, setup_django

DB_NAME = "wac_bench_audiences"
FLOOR_EXPORT_ROWS_PER_S = 50_000
FLOOR_EXPORT_RSS_MB = 150.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def export_only(campaign_id: int) -> dict[str, float]:
    """Run in a fresh process: stream the export, count rows and bytes."""
    from campaigns.csv_export import csv_lines
    from messaging.exports import EXPORT_HEADER, recipient_rows

    began = time.monotonic()
    size = lines = 0
    for chunk in csv_lines(EXPORT_HEADER, recipient_rows(campaign_id=campaign_id)):
        size += len(chunk)
        lines += chunk.count("\n")
    return {
        "seconds": time.monotonic() - began,
        "rows": lines - 1,
        "mb": size / 1e6,
        "peak_mb": _peak_mb(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--export-campaign", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    env = services_env(db_name=DB_NAME)
    if args.export_campaign:  # the child process of the export measurement
        setup_django({"DATABASE_URL": env["DATABASE_URL"]}, migrate=False)
        print(json.dumps(export_only(args.export_campaign)))
        return

    fresh_database(env["DATABASE_URL"])
    setup_django({"DATABASE_URL": env["DATABASE_URL"]})
    from django.db import connection

    from bench.import_csv import _templates, write_csv
    from messaging.audiences import follow_up_campaign
    from messaging.campaign_import import create_campaign_from_csv
    from messaging.cohorts import Outcome
    from messaging.models import OutboundMessage, OutboundStatus

    sender, templates = _templates()
    path = Path(tempfile.mkstemp(prefix="wac-bench-", suffix=".csv")[1])
    try:
        write_csv(path, args.rows)
        began = time.monotonic()
        imported = create_campaign_from_csv(
            name="bench source",
            csv_file=path,
            sender=sender,
            templates=[(t, 1) for t in templates],
            default_region="US",
        )
        csv_seconds = time.monotonic() - began
    finally:
        path.unlink(missing_ok=True)
    campaign = imported.campaign
    print(
        f"csv import: {args.rows:,} lines, {imported.queued:,} queued in {csv_seconds:.1f}s "
        f"({imported.queued / csv_seconds:,.0f} queued rows/s, load {os.getloadavg()[0]:.1f})"
    )
    began = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {OutboundMessage._meta.db_table} SET status = %s, "
            "accepted_at = now() - interval '49 hours', sent_at = now() - interval '49 hours', "
            "delivered_at = now() - interval '48 hours', wamid = 'wamid.bench.' || id "
            "WHERE campaign_id = %s",
            [OutboundStatus.DELIVERED, campaign.pk],
        )
        cursor.execute("VACUUM ANALYZE")
    print(f"marked delivered in {time.monotonic() - began:.1f}s")

    child = subprocess.run(
        [sys.executable, "-m", "bench.audiences", f"--export-campaign={campaign.pk}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    export = json.loads(child.stdout.strip().splitlines()[-1])
    rate = export["rows"] / export["seconds"]
    print(
        f"export: {export['rows']:,} rows, {export['mb']:.0f} MB in {export['seconds']:.1f}s = "
        f"{rate:,.0f} rows/s ({rate / FLOOR_EXPORT_ROWS_PER_S:.2f}x of the floor), peak RSS "
        f"{export['peak_mb']:.0f} MB ({export['peak_mb'] / FLOOR_EXPORT_RSS_MB:.2f}x of "
        f"{FLOOR_EXPORT_RSS_MB:.0f} MB), load {os.getloadavg()[0]:.1f}"
    )

    began = time.monotonic()
    draft = follow_up_campaign(campaign=campaign, outcome=Outcome.DELIVERED_NOT_READ, hours=24)
    cohort_seconds = time.monotonic() - began
    per_row_csv = csv_seconds / args.rows
    per_row_cohort = cohort_seconds / draft.queued
    print(
        f"cohort draft: {draft.queued:,} rows in {cohort_seconds:.1f}s "
        f"({draft.queued / cohort_seconds:,.0f} rows/s); per row {per_row_cohort * 1e6:.1f} µs "
        f"vs the CSV import's {per_row_csv * 1e6:.1f} µs per line: ratio "
        f"{per_row_cohort / per_row_csv:.2f} (floor ≤ 1), load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
