"""Sending from code: messages queued in the sender number's standing transactional stream.

No second send path: a message here is one more queue row, in a campaign of kind
TRANSACTIONAL that runs for good at a priority above campaigns. The engine claims it like any
row, so the number's pacing and the claim-time policy (suppression, validity) apply to it.
A message's own validity (ttl or valid_until) is the row's `valid_until`, which the claim's
screen enforces with the campaigns' rule (messaging.policy.gate.deadline).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from campaigns.csv_import import CsvImportError, normalise_phone, render_components
from campaigns.models import Campaign, Contact, MessageTemplate, SenderNumber
from messaging.integrations import lookup_cache
from messaging.models import OutboundMessage
from messaging.policy.imports import SUPPRESSED, UNDELIVERABLE, refused_among
from messaging.sql_paths import postgres_fast_paths
from messaging.state_version import bump_on_commit, wake_on_commit
from webhooks.inbox import open_windows

MAX_BATCH = 1000
MAX_TEXT = 4096
# A validity longer than this is a mistake (a ttl in milliseconds?): refused, not capped.
MAX_VALIDITY = timedelta(days=30)


class SendRefused(ValueError):
    """A message that cannot be queued: what is wrong (code), in words, and where (field)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "field": self.field}


@dataclass(frozen=True)
class MessageSpec:
    """One message to one recipient: a template (with variables or components) or text.

    `variables` use the CSV's column names (`1`, `2` or `var1`… for positional templates,
    the variable names for named ones, `header_media` for a media header, `button_<n>`), so a
    message renders exactly as the same row of a campaign file would.
    """

    to: str
    template: str | None = None
    language: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    components: list[dict[str, Any]] | None = None
    text: str | None = None
    preview_url: bool = False
    # Validity: not sent by then, the message ends `expired` (and is never sent). Either an
    # absolute time or seconds from acceptance; both or neither.
    valid_until: datetime | None = None
    ttl_seconds: float | None = None


def stream_for(sender: SenderNumber) -> Campaign:
    """The running transactional stream of `sender`, created on first use."""
    existing = Campaign.objects.filter(sender=sender, kind=Campaign.Kind.TRANSACTIONAL).first()
    if existing is not None:
        return existing
    now = timezone.now()
    try:
        with transaction.atomic():
            stream = Campaign.objects.create(
                name=f"Transactional {sender.display_number}",
                kind=Campaign.Kind.TRANSACTIONAL,
                sender=sender,
                status=Campaign.Status.RUNNING,
                priority=Campaign.TRANSACTIONAL_PRIORITY,
                start_at=now,
                started_at=now,
            )
    except IntegrityError:  # a concurrent first send created it
        return Campaign.objects.get(sender=sender, kind=Campaign.Kind.TRANSACTIONAL)
    bump_on_commit()
    return stream


@dataclass
class _Planned:
    index: int
    phone: str
    template_id: int | None
    parameters: Any
    valid_until: datetime | None = None


def validity(spec: MessageSpec, now: datetime) -> datetime | None:
    """The message's valid_until from its ttl or its own, checked; SendRefused if unusable."""
    if spec.valid_until is not None and spec.ttl_seconds is not None:
        raise SendRefused(
            "invalid_validity", "give ttl_seconds or valid_until, not both", "ttl_seconds"
        )
    if spec.ttl_seconds is not None:
        if spec.ttl_seconds <= 0:
            raise SendRefused("invalid_validity", "ttl_seconds must be positive", "ttl_seconds")
        until = now + timedelta(seconds=spec.ttl_seconds)
        where = "ttl_seconds"
    elif spec.valid_until is not None:
        until = spec.valid_until
        where = "valid_until"
        if timezone.is_naive(until):
            raise SendRefused(
                "invalid_validity", "valid_until needs a UTC offset (…Z or …+02:00)", where
            )
        if until <= now:
            raise SendRefused("expired", f"valid_until {until.isoformat()} is already past", where)
    else:
        return None
    if until - now > MAX_VALIDITY:
        raise SendRefused(
            "invalid_validity", f"at most {MAX_VALIDITY.days} days of validity", where
        )
    return until


