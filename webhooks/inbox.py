"""Inbox reads: conversations (one sender number and one user) and a thread, interleaved by time.

A thread costs a constant number of queries whatever its length: one per source, each served by
its compound index (inbound_conversation, outbound_phone, autoreply_user).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, QuerySet

from messaging.models import OutboundMessage
from webhooks.models import AutoReply, InboundMessage

THREAD_LIMIT = 100


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
    """The latest `limit` messages each way, oldest first, in exactly three queries."""
    inbound = InboundMessage.objects.filter(sender_id=sender_id, user_phone=user_phone).order_by(
        "-timestamp"
    )[:limit]
    outbound = (
        OutboundMessage.objects.filter(phone=user_phone, sender_id=sender_id)
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
            o.template.name,
            "",
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
    items.sort(key=lambda item: item.at)
    return items[-limit:]
