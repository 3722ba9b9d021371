"""Sync a business account's message templates from the Graph API."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from campaigns.commands import SafeCommand, graph_id_option
from campaigns.models import WhatsAppAccount
from campaigns.template_sync import TemplateDataError
from messaging.graph_api import GraphError
from messaging.templates import sync_templates


class Command(SafeCommand):
    help = (
        "Fetch every template of a WABA (GET /{WABA_ID}/message_templates) and upsert them; a "
        "stored template whose status changed pauses its campaigns as the status webhook does. "
        "The cluster runs it for every account hourly (a django-q2 Schedule)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--waba-id", required=True, help="WhatsApp business account id")

    def handle(self, *args: Any, waba_id: str, **options: Any) -> None:
        waba_id = graph_id_option("--waba-id", waba_id, model=WhatsAppAccount, field="waba_id")
        try:
            sync = sync_templates(waba_id=waba_id)
        except GraphError as exc:
            # An expired token has paused the account as on a send (messaging.policy.actions).
            raise CommandError(f"could not fetch templates of WABA {waba_id}: {exc}") from None
        except TemplateDataError as exc:
            raise CommandError(str(exc)) from None
        for line in sync.lines():
            self.stdout.write(line)