def _plan(
    index: int,
    spec: MessageSpec,
    sender: SenderNumber,
    templates: dict,
    region: str,
    now: datetime,
) -> _Planned:
    until = validity(spec, now)
    planned = _plan_message(index, spec, sender, templates, region)
    planned.valid_until = until
    return planned


def _plan_message(
    index: int, spec: MessageSpec, sender: SenderNumber, templates: dict, region: str
) -> _Planned:
    phone, why = normalise_phone(spec.to or "", region)
    if phone is None:
        raise SendRefused("invalid_phone", f"{spec.to!r}: {why}", "to")
    if (spec.text is None) == (spec.template is None):
        raise SendRefused("invalid_message", "give either a template or a text", "template")
    if spec.text is not None:
        if not spec.text.strip():
            raise SendRefused("invalid_text", "the text is empty", "text")
        if len(spec.text) > MAX_TEXT:
            raise SendRefused("invalid_text", f"the text is over {MAX_TEXT} characters", "text")
        return _Planned(index, phone, None, {"body": spec.text, "preview_url": spec.preview_url})
    template = templates.get((spec.template, spec.language or ""))
    if template is None:
        raise SendRefused(
            "unknown_template",
            f"no template {spec.template}:{spec.language} on the account of "
            f"{sender.display_number}",
            "template",
        )
    if not template.is_sendable:
        raise SendRefused(
            "template_not_sendable", f"template {template} is {template.status}", "template"
        )
    if template.category.upper() == "MARKETING":
        # The stream has no sending window or frequency cap of its own: marketing goes
        # through a campaign, where those rules (and the +1 rule) apply.
        raise SendRefused(
            "marketing_template",
            f"template {template} is MARKETING: send it in a campaign (POST /api/v1/campaigns)",
            "template",
        )
    if spec.components is not None:
        return _Planned(index, phone, template.pk, spec.components)
    try:
        components = render_components(template, spec.variables)
    except CsvImportError as exc:  # TemplateVariableError is one too
        raise SendRefused("invalid_variables", str(exc), "variables") from exc
    return _Planned(index, phone, template.pk, components)


def _templates(account_id: int, names: set[str]) -> dict[tuple[str, str], MessageTemplate]:
    """(name, language) → template, for these names on the account; through the lookup cache
    (a template's status is then up to API_LOOKUP_CACHE_SECONDS old without Redis)."""
    found: dict[tuple[str, str], MessageTemplate] = {}
    missing = []
    for name in names:
        cached = lookup_cache.get(("templates", account_id, name))
        if cached is None:
            missing.append(name)
        else:
            found.update(cached)
    if missing:
        by_name: dict[str, dict[tuple[str, str], MessageTemplate]] = {n: {} for n in missing}
        for t in MessageTemplate.objects.filter(account_id=account_id, name__in=missing):
            by_name[t.name][(t.name, t.language)] = t
        for name, languages in by_name.items():
            if languages:  # an unknown name is not remembered: it may be synced any moment
                lookup_cache.put(("templates", account_id, name), languages)
            found.update(languages)
    return found


