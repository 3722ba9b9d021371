"""Run the WhatsApp Cloud API simulator on loopback (see docs/benchmarks.md "Simulator")."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from messaging.simulator.cli import add_arguments, build
from messaging.simulator.server import run


class Command(BaseCommand):
    help = "Serve a local stand-in for the WhatsApp Cloud API (sends, templates, webhooks)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        logging.getLogger("messaging.simulator").setLevel(options["log_level"].upper())
        try:
            app, server = build(options)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        run(app, server)
