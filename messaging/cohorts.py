"""Recipients of a campaign grouped by what happened to their message: the one definition of
each group, used by the results export and by follow-up campaigns (cohorts).

"Replied" means an inbound message attributed to the campaign (webhooks/inbound.py decides the
attribution) from the recipient's number.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.db.models import Exists, OuterRef, Q, QuerySet, TextChoices
from django.utils import timezone

from messaging.errors import ERROR_TABLE, HTTP_TRANSIENT_RULE, UNKNOWN_RULE, is_retryable
from messaging.models import OutboundMessage, OutboundStatus

S = OutboundStatus

# Categories of failures worth another try later (their rule retries): throttling, transient,
# marketing limit… Derived from the error table, never listed twice.
RETRYABLE_CATEGORIES = sorted(
    {
        str(rule.category)
        for rule in (*ERROR_TABLE.values(), HTTP_TRANSIENT_RULE, UNKNOWN_RULE)
        if is_retryable(rule)
    }
)
# Rows the sender is done with and that did (or did not) reach the person. Not delivered:
# accepted or sent without a delivery receipt, failed, and expired (never sent: the campaign's
# valid_until passed first; the person never saw it, so a follow-up may well reach them).
# Cancelled rows stay out of every cohort: staff stopped them, or the person opted out after
# the claim (messaging.queue.cancel_claimed), and neither is a reason to write to them again.
_REACHED = (S.DELIVERED, S.READ)
_NOT_DELIVERED = (S.ACCEPTED, S.SENT, S.FAILED, S.EXPIRED)


class Outcome(TextChoices):
    DELIVERED_NOT_READ = "delivered_not_read", "delivered, not read"
    READ_NOT_REPLIED = "read_not_replied", "read, not replied"
    REPLIED = "replied", "replied"
    FAILED_RETRYABLE = "failed_retryable", "failed with a retryable reason"
    NOT_DELIVERED = (
        "not_delivered",
        "not delivered (failed, expired or no delivery receipt)",
    )
    EXPIRED = "expired", "expired (never sent before the campaign's validity ended)"
    DELIVERED = "delivered", "delivered (or read)"
    READ = "read", "read"
    FAILED = "failed", "failed"


# The outcomes a follow-up campaign can target (the rest only filter the export).
COHORTS = (
    Outcome.DELIVERED_NOT_READ,
    Outcome.READ_NOT_REPLIED,
    Outcome.FAILED_RETRYABLE,
    Outcome.REPLIED,
    Outcome.NOT_DELIVERED,
    Outcome.EXPIRED,
)


def replies_to_row() -> QuerySet[Any]:
    """Inbound messages answering the outer queue row: from its phone, to its sender,
    attributed to its campaign. Served by inbound_conversation (sender, user_phone, -timestamp).
    """
    inbound = apps.get_model("webhooks", "InboundMessage")
    return inbound.objects.filter(
        sender_id=OuterRef("sender_id"),
        user_phone=OuterRef("phone"),
        campaign_id=OuterRef("campaign_id"),
    )


def _replied() -> Exists:
    return Exists(replies_to_row())


def recipients(
    *,
    campaign_id: int,
    outcome: str | None = None,
    hours: float = 0,
    now: datetime | None = None,
) -> QuerySet[OutboundMessage]:
    """The campaign's queue rows in `outcome` (all rows when None), in send order.

    `hours`: for "delivered, not read" and "read, not replied", only rows delivered (read)
    at least that long ago, so people had time to act.
    """
    rows = OutboundMessage.objects.filter(campaign_id=campaign_id).order_by("id")
    if outcome is None or outcome == "":
        return rows
    if outcome not in Outcome.values:
        choices = ", ".join(Outcome.values)
        raise ValueError(f"unknown outcome {outcome!r}; choose one of: {choices}")
    if hours < 0:
        raise ValueError("hours must not be negative")
    before = (now or timezone.now()) - timedelta(hours=hours)
    match outcome:
        case Outcome.DELIVERED_NOT_READ:
            return rows.filter(status=S.DELIVERED, delivered_at__lte=before)
        case Outcome.READ_NOT_REPLIED:
            return rows.filter(status=S.READ, read_at__lte=before).filter(~_replied())
        case Outcome.REPLIED:
            return rows.filter(_replied())
        case Outcome.FAILED_RETRYABLE:
            return rows.filter(status=S.FAILED, error_category__in=RETRYABLE_CATEGORIES)
        case Outcome.NOT_DELIVERED:
            return rows.filter(status__in=_NOT_DELIVERED)
        case Outcome.DELIVERED:
            return rows.filter(status__in=_REACHED)
        case Outcome.EXPIRED:
            return rows.filter(status=S.EXPIRED)
        case Outcome.READ:
            return rows.filter(status=S.READ)
        case _:
            return rows.filter(Q(status=S.FAILED))