def send_batch(
    *, sender: SenderNumber, messages: Sequence[MessageSpec], default_region: str | None = None
) -> list[OutboundMessage | SendRefused]:
    """Queue every acceptable message in one transaction; one result per message, in order.

    A refused message (bad number, unknown template, opted out, closed window…) is returned
    as its SendRefused and does not stop the others.
    """
    if len(messages) > MAX_BATCH:
        raise SendRefused("batch_too_large", f"at most {MAX_BATCH} messages per batch", "messages")
    region = default_region or settings.WHATSAPP_DEFAULT_REGION
    templates = _templates(sender.account_id, {m.template for m in messages if m.template})
    results: list[OutboundMessage | SendRefused] = []
    planned: list[_Planned] = []
    now = timezone.now()
    for index, spec in enumerate(messages):
        try:
            planned.append(_plan(index, spec, sender, templates, region, now))
            results.append(SendRefused("pending", ""))  # replaced below
        except SendRefused as refused:
            results.append(refused)
    blocked = refused_among(p.phone for p in planned)
    text_phones = {p.phone for p in planned if p.template_id is None}
    windows = open_windows(sender_id=sender.pk, phones=text_phones)
    sendable: list[_Planned] = []
    for item in planned:
        why = blocked.get(item.phone)
        if why == SUPPRESSED:
            results[item.index] = SendRefused(
                "recipient_opted_out", f"{item.phone} has opted out", "to"
            )
        elif why == UNDELIVERABLE:
            results[item.index] = SendRefused(
                "not_on_whatsapp", f"{item.phone} was reported not on WhatsApp recently", "to"
            )
        elif item.template_id is None and item.phone not in windows:
            results[item.index] = SendRefused(
                "window_closed",
                f"{item.phone} has not written to {sender.display_number} in the last 24 "
                "hours: free-form text is only allowed inside that window; send a template",
                "text",
            )
        else:
            sendable.append(item)
    if sendable:
        rows = _enqueue_fast(sender, sendable) if postgres_fast_paths() else None
        if rows is None:
            stream = stream_for(sender)
            if stream.status != Campaign.Status.RUNNING:
                # The engine paused it (an error answer): staff resume it in admin.
                paused = SendRefused(
                    "stream_paused",
                    f"sending from {sender.display_number} is paused: {stream.pause_reason}",
                    "sender",
                )
                for item in sendable:
                    results[item.index] = paused
                return results
            with transaction.atomic():
                rows = _enqueue(sender, stream, sendable)
        for item, row in zip(sendable, rows, strict=True):
            results[item.index] = row
    return results


def _enqueue(
    sender: SenderNumber, stream: Campaign, items: list[_Planned]
) -> list[OutboundMessage]:
    phones = sorted({i.phone for i in items})
    Contact.objects.bulk_create([Contact(phone=p) for p in phones], ignore_conflicts=True)
    contacts = dict(Contact.objects.filter(phone__in=phones).values_list("phone", "pk"))
    now = timezone.now()
    rows = OutboundMessage.objects.bulk_create(
        OutboundMessage(
            campaign_id=stream.pk,
            contact_id=contacts[i.phone],
            template_id=i.template_id,
            sender_id=sender.pk,
            phone=i.phone,
            parameters=i.parameters,
            priority=stream.priority,
            transactional=True,
            next_attempt_at=now,
            valid_until=i.valid_until,
        )
        for i in items
    )
    Campaign.objects.filter(pk=stream.pk).update(total=F("total") + len(rows))
    _wake_sender(sender)
    return rows


def _wake_sender(sender: SenderNumber) -> None:
    # The dispatcher serves a stream's number only while it has rows: tell it at once; and
    # a sender loop already running claims these rows now, before the campaign rows it holds
    # (one round trip for both).
    wake_on_commit(sender.pk)


# Sender number id → its stream's id (a stream is never re-created for a number).
_stream_ids: dict[int, int] = {}

