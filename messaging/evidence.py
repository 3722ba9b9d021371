"""In-doubt sends reconciled by evidence: is the webhook pipeline known to work for a number?

A row is in doubt (`unknown`) when its request may have reached the API but no answer came
(a timeout or reset after the request was written, or a worker that died holding the row). Its
own status webhook, matched by `biz_opaque_callback_data`, settles it. When none came within
SENDER_RECONCILE_SECONDS, SENDER_UNKNOWN_POLICY decides:

- `evidence` (default): re-send only if statuses have arrived for messages of the same number
  sent after the row went in doubt. Had the API taken the row, its webhook
  would have come with theirs, so a re-send is very unlikely to be a duplicate. Otherwise the
  row stays unknown, marked HELD_FOR_EVIDENCE: not sent, shown to staff, alerted on, and looked
  at again by every maintenance run (re-sent when evidence appears, settled by a late webhook);
- `resend`: re-send whatever the evidence (a duplicate whenever webhooks are not arriving);
- `hold`: park every such row for staff (status held).

The trade-off is in README.md ("Crash safety") and docs/architecture.md ("In-doubt sends").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet
from django.utils import timezone

from messaging.models import OutboundMessage, OutboundStatus, StatusEvidence
from messaging.sql_paths import postgres_fast_paths

S = OutboundStatus
POLICIES = ("evidence", "resend", "hold")
# What an in-doubt row held for want of evidence carries in `error_category` (the send
# policy's "wait:" keys, messaging.selectors.POLICY_WAITS); its status stays unknown, so its
# own late webhook can still settle it.
HELD_FOR_EVIDENCE = "wait:webhooks"
HELD_DETAIL = "held: no status webhook has arrived for a later message of this number"
RESENT_DETAIL = {
    "evidence": "re-sent: later messages of this number had their statuses, this one none",
    "resend": "re-sent: no status webhook within the reconcile window",
}
SETTLED_DETAIL = "settled by its own status webhook after being held"
# A row whose worker died this often while holding it is parked for staff whatever the
# policy: it may be what kills the workers.
MAX_LOST_CLAIMS = 5
LOST_DETAIL = f"held: workers died holding it {MAX_LOST_CLAIMS} times or more"

_TABLE = StatusEvidence._meta.db_table


def note_statuses(latest_accepted: Mapping[int, datetime]) -> None:
    """Record that status webhooks arrived for numbers' messages: sender id -> the latest time
    by which one of them had been sent. Called by the status ladder in the transaction that
    applied them: one statement per batch, rows locked in sender order (the webhook drain
    runs one at a time; a re-match of pending statuses may run beside it)."""
    if not latest_accepted:
        return
    latest_accepted = dict(sorted(latest_accepted.items()))
    now = timezone.now()
    if postgres_fast_paths():
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {_TABLE} AS e (sender_id, accepted_until, seen_at) "  # noqa: S608
                "SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) "
                "ON CONFLICT (sender_id) DO UPDATE SET accepted_until = EXCLUDED.accepted_until,"
                " seen_at = EXCLUDED.seen_at WHERE e.accepted_until < EXCLUDED.accepted_until",
                [
                    list(latest_accepted),
                    list(latest_accepted.values()),
                    [now] * len(latest_accepted),
                ],
            )
        return
    with transaction.atomic():
        for sender_id, at in latest_accepted.items():
            row, created = StatusEvidence.objects.get_or_create(
                sender_id=sender_id, defaults={"accepted_until": at, "seen_at": now}
            )
            if not created and row.accepted_until < at:
                StatusEvidence.objects.filter(pk=sender_id).update(accepted_until=at, seen_at=now)


def has_evidence() -> Exists:
    """The rule, for a queryset of in-doubt rows: statuses have arrived for a message of the
    row's number sent after the row went in doubt (`claimed_at`: when the answer was lost,
    or when the dead worker claimed it). One primary-key probe per row."""
    return Exists(
        StatusEvidence.objects.filter(
            sender_id=OuterRef("sender_id"), accepted_until__gt=OuterRef("claimed_at")
        )
    )


@dataclass(frozen=True)
class Reconciled:
    resent: int = 0
    held: int = 0  # newly held this run (policy `hold`, no evidence yet, or lost claims)


def reconcile_unknown(
    *, window_seconds: float, policy: str, now: datetime | None = None
) -> Reconciled:
    """Unknown rows no webhook settled within the window: re-send, hold, or wait for evidence.

    Bounded: the rows are read from the small in-doubt index (status sending/unknown by
    `claimed_at`), and rows held for evidence are looked at again on every run.
    """
    now = now or timezone.now()
    stale = OutboundMessage.objects.filter(
        status=S.UNKNOWN, claimed_at__lt=now - timedelta(seconds=window_seconds)
    )
    with transaction.atomic():
        lost = _hold_lost_claims(stale)
        if policy == "hold":
            return Reconciled(held=lost + stale.update(status=S.HELD))
        if policy == "resend":
            return Reconciled(resent=_resend(stale, policy), held=lost)
        resent = _resend(stale.filter(has_evidence()), policy)
        held = stale.exclude(error_category=HELD_FOR_EVIDENCE).update(
            error_category=HELD_FOR_EVIDENCE, error_detail=HELD_DETAIL
        )
    return Reconciled(resent=resent, held=lost + held)


def _resend(rows: QuerySet[OutboundMessage], policy: str) -> int:
    return rows.update(
        status=S.RETRY,
        next_attempt_at=timezone.now(),  # the real time, not the judged one: due at once
        error_category="",
        error_detail=RESENT_DETAIL[policy],
    )


def _hold_lost_claims(stale: QuerySet[OutboundMessage]) -> int:
    return stale.filter(lost_claims__gte=MAX_LOST_CLAIMS).update(
        status=S.HELD, error_category="", error_detail=LOST_DETAIL
    )


@dataclass(frozen=True)
class HeldNumber:
    """A number whose in-doubt rows are held because its webhooks are not known to arrive."""

    sender_id: int
    held: int
    since: datetime  # the oldest held row went in doubt then
    statuses_seen_until: datetime | None  # StatusEvidence.accepted_until, None: never


def held_by_number() -> list[HeldNumber]:
    """Numbers with rows held for evidence, with how many and since when: one query on the
    in-doubt index, plus one for the evidence rows of those numbers."""
    rows = (
        OutboundMessage.objects.filter(status=S.UNKNOWN, error_category=HELD_FOR_EVIDENCE)
        .values_list("sender_id")
        .annotate(n=Count("*"), since=Min("claimed_at"))
        .order_by("sender_id")
    )
    held = list(rows)
    if not held:
        return []
    seen = dict(
        StatusEvidence.objects.filter(sender_id__in=[s for s, _n, _a in held]).values_list(
            "sender_id", "accepted_until"
        )
    )
    return [HeldNumber(s, n, since, seen.get(s)) for s, n, since in held]


def held_filter() -> Q:
    """Rows held for want of evidence (the admin's filter, the campaign's waiting reasons)."""
    return Q(status=S.UNKNOWN, error_category=HELD_FOR_EVIDENCE)
