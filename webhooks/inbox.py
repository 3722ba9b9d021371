"""Inbox reads: conversations (one sender number and one user) and a thread, interleaved by time.

A thread costs a constant number of queries whatever its length: one per source, each served by
its compound index (inbound_conversation, outbound_contact, autoreply_user, staffreply_user).
`window_closes_at` is the one rule for the 24 h customer service window (auto-replies and staff
replies and the API's free-form sends all ask it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Max, QuerySet
from django.utils import timezone

from campaigns.csv_import.rendering import message_text
from campaigns.models import Contact
from campaigns.suppression import suppressed_phones
from messaging.models import OutboundMessage, to_numbers
from webhooks.models import AutoReply, InboundMessage, StaffReply

THREAD_LIMIT = 100
# WhatsApp's customer service window: free-form messages only this long after the user's last
# message; outside it only a template may be sent.
WINDOW = timedelta(hours=24)


def window_closes_at(*, sender_id: int, user_phone: str) -> datetime | None:
    """When the user's customer service window closes (None: they never wrote). Open while
    this is in the future. One query on inbound_conversation."""
    latest = (
        InboundMessage.objects.filter(sender_id=sender_id, user_phone=user_phone)
        .order_by("-timestamp")
        .values_list("timestamp", flat=True)
        .first()
    )
    return _window_end(latest)


def _window_end(last_inbound_at: datetime | None) -> datetime | None:
    return None if last_inbound_at is None else last_inbound_at + WINDOW


def window_is_open(*, sender_id: int, user_phone: str, now: datetime | None = None) -> bool:
    closes = window_closes_at(sender_id=sender_id, user_phone=user_phone)
    return closes is not None and closes > (now or timezone.now())


def open_windows(*, sender_id: int, phones: Iterable[str], now: datetime | None = None) -> set[str]:
    """`window_is_open` for many phones at once (the API's batches): one grouped query."""
    phones = set(phones)
    if not phones:
        return set()
    now = now or timezone.now()
    latest = (
        InboundMessage.objects.filter(sender_id=sender_id, user_phone__in=phones)
        .values_list("user_phone")
        .annotate(last=Max("timestamp"))
        .order_by()
    )
    return {phone for phone, last in latest if last + WINDOW > now}


@dataclass(frozen=True)
class Person:
    phone: str
    name: str  # the contact's name, else the WhatsApp profile name they wrote with
    opted_out: bool  # suppressed, or the contact opted out
    window_closes_at: datetime | None

    @property
    def window_open(self) -> bool:
        return self.window_closes_at is not None and self.window_closes_at > timezone.now()


def person(*, sender_id: int, user_phone: str) -> Person:
    """Who the conversation is with: three small indexed queries (contact, their latest
    message for the window and profile name, suppression)."""
    contact = Contact.objects.filter(phone=user_phone).only("name", "opted_out_at").first()
    latest = (
        InboundMessage.objects.filter(sender_id=sender_id, user_phone=user_phone)
        .order_by("-timestamp")
        .values_list("timestamp", "user_name")
        .first()
    )
    opted_out = bool(contact and contact.opted_out_at) or bool(
        user_phone and suppressed_phones([user_phone])
    )
    return Person(
        phone=user_phone,
        name=(contact.name if contact else "") or (latest[1] if latest else ""),
        opted_out=opted_out,
        window_closes_at=_window_end(latest[0] if latest else None),
    )


@dataclass(frozen=True)
class ThreadItem:
    at: datetime
    direction: str  # "in" or "out"
    kind: str  # message type, template name, or "auto-reply"
    text: str
    status: str
    detail: str


def conversations(*, sender_id: int | None = None) -> QuerySet:
    """(sender_id, user_phone, last, messages) rows, newest conversation first."""
    rows = InboundMessage.objects.all()
    if sender_id is not None:
        rows = rows.filter(sender_id=sender_id)
    return (
        rows.values("sender_id", "user_phone")
        .annotate(last=Max("timestamp"), messages=Count("id"))
        .order_by("-last", "user_phone")
    )


def _outbound_time(row: OutboundMessage) -> datetime:
    return row.accepted_at or row.sent_at or row.failed_at or row.next_attempt_at


def thread(*, sender_id: int, user_phone: str, limit: int = THREAD_LIMIT) -> list[ThreadItem]:
    """The latest `limit` messages each way, oldest first, in exactly four queries."""
    inbound = InboundMessage.objects.filter(sender_id=sender_id, user_phone=user_phone).order_by(
        "-timestamp"
    )[:limit]
    outbound = (
        OutboundMessage.objects.filter(to_numbers([user_phone]), sender_id=sender_id)
        .select_related("campaign", "template")
        .order_by("-id")[:limit]
    )
    replies = AutoReply.objects.filter(sender_id=sender_id, user_phone=user_phone).order_by(
        "-created_at"
    )[:limit]
    items = [
        ThreadItem(
            m.timestamp,
            "in",
            m.type,
            m.text,
            "",
            f"campaign {m.campaign_id}" if m.campaign_id else "",
        )
        for m in inbound
    ]
    items += [
        ThreadItem(
            _outbound_time(o),
            "out",
            o.template.name if o.template else "text",
            # A row without a template is a free-form text (the API's, inside the window).
            message_text(o.template, o.parameters)
            if o.template
            else str((o.parameters or {}).get("body", "")),
            o.get_status_display(),
            f"{o.campaign.name}"
            + (f" · error {o.error_code} ({o.error_category})" if o.error_code else ""),
        )
        for o in outbound
    ]
    items += [
        ThreadItem(
            r.created_at, "out", "auto-reply", r.text, "failed" if r.error else "sent", r.error
        )
        for r in replies
    ]
    staff = (
        StaffReply.objects.filter(sender_id=sender_id, user_phone=user_phone)
        .order_by("-created_at")
        .select_related("created_by", "template")[:limit]
    )
    items += [
        ThreadItem(
            r.created_at,
            "out",
            f"template {r.template.name}" if r.template else "staff reply",
            r.text,
            "failed" if r.error else "sent",
            r.error or (f"by {r.created_by}" if r.created_by else ""),
        )
        for r in staff
    ]
    items.sort(key=lambda item: item.at)
    return items[-limit:]
