"""Load message templates from a Graph API template-list file (`{"data": [...]}`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from campaigns.commands import SafeCommand, graph_id_option, read_limited
from campaigns.models import WhatsAppAccount
from campaigns.template_sync import TemplateDataError, describe, upsert_templates

# A WABA's whole template list is a few hundred kB; anything far larger is not one.
MAX_FILE_BYTES = 20_000_000


class Command(SafeCommand):
    help = (
        "Upsert templates from a JSON file in the Graph API's template-list format "
        "(GET /{WABA_ID}/message_templates), keyed by (account, name, language)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help='JSON file: {"data": [ {name, language, …}, … ]}')
        parser.add_argument("--waba-id", required=True, help="WhatsApp business account id")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        waba_id = graph_id_option(
            "--waba-id", options["waba_id"], model=WhatsAppAccount, field="waba_id"
        )
        items = _read(path)
        try:
            result = upsert_templates(waba_id=waba_id, items=items, source=str(path))
        except TemplateDataError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(describe(result, count=len(items)))


def _read(path: Path) -> list[Any]:
    data = read_limited(path, limit=MAX_FILE_BYTES)
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise CommandError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise CommandError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise CommandError(f'{path}: expected an object with a "data" list of templates')
    templates: list[Any] = document["data"]
    return templates
