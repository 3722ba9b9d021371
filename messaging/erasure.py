"""Contact erasure: every trace of a number goes, except the suppression hash.

`forget_contact(phone)` is what `manage.py forget_contact` and the contacts admin action run.
Nothing is deleted that a counter or a report counts: queue rows, inbound messages and status
log rows stay, anonymised, so campaign counters still equal a recount. The contact keeps its
id (queue rows point at it) with `phone = "erased:<id>"` and nothing else. The suppression
keeps only `phone_hash` (campaigns.suppression), so the import and the claim refuse the
number for good. Raw webhook bodies that mention the number are found by a primary-key scan
that starts at the first moment the number could have appeared in one (its first send or
message), and is bounded by retention (messaging.retention) anyway: applied bodies are
deleted; a body still waiting for the applier loses the items (statuses, messages,
contact cards) that name the number and keeps everyone else's.

Idempotent: run it again (e.g. after a message from the number arrived meanwhile) and it
finds what is left.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Min, Q
from django.utils import timezone

from campaigns.models import (
    ERASED_PHONE_PREFIX,
    Contact,
    ImportRejection,
    SenderNumber,
    Suppression,
)
from campaigns.suppression import phone_hash
from messaging.models import OutboundMessage, to_numbers
from messaging.policy.optout import opt_out
from webhooks.models import AutoReply, InboundMessage, RawEvent, RejectedWebhookItem, StatusLog

logger = logging.getLogger(__name__)

BODY_BATCH = 5000
# Bodies are stored before they are applied; a status can also precede the send answer.
_BODY_SLACK = timedelta(hours=1)
_RAW = RawEvent._meta.db_table


@dataclass
class ErasureReport:
    phone: str
    placeholder: str = ""
    counts: dict[str, int] = field(default_factory=dict)


def forget_contact(phone: str) -> ErasureReport:
    """Anonymise `phone` (E.164) everywhere and keep it suppressed by hash only."""
    report = ErasureReport(phone=phone)
    digits = phone.lstrip("+")
    with transaction.atomic():
        contact = Contact.objects.select_for_update().filter(phone=phone).first()
        wa_ids = {digits} | ({contact.wa_id} if contact and contact.wa_id else set())
        phones = {phone} | {"+" + w for w in wa_ids}
        since = _first_appearance(phones)
        placeholder = f"{ERASED_PHONE_PREFIX}{contact.pk if contact else phone_hash(phone)[:12]}"
        report.placeholder = placeholder
        # The one opt-out: suppressed, and nothing still queued goes out.
        report.counts["cancelled"] = opt_out(
            phones=phones, source=Suppression.Source.ERASURE, reason="erased"
        ).cancelled
        report.counts["suppressions"] = Suppression.objects.filter(
            phone_hash__in=[phone_hash(p) for p in phones]
        ).update(phone=None, source=Suppression.Source.ERASURE, reason="erased")
        rows = OutboundMessage.objects.filter(to_numbers(phones))
        # Statuses first: they are found through the queue rows, before those are rewritten.
        # Two statements, each on an index: matched rows by their FK, unmatched ones through
        # the small partial index (an OR would read the whole log).
        logs = StatusLog.objects.exclude(recipient_id="")
        report.counts["status_logs"] = logs.filter(outbound__in=rows).update(
            recipient_id=""
        ) + logs.filter(outbound__isnull=True, recipient_id__in=wa_ids).update(recipient_id="")
        report.counts["queue_rows"] = rows.update(phone=placeholder, parameters=[], error_detail="")
        # Every sender listed, so the (sender, user_phone, …) conversation indexes serve.
        conversation = {
            "sender__in": list(SenderNumber.objects.values_list("pk", flat=True)),
            "user_phone__in": phones | wa_ids,
        }
        report.counts["inbound_messages"] = InboundMessage.objects.filter(**conversation).update(
            user_phone=placeholder, user_name="", text="", payload={}
        )
        report.counts["auto_replies"] = AutoReply.objects.filter(**conversation).update(
            user_phone=placeholder, text=""
        )
        report.counts["import_rejections"] = _scrub_rejections(digits, placeholder)
        report.counts["rejected_webhook_items"] = RejectedWebhookItem.objects.filter(
            _mentions("item", wa_ids)
        ).delete()[0]
        if contact is not None:
            Contact.objects.filter(pk=contact.pk).update(
                phone=placeholder, name="", attributes={}, wa_id="", opted_out_at=timezone.now()
            )
        report.counts["contacts"] = int(contact is not None)
    deleted, redacted = _scrub_bodies(wa_ids, since)
    report.counts["webhook_bodies_deleted"] = deleted
    report.counts["webhook_bodies_redacted"] = redacted
    logger.info("contact erased (%s): %s", placeholder, report.counts)
    return report


def _first_appearance(phones: set[str]) -> datetime | None:
    """The earliest a webhook body can have named the number: the start of the first
    campaign that had it, or its first message to us."""
    started = OutboundMessage.objects.filter(to_numbers(phones)).aggregate(
        s=Min("campaign__started_at")
    )["s"]
    senders = list(SenderNumber.objects.values_list("pk", flat=True))  # for the index
    received = InboundMessage.objects.filter(sender__in=senders, user_phone__in=phones).aggregate(
        r=Min("received_at")
    )["r"]
    moments = [m for m in (started, received) if m is not None]
    return min(moments) - _BODY_SLACK if moments else None


def _mentions(column: str, wa_ids: set[str]) -> Q:
    query = Q()
    for wa_id in wa_ids:
        query |= Q(**{f"{column}__contains": f'"{wa_id}"'})
        query |= Q(**{f"{column}__contains": f'"+{wa_id}"'})
    return query


def _scrub_rejections(digits: str, placeholder: str) -> int:
    """Rejected rows keep the raw cell ("(415) 555-2671", "001415…"): compare digits only,
    matching the number with or without its country code."""
    table = ImportRejection._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET value = %s "  # noqa: S608
            "WHERE value <> '' AND right(regexp_replace(value, '[^0-9]', '', 'g'), %s) = %s "
            "AND length(regexp_replace(value, '[^0-9]', '', 'g')) >= %s",
            [placeholder, min(len(digits), 10), digits[-10:], min(len(digits), 10)],
        )
        return cursor.rowcount


def _needles(wa_ids: set[str]) -> list[bytes]:
    return sorted({f'"{w}"'.encode() for w in wa_ids} | {f'"+{w}"'.encode() for w in wa_ids})


def _scrub_bodies(wa_ids: set[str], since: datetime | None) -> tuple[int, int]:
    """(applied bodies deleted, pending bodies redacted), in primary-key batches."""
    needles = _needles(wa_ids)
    match = " OR ".join(["position(%s::bytea in body) > 0"] * len(needles))
    deleted = redacted = 0
    # Bodies not applied yet may name anyone; the partial index makes them cheap to list.
    pending = list(RawEvent.objects.filter(applied_at__isnull=True).values_list("pk", flat=True))
    start = _first_body_after(since) if since is not None else None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {_RAW}")  # noqa: S608
        top = cursor.fetchone()[0]
    windows: list[tuple[int, int]] = []
    if start is not None:
        windows += [(lo, min(lo + BODY_BATCH, top + 1)) for lo in range(start, top + 1, BODY_BATCH)]
    for i in range(0, len(pending), BODY_BATCH):
        chunk = pending[i : i + BODY_BATCH]
        windows.append((chunk[0], chunk[-1] + 1))
    for low, high in windows:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, applied_at IS NULL, body FROM {_RAW} "  # noqa: S608
                f"WHERE id >= %s AND id < %s AND ({match}) FOR UPDATE",
                [low, high, *needles],
            )
            found = cursor.fetchall()
            gone = [raw_id for raw_id, is_pending, _ in found if not is_pending]
            if gone:
                deleted += (
                    RawEvent.objects.filter(pk__in=gone).delete()[1].get(RawEvent._meta.label, 0)
                )
            for raw_id, is_pending, body in found:
                if not is_pending:
                    continue
                clean = _redact(bytes(body), wa_ids)
                if clean is None:
                    RawEvent.objects.filter(pk=raw_id).delete()
                    deleted += 1
                else:
                    RawEvent.objects.filter(pk=raw_id).update(body=clean)
                    redacted += 1
    return deleted, redacted


def _first_body_after(moment: datetime) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {_RAW} WHERE received_at >= %s ORDER BY id LIMIT 1",  # noqa: S608
            [moment],
        )
        row = cursor.fetchone()
    return None if row is None else row[0]


def _redact(body: bytes, wa_ids: set[str]) -> bytes | None:
    """The body without the items that concern the number (its statuses, its messages, its
    contact card); None when it is not JSON (it could never be applied anyway)."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    forms = wa_ids | {"+" + w for w in wa_ids}
    return json.dumps(_without(document, forms), separators=(",", ":")).encode()


def _without(node: Any, forms: set[str]) -> Any:
    if isinstance(node, dict):
        return {k: _without(v, forms) for k, v in node.items()}
    if isinstance(node, list):
        # Innermost first: an entry loses its messages from the number but stays itself.
        kept = [_without(v, forms) for v in node]
        return [v for v in kept if not _names(v, forms)]
    return node


def _names(node: Any, forms: set[str]) -> bool:
    """A list item that mentions the number (at any depth) goes as a whole."""
    if isinstance(node, str):
        return node in forms
    if isinstance(node, dict):
        return any(_names(v, forms) for v in node.values())
    if isinstance(node, list):
        return any(_names(v, forms) for v in node)
    return False
