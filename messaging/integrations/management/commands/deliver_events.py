"""manage.py deliver_events [--seconds N]: deliver outbound events without the cluster."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from messaging.integrations.events.tasks import run_delivery


class Command(BaseCommand):
    help = "Deliver pending outbound events for a while (the cluster does this by itself)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
        parser.add_argument(
            "--keep-running", action="store_true", help="do not stop when nothing is due"
        )

    def handle(self, *args: object, **options: object) -> None:
        seconds = float(options["seconds"])  # type: ignore[arg-type]
        if not 0 < seconds <= 86_400:
            from django.core.management.base import CommandError

            raise CommandError("--seconds must be between 0 and 86400")
        delivered = run_delivery(seconds=seconds, until_idle=not options["keep_running"])
        self.stdout.write(f"{delivered} event(s) delivered")
