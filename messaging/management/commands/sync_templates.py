"""Sync a business account's message templates from the Graph API."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser, OutputWrapper

from campaigns.commands import SafeCommand, graph_id_option
from campaigns.models import WhatsAppAccount
from campaigns.template_sync import TemplateDataError
from messaging.graph_api import GraphError
from messaging.policy.actions import failed_token_note, failed_tokens
from messaging.templates import sync_templates


class Command(SafeCommand):
    help = (
        "Fetch every template of a WABA (GET /{WABA_ID}/message_templates) and upsert them; a "
        "stored template whose status changed pauses its campaigns as the status webhook does. "
        "The cluster runs it for every account hourly (a django-q2 Schedule), except an account "
        "whose token failed, until staff clear the failure in admin; this command still calls "
        "it, to try a new token."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--waba-id", required=True, help="WhatsApp business account id")

    def handle(self, *args: Any, waba_id: str, **options: Any) -> None:
        waba_id = graph_id_option("--waba-id", waba_id, model=WhatsAppAccount, field="waba_id")
        try:
            sync = sync_templates(waba_id=waba_id)
        except GraphError as exc:
            # An expired token has paused the account as on a send (messaging.policy.actions).
            self._failed_token(waba_id, self.stderr)
            raise CommandError(f"could not fetch templates of WABA {waba_id}: {exc}") from None
        except TemplateDataError as exc:
            raise CommandError(str(exc)) from None
        for line in sync.lines():
            self.stdout.write(line)
        self._failed_token(waba_id, self.stdout)

    def _failed_token(self, waba_id: str, out: OutputWrapper) -> None:
        for failed_waba, since in failed_tokens([waba_id]).items():
            out.write(failed_token_note(failed_waba, since))
