"""Opt numbers out (or back in): `manage.py suppress PHONE… [--reason TEXT] [--remove]`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from campaigns.commands import SafeCommand, text_option
from campaigns.csv_import.errors import CsvImportError
from campaigns.csv_import.phones import check_region, normalise_phone
from campaigns.models import Suppression
from messaging.policy.optout import opt_in, opt_out


class Command(SafeCommand):
    help = (
        "Suppress numbers: no campaign will message them and their queued messages are "
        "cancelled. --remove lifts the suppression."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("phones", nargs="+", help="numbers, E.164 or in --region's format")
        parser.add_argument("--reason", default="", help="why (kept on the suppression, ≤255)")
        parser.add_argument("--remove", action="store_true", help="opt the numbers back in")
        parser.add_argument(
            "--region", default=None, help="region for numbers without a country code"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            region = check_region(options["region"] or settings.WHATSAPP_DEFAULT_REGION)
        except CsvImportError as exc:
            raise CommandError(f"--region: {exc}") from None
        reason = text_option(
            "--reason", options["reason"], model=Suppression, field="reason", required=False
        )
        phones = []
        for raw in options["phones"]:
            phone, problem = normalise_phone(raw, region)
            if phone is None:
                raise CommandError(f"{raw!r}: {problem}; nothing was changed")
            phones.append(phone)
        if options["remove"]:
            lifted = opt_in(phones=phones)
            self.stdout.write(f"{lifted} number(s) opted back in")
            return
        result = opt_out(phones=phones, source=Suppression.Source.STAFF, reason=reason or "staff")
        self.stdout.write(
            f"{result.numbers} number(s) suppressed, {result.cancelled} queued message(s) cancelled"
        )