# The accept path's write in one statement (ORM: five statements, most of a send's server
# time): new contacts, the queue rows, the stream's total, and only while the stream runs.
_CONTACTS = Contact._meta.db_table
_QUEUE = OutboundMessage._meta.db_table
_CAMPAIGNS = Campaign._meta.db_table
_ENQUEUE_SQL = f"""
WITH v AS (
    SELECT * FROM json_to_recordset(%s::json) AS v(
        n int, phone text, template_id bigint, parameters jsonb, valid_until timestamptz)
), stream AS (
    SELECT id, priority FROM {_CAMPAIGNS}
    WHERE id = %s AND sender_id = %s AND kind = 'transactional' AND status = 'running'
), new_contacts AS (
    INSERT INTO {_CONTACTS} (phone, name, attributes, wa_id, created_at)
    SELECT DISTINCT v.phone, '', '{{}}'::jsonb, '', now() FROM v WHERE EXISTS (SELECT 1 FROM stream)
    ON CONFLICT (phone) DO NOTHING RETURNING id, phone
), contacts AS (
    SELECT id, phone FROM new_contacts
    UNION ALL
    -- The numbers as an array, not IN (SELECT … FROM v): the planner guesses 100 rows for
    -- json_to_recordset and then scanned the whole contacts table (0.8 ms at 9,000 contacts,
    -- growing with it) instead of probing the unique index.
    SELECT c.id, c.phone FROM {_CONTACTS} c WHERE c.phone = ANY(%s::text[])
), queued AS (
    INSERT INTO {_QUEUE} (campaign_id, contact_id, template_id, sender_id, phone, parameters,
        priority, transactional, status, attempts, next_attempt_at, claimed_by,
        error_category, error_detail, valid_until)
    SELECT s.id, c.id, v.template_id, %s, v.phone, v.parameters, s.priority, true, 0, 0,
        now(), '', '', '', v.valid_until
    FROM v CROSS JOIN stream s JOIN contacts c ON c.phone = v.phone ORDER BY v.n
    RETURNING id, phone, priority, next_attempt_at
), bump AS (
    UPDATE {_CAMPAIGNS} SET total = total + (SELECT count(*) FROM queued)
    WHERE id = (SELECT id FROM stream)
)
SELECT id, phone, priority, next_attempt_at FROM queued ORDER BY id
"""  # noqa: S608


def _enqueue_fast(sender: SenderNumber, items: list[_Planned]) -> list[OutboundMessage] | None:
    """The rows, written in one statement; None when the ORM path must decide (first send
    from the number, stream paused, or a contact created concurrently by another request)."""
    stream_id = _stream_ids.get(sender.pk)
    if stream_id is None:
        stream = stream_for(sender)
        _stream_ids[sender.pk] = stream_id = stream.pk
    values = [
        {
            "n": n,
            "phone": i.phone,
            "template_id": i.template_id,
            "parameters": i.parameters,
            "valid_until": i.valid_until.isoformat() if i.valid_until else None,
        }
        for n, i in enumerate(items)
    ]
    # One message is all or nothing in one statement, its own transaction outside a caller's
    # (no BEGIN and COMMIT round trips); several may be written in part, which must be undone.
    single = len(items) == 1
    with nullcontext() if single else transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _ENQUEUE_SQL,
                [
                    json.dumps(values, separators=(",", ":")),
                    stream_id,
                    sender.pk,
                    sorted({i.phone for i in items}),
                    sender.pk,
                ],
            )
            written = cursor.fetchall()
        if [phone for _, phone, _, _ in written] != [i.phone for i in items]:
            # Nothing written (the stream is not running, or gone), or a contact another
            # request created after this statement's snapshot: undo, and let the ORM path
            # (which sees it) decide.
            if not single:
                transaction.set_rollback(True)
            _stream_ids.pop(sender.pk, None)
            return None
        _wake_sender(sender)
    # Ids grow in insertion order, which is the order of `items` (ORDER BY v.n).
    return [
        OutboundMessage(
            pk=row_id,
            campaign_id=stream_id,
            template_id=item.template_id,
            sender_id=sender.pk,
            phone=phone,
            parameters=item.parameters,
            priority=priority,
            transactional=True,
            next_attempt_at=due,
            valid_until=item.valid_until,
        )
        for item, (row_id, phone, priority, due) in zip(items, written, strict=True)
    ]


def send_message(
    *, sender: SenderNumber, message: MessageSpec, default_region: str | None = None
) -> OutboundMessage:
    """Queue one message; raises SendRefused with what is wrong and where."""
    (result,) = send_batch(sender=sender, messages=[message], default_region=default_region)
    if isinstance(result, SendRefused):
        raise result
    return result
