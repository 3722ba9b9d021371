"""Upsert message templates from the Graph API's template-list shape (a file or the live API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from campaigns.models import MessageTemplate, WhatsAppAccount

REQUIRED = ("name", "language", "status", "components")


class TemplateDataError(ValueError):
    """A template entry we cannot store; the message says which entry and what is wrong."""


@dataclass(frozen=True)
class SyncResult:
    account: WhatsAppAccount
    created: int
    updated: int
    new_account: bool


def upsert_templates(*, waba_id: str, items: list[Any], source: str) -> SyncResult:
    """Validate every entry first (nothing is stored if one is bad), then upsert them all by
    (account, name, language), marking them synced."""
    rows = [template_fields(item, where=f"{source}: data[{i}]") for i, item in enumerate(items)]
    now = timezone.now()
    created = updated = 0
    with transaction.atomic():
        account, new_account = WhatsAppAccount.objects.get_or_create(waba_id=waba_id.strip())
        for fields in rows:
            _, was_created = MessageTemplate.objects.update_or_create(
                account=account,
                name=fields.pop("name"),
                language=fields.pop("language"),
                defaults={**fields, "synced_at": now},
            )
            created += was_created
            updated += not was_created
    return SyncResult(account, created, updated, new_account)


def template_fields(item: Any, *, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise TemplateDataError(f"{where}: expected an object")
    missing = [key for key in REQUIRED if key not in item]
    if missing:
        raise TemplateDataError(f"{where}: missing {', '.join(missing)}")
    for key in ("name", "language", "status"):
        if not isinstance(item[key], str) or not item[key].strip():
            raise TemplateDataError(f"{where}: {key!r} must be a non-empty string")
    if not isinstance(item["components"], list) or not all(
        isinstance(c, dict) and "type" in c for c in item["components"]
    ):
        raise TemplateDataError(
            f"{where} ({item['name']}): 'components' must be a list of objects with a type"
        )
    for key in ("name", "language", "status", "category", "id"):
        field = MessageTemplate._meta.get_field("graph_id" if key == "id" else key)
        limit = getattr(field, "max_length", None)
        value = str(item.get(key) or "").strip()
        if limit is not None and len(value) > limit:
            raise TemplateDataError(f"{where}: {key!r} is {len(value)} characters; at most {limit}")
    for c, component in enumerate(item["components"]):
        text = component.get("text")
        if text is not None and not isinstance(text, str):
            raise TemplateDataError(
                f"{where} ({item['name']}): components[{c}] 'text' must be a string"
            )
    parameter_format = str(item.get("parameter_format") or "POSITIONAL").upper()
    if parameter_format not in ("POSITIONAL", "NAMED"):
        raise TemplateDataError(
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


def describe(result: SyncResult, *, count: int) -> str:
    return (
        f"{count} template(s) loaded for WABA {result.account.waba_id}: {result.created} "
        f"created, {result.updated} updated" + (" (new account)" if result.new_account else "")
    )
