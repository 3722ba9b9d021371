"""Run the WhatsApp Cloud API simulator on loopback (see docs/benchmarks.md "Simulator")."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import CommandError, CommandParser

from campaigns.commands import SafeCommand, host_option, port_option
from messaging.simulator.cli import add_arguments, build
from messaging.simulator.server import run


class Command(SafeCommand):
    help = "Serve a local stand-in for the WhatsApp Cloud API (sends, templates, webhooks)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        level = str(options["log_level"]).upper()
        if level not in logging.getLevelNamesMapping():
            raise CommandError(f"--log-level {options['log_level']!r}: e.g. WARNING, INFO, DEBUG")
        logging.getLogger("messaging.simulator").setLevel(level)
        host = host_option("--host", options["host"])
        port = port_option("--port", options["port"], allow_zero=True)
        try:
            app, server = build(options)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            run(app, server)
        except OSError as exc:  # the address is taken, not ours, or not resolvable
            raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
