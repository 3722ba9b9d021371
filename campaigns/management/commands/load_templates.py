"""Load message templates from a Graph API template-list file (`{"data": [...]}`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from campaigns.models import MessageTemplate, WhatsAppAccount

REQUIRED = ("name", "language", "status", "components")


class Command(BaseCommand):
    help = (
        "Upsert templates from a JSON file in the Graph API's template-list format "
        "(GET /{WABA_ID}/message_templates), keyed by (account, name, language)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help='JSON file: {"data": [ {name, language, …}, … ]}')
        parser.add_argument("--waba-id", required=True, help="WhatsApp business account id")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        items = _read(path)
        rows = [_template_fields(path, i, item) for i, item in enumerate(items)]
        now = timezone.now()
        created = updated = 0
        with transaction.atomic():
            account, new_account = WhatsAppAccount.objects.get_or_create(
                waba_id=options["waba_id"].strip()
            )
            for fields in rows:
                _, was_created = MessageTemplate.objects.update_or_create(
                    account=account,
                    name=fields.pop("name"),
                    language=fields.pop("language"),
                    defaults={**fields, "synced_at": now},
                )
                created += was_created
                updated += not was_created
        self.stdout.write(
            f"{len(rows)} template(s) loaded for WABA {account.waba_id}: {created} created, "
            f"{updated} updated" + (" (new account)" if new_account else "")
        )


def _read(path: Path) -> list[Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise CommandError(f'{path}: expected an object with a "data" list of templates')
    return document["data"]


def _template_fields(path: Path, index: int, item: Any) -> dict[str, Any]:
    where = f"{path}: data[{index}]"
    if not isinstance(item, dict):
        raise CommandError(f"{where}: expected an object")
    missing = [key for key in REQUIRED if key not in item]
    if missing:
        raise CommandError(f"{where}: missing {', '.join(missing)}")
    for key in ("name", "language", "status"):
        if not isinstance(item[key], str) or not item[key].strip():
            raise CommandError(f"{where}: {key!r} must be a non-empty string")
    if not isinstance(item["components"], list) or not all(
        isinstance(c, dict) and "type" in c for c in item["components"]
    ):
        raise CommandError(
            f"{where} ({item['name']}): 'components' must be a list of objects with a type"
        )
    parameter_format = str(item.get("parameter_format") or "POSITIONAL").upper()
    if parameter_format not in ("POSITIONAL", "NAMED"):
        raise CommandError(
            f"{where} ({item['name']}): unknown parameter_format {parameter_format!r}"
        )
    return {
        "name": item["name"].strip(),
        "language": item["language"].strip(),
        "status": item["status"].strip().upper(),
        "category": str(item.get("category") or "").upper(),
        "parameter_format": parameter_format,
        "components": item["components"],
        "graph_id": str(item.get("id") or ""),
    }
