"""Read each sender number's messaging limit, quality, status and name from the Graph API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser

from campaigns.commands import SafeCommand, graph_id_option
from campaigns.models import SenderNumber, WhatsAppAccount
from messaging.numbers import sync_numbers, unattended
from messaging.policy.actions import failed_token_note, failed_tokens, skipped_tokens_line


class Command(SafeCommand):
    help = (
        "GET /{WABA_ID} for each account's owning business (its portfolio), then "
        "GET /{PHONE_NUMBER_ID} for every sender number (or those of one WABA / the ids given) "
        "and store its messaging limit (the portfolio's), quality rating, status and name. "
        "A number that cannot be read keeps its values and gets the error; the exit status is "
        "non-zero when any failed. The cluster runs it every 3 hours (a django-q2 Schedule). "
        "Without arguments, as on the cluster, the numbers of an account whose token failed "
        "are skipped until staff clear the failure in admin; --waba-id or the numbers' ids "
        "call them anyway, to try a new token."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--waba-id", help="only the numbers of this business account")
        parser.add_argument(
            "phone_number_ids", nargs="*", metavar="PHONE_NUMBER_ID", help="only these numbers"
        )

    def handle(
        self, *args: Any, waba_id: str | None, phone_number_ids: list[str], **options: Any
    ) -> None:
        numbers = SenderNumber.objects.select_related("account").order_by("pk")
        if waba_id is not None:
            waba_id = graph_id_option("--waba-id", waba_id, model=WhatsAppAccount, field="waba_id")
            numbers = numbers.filter(account__waba_id=waba_id)
        if phone_number_ids:
            ids = [
                graph_id_option("PHONE_NUMBER_ID", pid, model=SenderNumber, field="phone_number_id")
                for pid in phone_number_ids
            ]
            numbers = numbers.filter(phone_number_id__in=ids)
            missing = sorted(set(ids) - {n.phone_number_id for n in numbers})
            if missing:
                raise CommandError(f"no sender number with id {', '.join(missing)}")
        named = waba_id is not None or bool(phone_number_ids)
        unasked: dict[str, datetime] = {}
        if not named:
            numbers, unasked = unattended(numbers)
        numbers_list = list(numbers.order_by("account_id", "pk"))
        if not numbers_list and not unasked:
            raise CommandError("no sender numbers to sync (add one with add_sender)")
        report = sync_numbers(numbers_list)
        for line in report.lines:
            self.stdout.write(line)
        for problem in report.problems:
            self.stderr.write(problem)
        if unasked:
            self.stdout.write(skipped_tokens_line(unasked))
        if named:
            called = {n.account.waba_id for n in numbers_list}
            for failed_waba, since in failed_tokens(called).items():
                self.stdout.write(failed_token_note(failed_waba, since))
        if report.failed:
            raise CommandError(f"{report.failed} of {report.numbers} number(s) could not be read")
        self.stdout.write(f"{report.numbers} number(s) synced")
