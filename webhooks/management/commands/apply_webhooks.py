"""Apply stored webhook bodies: `--until-empty` drains and exits; otherwise polls until stopped."""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import CommandParser
from django.db import connection

from campaigns.commands import SafeCommand, int_option, number_option
from webhooks.drain import BATCH_SIZE, drain

MAX_BATCH_SIZE = 100_000


class Command(SafeCommand):
    help = "Apply pending webhook events (statuses, inbound messages, template/number updates)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--until-empty", action="store_true", help="exit when none is left")
        parser.add_argument("--max-seconds", type=float, default=None, help="stop after this")
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)

    def handle(self, *args: Any, **options: Any) -> None:
        int_option("--batch-size", options["batch_size"], 1, MAX_BATCH_SIZE)
        number_option("--max-seconds", options["max_seconds"], open_lo=True)
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        with connection.cursor() as cursor:
            cursor.execute("SET application_name = 'apply_webhooks'")
        applied = drain(
            until_empty=options["until_empty"],
            max_seconds=options["max_seconds"],
            batch_size=options["batch_size"],
            stop=lambda: stopping,
        )
        self.stdout.write(f"applied {applied} webhook bodies")
