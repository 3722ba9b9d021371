"""Purge what is past retention: `manage.py purge [--dry-run]` (docs/retention.md)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from campaigns.commands import SafeCommand, int_option
from messaging.retention import BATCH_SIZE, purge


class Command(SafeCommand):
    help = (
        "Delete applied webhook bodies and status logs past retention, and drop the rendered "
        "parameters of queue rows of campaigns finished long ago, in small batches."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would go, change nothing"
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=BATCH_SIZE,
            help=f"rows per transaction ({BATCH_SIZE})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        int_option("--batch-size", options["batch_size"], 1, 100_000)
        report = purge(dry_run=options["dry_run"], batch_size=options["batch_size"])
        verb = "would remove" if options["dry_run"] else "removed"
        labels = {
            "webhook_bodies": "applied webhook bodies",
            "status_logs": "status log rows",
            "queue_parameters": "queue rows' rendered parameters",
            "outbound_events": "delivered outbound events",
            "event_log": "message event log entries read by every subscription",
            "idempotency_keys": "expired idempotency keys",
        }
        for kind, count in report.counts.items():
            self.stdout.write(f"{verb} {count} {labels[kind]}")
