"""Benchmark of the launch plan (messaging.policy.plan) against the import preview it extends.

    .venv/bin/python -m bench.plan [--rows 200000]

In a database of its own (`wac_bench_plan`, dropped and created afresh): a CSV of --rows
numbers from six countries (Portugal, Japan, Germany, Brazil, the US, Russia; so several
zones, multi-zone numbers included) goes through

- the import preview alone (`preview_csv`, the reference: what the wizard did before the plan);
- `plan_import`: the same preview keeping its rows, then their plan (a 09:00-20:00 window, a
  TIER_10K portfolio, so windows, waves and the budget all work);
- after the import, `plan_campaign` of the saved campaign, with its SQL statements counted.

Reported: seconds, µs per row, the plan's share on top of the preview, and statements per
5,000 rows. No floor: the issue sets none for the plan (docs/benchmarks.md, "Launch plan").
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from datetime import time as clock_time
from pathlib import Path

from bench.common import fresh_database, services_env, setup_django

DB_NAME = "wac_bench_plan"
# A mobile prefix per country and the width of its subscriber part.
COUNTRIES = [
    ("+35191", 7),  # two zones (Azores, Lisbon)
    ("+81901", 7),
    ("+49151", 8),
    ("+55119", 8),
    ("+1415", 7),
    ("+7916", 7),  # sixteen zones: no common opening, the strictest zone decides
]


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["phone", "name"])
        for i in range(rows):
            prefix, width = COUNTRIES[i % len(COUNTRIES)]
            local = 2_000_000 + (i * 7_919 + 13) % 1_000_000
            out.writerow([f"{prefix}{local:0{width}d}", f"Name {i}"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args(argv)
    env = services_env(db_name=DB_NAME)
    fresh_database(env["DATABASE_URL"])
    setup_django({"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"]})
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from campaigns.models import MessageTemplate, Portfolio, SenderNumber, WhatsAppAccount
    from messaging.campaign_import import create_campaign_from_csv, preview_csv
    from messaging.policy.plan import CHUNK, plan_campaign, plan_import

    portfolio = Portfolio.objects.create(business_id="bench-bm", messaging_tier="TIER_10K")
    account = WhatsAppAccount.objects.create(waba_id="bench-plan", portfolio=portfolio)
    sender = SenderNumber.objects.create(
        account=account, phone_number_id="bench-plan-pnid", display_number="+15550001112"
    )
    template = MessageTemplate.objects.create(
        account=account, name="bench_plan", language="en_US", category="UTILITY", components=[]
    )
    policy = {"window_start": clock_time(9), "window_end": clock_time(20)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plan.csv"
        write_csv(path, args.rows)
        began = time.monotonic()
        preview_csv(csv_file=str(path), sender=sender, templates=[(template, 1)])
        preview_s = time.monotonic() - began
        began = time.monotonic()
        plan, _ = plan_import(
            csv_file=str(path), sender=sender, templates=[(template, 1)], policy=policy
        )
        plan_import_s = time.monotonic() - began
        result = create_campaign_from_csv(
            name="bench plan", csv_file=str(path), sender=sender, templates=[(template, 1)]
        )
    campaign = result.created
    campaign.window_start, campaign.window_end = policy["window_start"], policy["window_end"]
    campaign.save()
    connection.force_debug_cursor = True
    began = time.monotonic()
    with CaptureQueriesContext(connection) as queries:
        planned = plan_campaign(campaign)
    plan_campaign_s = time.monotonic() - began
    rows = max(1, plan.audience)
    report = {
        "rows": args.rows,
        "planned": plan.audience,
        "zones": len(plan.zones),
        "waves": len(plan.waves),
        "preview_s": round(preview_s, 2),
        "plan_import_s": round(plan_import_s, 2),
        "plan_over_preview": round((plan_import_s - preview_s) / preview_s, 2),
        "plan_us_per_row": round((plan_import_s - preview_s) / rows * 1e6, 1),
        "plan_campaign_s": round(plan_campaign_s, 2),
        "plan_campaign_us_per_row": round(plan_campaign_s / max(1, planned.audience) * 1e6, 1),
        "statements": len(queries),
        "statements_per_chunk": round(len(queries) / max(1, -(-planned.audience // CHUNK)), 1),
        "load_avg": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
