"""Sync a business account's message templates from the Graph API."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from campaigns.commands import SafeCommand, graph_id_option
from campaigns.models import WhatsAppAccount
from campaigns.template_sync import TemplateDataError, describe, upsert_templates
from messaging.graph_api import GraphError, fetch_templates
from messaging.policy.actions import management_error


class Command(SafeCommand):
    help = "Fetch every template of a WABA (GET /{WABA_ID}/message_templates) and upsert them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--waba-id", required=True, help="WhatsApp business account id")

    def handle(self, *args: Any, waba_id: str, **options: Any) -> None:
        waba_id = graph_id_option("--waba-id", waba_id, model=WhatsAppAccount, field="waba_id")
        try:
            items = fetch_templates(waba_id=waba_id)
            result = upsert_templates(waba_id=waba_id, items=items, source="Graph API")
        except GraphError as exc:
            # An expired token pauses the account as on a send (messaging.policy.actions).
            management_error(exc.rule, code=exc.code, waba_id=waba_id)
            raise CommandError(f"could not fetch templates of WABA {waba_id}: {exc}") from None
        except TemplateDataError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(describe(result, count=len(items)))
