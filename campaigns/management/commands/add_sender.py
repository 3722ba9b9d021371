"""Register a sender number and its business account: `manage.py add_sender …`."""

from __future__ import annotations

import re
from typing import Any

import phonenumbers
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from campaigns.commands import SafeCommand, graph_id_option, text_option
from campaigns.models import SenderNumber, WhatsAppAccount

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class Command(SafeCommand):
    help = (
        "Add a WhatsApp sender number (and its business account if new); run again to update "
        "its display number or rate."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--phone-number-id", required=True, help="Graph phone-number-id")
        parser.add_argument("--waba-id", required=True, help="WhatsApp business account id")
        parser.add_argument("--display-number", required=True, help="E.164, e.g. +15550783881")
        parser.add_argument("--rate", type=int, help="messages per second, 1..1000 (default 80)")
        parser.add_argument("--name", help="name of the business account")

    def handle(self, *args: Any, **options: Any) -> None:
        phone_number_id = graph_id_option(
            "--phone-number-id",
            options["phone_number_id"],
            model=SenderNumber,
            field="phone_number_id",
        )
        waba_id = graph_id_option(
            "--waba-id", options["waba_id"], model=WhatsAppAccount, field="waba_id"
        )
        options["name"] = text_option(
            "--name", options["name"], model=WhatsAppAccount, field="name", required=False
        )
        display = _e164(options["display_number"])
        rate = options["rate"]
        if rate is not None and not 1 <= rate <= 1000:
            raise CommandError(f"--rate {rate}: must be between 1 and 1000 messages per second")
        with transaction.atomic():
            account, created_account = WhatsAppAccount.objects.get_or_create(
                waba_id=waba_id, defaults={"name": options["name"] or ""}
            )
            if options["name"] and account.name != options["name"]:
                account.name = options["name"]
                account.save(update_fields=["name"])
            sender = SenderNumber.objects.filter(phone_number_id=phone_number_id).first()
            if sender is None:
                sender = SenderNumber.objects.create(
                    account=account,
                    phone_number_id=phone_number_id,
                    display_number=display,
                    rate_mps=rate or 80,
                )
                verb = "added"
            else:
                if sender.account_id != account.pk:
                    raise CommandError(
                        f"sender {phone_number_id} belongs to WABA {sender.account.waba_id}, "
                        f"not {waba_id}"
                    )
                sender.display_number = display
                if rate is not None:
                    sender.rate_mps = rate
                sender.save(update_fields=["display_number", "rate_mps"])
                verb = "updated"
        self.stdout.write(
            f"sender {sender.phone_number_id} ({sender.display_number}, {sender.rate_mps}/s) "
            f"{verb} in WABA {account.waba_id}" + (" (new account)" if created_account else "")
        )


def _e164(value: str) -> str:
    compact = re.sub(r"[\s\-().]", "", value or "")
    if not _E164.match(compact):
        raise CommandError(
            f"--display-number {value!r}: write it in E.164, a + then 7 to 15 digits"
        )
    try:
        number = phonenumbers.parse(compact, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_possible_number(number):
        raise CommandError(f"--display-number {value!r}: not a possible phone number")
    return compact
