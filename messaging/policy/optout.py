"""What opting out means, in one place: the number is suppressed for every campaign and every
message to it that has not gone yet is cancelled, in one transaction.

Every path calls `opt_out`: staff (contact and suppression admin, `manage.py suppress`),
keywords, `user_preferences`, and the 131050 answer. Messages a worker has already claimed are
dropped by the worker itself before they are sent: `opt_out` bumps the suppression version on
commit and the sender re-checks the numbers it holds (messaging/sender.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from campaigns.models import Contact, Suppression
from campaigns.suppression import phone_hash_sql, phone_hashes, suppressed_phones
from messaging import state_version
from messaging.integrations.events.payloads import publish_opt_ins, publish_opt_outs
from messaging.models import OutboundMessage, OutboundStatus, to_numbers
from messaging.sql_paths import postgres_fast_paths

logger = logging.getLogger(__name__)

# Not yet handed to a worker: cancelled at once. A claimed row (sending) is the worker's.
CANCELLABLE = (OutboundStatus.QUEUED, OutboundStatus.RETRY, OutboundStatus.HELD)
SUPPRESSED_DETAIL = "number opted out"


@dataclass(frozen=True)
class OptOutResult:
    numbers: int
    cancelled: int


@transaction.atomic
def opt_out(*, phones: Iterable[str], source: str, reason: str = "") -> OptOutResult:
    """Suppress the numbers and cancel their not-yet-sent messages in every campaign."""
    numbers = sorted(set(phones))
    if not numbers:
        return OptOutResult(0, 0)
    hashes = phone_hashes(numbers)
    Suppression.objects.bulk_create(
        [
            Suppression(phone=p, phone_hash=hashes[p], source=source, reason=reason[:255])
            for p in numbers
        ],
        ignore_conflicts=True,
    )
    Contact.objects.filter(phone__in=numbers, opted_out_at__isnull=True).update(
        opted_out_at=timezone.now()
    )
    cancelled = cancel_pending_to(phones=numbers, detail=SUPPRESSED_DETAIL)
    state_version.bump_on_commit(state_version.SUPPRESSIONS)
    publish_opt_outs(phones=numbers, source=source, reason=reason)  # outbound events
    logger.info(
        "opt-out of %d number(s) (%s), %d queued message(s) cancelled",
        len(numbers),
        source,
        cancelled,
    )
    return OptOutResult(len(numbers), cancelled)


@transaction.atomic
def opt_in(*, phones: Iterable[str], source: str | None = None) -> int:
    """Lift suppressions (all of them, or only those `source` set). Returns how many."""
    rows = Suppression.objects.filter(phone__in=list(phones))
    if source is not None:
        rows = rows.filter(source=source)
    lifted = list(rows.values_list("phone", flat=True))
    rows.delete()
    Contact.objects.filter(phone__in=lifted).update(opted_out_at=None)
    publish_opt_ins(phones=[p for p in lifted if p])  # outbound events
    return len(lifted)


def cancel_pending_to(*, phones: list[str], detail: str) -> int:
    """Cancel the not-yet-claimed messages to these numbers, in every campaign."""
    return OutboundMessage.objects.filter(to_numbers(phones), status__in=CANCELLABLE).update(
        status=OutboundStatus.CANCELLED, error_detail=detail
    )


def suppressed_sql(phone: str) -> tuple[str, list[Any]]:
    """A SQL predicate (and its parameters), true when the number in column expression `phone`
    may not be queued: the set-based twin of `suppressed_among`, for imports and copies done in
    one statement. Suppressions match on the hash: an erased contact's has no number left.
    `Contact.opted_out_at` is not consulted here nor anywhere a message is let through: it is
    the contact's display of the suppression, written by `opt_out`/`opt_in` beside it, so
    the claim, the imports and the API judge by the one list."""
    suppression = Suppression._meta.db_table
    hashed, params = phone_hash_sql(phone)
    return (
        # EXISTS, never NULL, so NOT (…) reads right too.
        f"EXISTS (SELECT 1 FROM {suppression} s WHERE s.phone_hash = {hashed})",  # noqa: S608
        list(params),
    )


def suppressed_numbers() -> QuerySet[Suppression, str | None]:
    """The suppressed numbers still known in clear, as a subquery (`phone__in=`; an erased
    contact's entry has no number, and its queue rows no longer carry it either)."""
    return Suppression.objects.filter(phone__isnull=False).values_list("phone", flat=True)


def suppressed_among(phones: Iterable[str]) -> set[str]:
    """The numbers of `phones` that no message may go to (one indexed query)."""
    numbers = list(set(phones))
    if not numbers:
        return set()
    if not postgres_fast_paths():
        return suppressed_phones(numbers)
    # PostgreSQL hashes the numbers (suppressed_sql), from one array parameter: the claim and
    # the sender's re-check of the rows it holds ask about thousands of numbers, and an HMAC
    # and a placeholder each in Python would keep the pacer from the GIL.
    predicate, params = suppressed_sql("p")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT p FROM unnest(%s::text[]) AS p WHERE {predicate}",  # noqa: S608
            [numbers, *params],
        )
        return {phone for (phone,) in cursor.fetchall()}


def mark_undeliverable(codes: dict[str, int]) -> int:
    """Mark contacts "not on WhatsApp" (131026): distinct from an opt-out, and it fades."""
    now = timezone.now()
    marked = 0
    for code in sorted(set(codes.values())):
        phones = [p for p, c in codes.items() if c == code]
        marked += Contact.objects.filter(phone__in=phones).update(
            undeliverable_at=now, undeliverable_code=code
        )
    return marked


def undeliverable_since() -> datetime:
    """Marks newer than this still keep a number out of new campaigns."""
    return timezone.now() - timedelta(days=settings.POLICY_UNDELIVERABLE_DAYS)
