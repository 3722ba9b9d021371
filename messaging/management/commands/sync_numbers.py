"""Read each sender number's messaging limit, quality, status and name from the Graph API."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from campaigns.commands import SafeCommand, graph_id_option
from campaigns.models import SenderNumber, TierSource, WhatsAppAccount
from messaging.graph_api import GraphError, fetch_phone_number
from messaging.numbers import record_number_state, record_sync_error, report_from_graph


class Command(SafeCommand):
    help = (
        "GET /{PHONE_NUMBER_ID} for every sender number (or those of one WABA / the ids given) "
        "and store its messaging limit (the portfolio's), quality rating, status and name. "
        "A number that cannot be read keeps its values and gets the error; the exit status is "
        "non-zero when any failed."
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
        numbers_list = list(numbers)
        if not numbers_list:
            raise CommandError("no sender numbers to sync (add one with add_sender)")
        failed = 0
        for number in numbers_list:
            try:
                data = fetch_phone_number(
                    phone_number_id=number.phone_number_id, waba_id=number.account.waba_id
                )
            except GraphError as exc:
                failed += 1
                message = f"could not read {number.phone_number_id}: {exc}"
                record_sync_error(sender_id=number.pk, error=str(exc))
                self.stderr.write(f"{number.display_number}: {message}")
                continue
            report = report_from_graph(data)
            changes = record_number_state(
                sender_id=number.pk, report=report, source=TierSource.GRAPH
            )
            said = ", ".join(f"{c.get_field_display()} {c.old or '—'} → {c.new}" for c in changes)
            self.stdout.write(
                f"{number.display_number}: limit {report.tier or '?'}, quality "
                f"{report.quality or '?'}, status {report.status or '?'}"
                + (f"; changed: {said}" if said else "; unchanged")
            )
        if failed:
            raise CommandError(f"{failed} of {len(numbers_list)} number(s) could not be read")
        self.stdout.write(f"{len(numbers_list)} number(s) synced")
