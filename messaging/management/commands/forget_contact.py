"""Erase a contact everywhere but the hashed suppression: `manage.py forget_contact PHONE`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from campaigns.commands import SafeCommand
from campaigns.csv_import import CsvImportError, check_region, normalise_phone
from messaging.erasure import forget_contact


class Command(SafeCommand):
    help = (
        "Anonymise a phone number in contacts, queue rows, inbound messages, status logs and "
        "webhook bodies; it stays suppressed (by hash only) so it is never messaged again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("phone", help="the number, E.164 or as the region writes it")
        parser.add_argument(
            "--region", help="region for numbers without a country code (default: settings)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            region = check_region(options["region"] or settings.WHATSAPP_DEFAULT_REGION)
        except CsvImportError as exc:
            raise CommandError(f"--region: {exc}") from exc
        phone, reason = normalise_phone(options["phone"], region)
        if phone is None:
            raise CommandError(f"PHONE {options['phone']!r}: {reason}")
        report = forget_contact(phone)
        self.stdout.write(f"{phone} erased (now {report.placeholder}); suppressed by hash only")
        for kind, count in report.counts.items():
            self.stdout.write(f"  {kind}: {count}")
