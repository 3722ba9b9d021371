"""The last check before the HTTP request: run on every claimed batch, inside the claim's
transaction, so a row that may not go now never reaches the HTTP threads (and never shows as
"sending" to other workers).

For each row, in this order: a suppressed number is cancelled; a row whose recipient's window
is closed, who reached the frequency cap, or who would exceed the portfolio budget waits (its
next_attempt_at moves to the moment it may go, so the claim keeps reading the due index in
order and never rescans it); a row past its deadline, or whose wait ends after it, expires.
Rows that pass go out.

Validity is one rule for campaigns and rows: a row's deadline is the earlier of its
campaign's valid_until and its own (an API send's ttl), see `deadline`; past it, the row is
never sent and ends `expired`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from campaigns.models import Campaign
from messaging.models import PENDING_STATUSES, OutboundMessage
from messaging.models import OutboundStatus as S
from messaging.policy import budget, frequency
from messaging.policy.frequency import Cap
from messaging.policy.optout import SUPPRESSED_DETAIL, suppressed_among
from messaging.policy.windows import Window, opening, parse_days, parse_window, zones_for
from messaging.queue import ClaimedMessage, RowOutcome, record_outcomes
from messaging.sql_paths import postgres_fast_paths

# error_category of a waiting row: why it waits (the live page and the plan group by it).
WAIT_WINDOW = "wait:window"
WAIT_CAP = "wait:frequency_cap"
WAIT_BUDGET = "wait:budget"
EXPIRED_DETAIL = "could not go before the campaign's valid_until"
ROW_EXPIRED_DETAIL = "could not go before its valid_until"


def deadline(campaign_until: datetime | None, row_until: datetime | None) -> datetime | None:
    """The moment after which a row may no longer go: the earlier of the campaign's
    valid_until and the row's own (None: no limit)."""
    if campaign_until is None or row_until is None:
        return campaign_until or row_until
    return min(campaign_until, row_until)


def past(valid_until: datetime | None, now: datetime) -> bool:
    """Whether a deadline has passed (the same reading for a campaign and for a row)."""
    return valid_until is not None and now >= valid_until


def _expired_detail(campaign_until: datetime | None, row_until: datetime | None) -> str:
    if row_until is not None and (campaign_until is None or row_until < campaign_until):
        return ROW_EXPIRED_DETAIL
    return EXPIRED_DETAIL


@dataclass(frozen=True)
class CampaignRules:
    """What the gate needs to know about one campaign (built when the sender reads it)."""

    campaign_id: int
    valid_until: datetime | None = None
    window: Window | None = None
    cap: Cap | None = None
    # Templates of the campaign the cap counts (marketing); others pass it.
    capped_templates: frozenset[int] = frozenset()
    ledger: budget.Ledger | None = None  # None or limit None = no budget enforced

    @property
    def needs_timezone(self) -> bool:
        return self.window is not None

    def expired(self, now: datetime) -> bool:
        return past(self.valid_until, now)

    def deadline_of(self, message: ClaimedMessage) -> datetime | None:
        return deadline(self.valid_until, message.valid_until)


def rules_for(
    campaign: Campaign, *, categories: dict[int, str], ledger: budget.Ledger | None
) -> CampaignRules:
    """The gate's view of a campaign; `categories` maps its template ids to their category."""
    window = campaign_window(campaign, categories.values())
    cap = frequency.campaign_cap(campaign.frequency_cap)
    capped = frozenset(t for t, c in categories.items() if frequency.is_capped_category(c))
    return CampaignRules(campaign.pk, campaign.valid_until, window, cap, capped, ledger)


def campaign_window(campaign: Campaign, categories: Iterable[str]) -> Window | None:
    """The campaign's own window, else the marketing default for a campaign with a marketing
    template."""
    if campaign.window_start is not None and campaign.window_end is not None:
        return Window(campaign.window_start, campaign.window_end, parse_days(campaign.window_days))
    if any(c.upper() == "MARKETING" for c in categories):
        return parse_window(settings.POLICY_MARKETING_WINDOW, settings.POLICY_MARKETING_DAYS)
    return None


# Rows expired per statement (and per outbox insert) when a campaign expires: bulk, with the
# ids of a million-row campaign never held at once.
EXPIRE_CHUNK = 10_000
_QUEUE = OutboundMessage._meta.db_table
_EXPIRE_SQL = f"""
WITH due AS (
    SELECT id FROM {_QUEUE} WHERE campaign_id = %s AND status IN ({S.QUEUED}, {S.RETRY})
    LIMIT %s FOR UPDATE
)
UPDATE {_QUEUE} AS m SET status = {S.EXPIRED}, error_detail = %s, expired_at = %s
FROM due WHERE m.id = due.id AND m.status IN ({S.QUEUED}, {S.RETRY})
RETURNING m.id
"""  # noqa: S608


def expire_campaign(campaign_id: int, *, now: datetime | None = None) -> int:
    """A campaign past valid_until: its unsent rows end `expired` (counted, each reported as
    `message.expired` like every other status move) and it completes once nothing else is in
    flight; the campaign is reported once (`report_expiry`). Returns how many rows expired.

    Called again while rows come back from workers that held them, and by every worker of the
    number and maintenance at once.
    """
    from messaging.integrations.events.publish import publish_message_statuses
    from messaging.services import complete_if_finished

    now = now or timezone.now()
    with transaction.atomic():
        expired = 0
        while ids := _expire_some(campaign_id, now):
            publish_message_statuses([(row_id, S.EXPIRED) for row_id in ids])
            expired += len(ids)
        if expired:
            # After the rows, as every writer of both does (the claim, the record step).
            Campaign.objects.filter(pk=campaign_id).update(expired=F("expired") + expired)
            report_expiry(campaign_id, now=now)
    complete_if_finished(campaign_id=campaign_id)
    return expired


def report_expiry(campaign_id: int, *, now: datetime) -> bool:
    """`campaign.expired`, once per campaign: the caller's transaction ended unsent rows of the
    campaign because its valid_until passed (an expiry by a sender or maintenance, a claim's
    screen). Returns whether this call reported it.

    One conditional UPDATE decides, not a look at the rows: two expiries at once both saw no
    expired row committed and both reported. Under READ COMMITTED the second UPDATE waits for
    the first's commit and then finds the mark set (or, if the first rolled back, sets it).
    Called with the rows locked: the campaign's row after them, as every writer of both.
    """
    from messaging.integrations.events.payloads import publish_campaign_state

    unreported = Campaign.objects.filter(pk=campaign_id, expired_reported_at__isnull=True)
    if not unreported.update(expired_reported_at=now):
        return False
    publish_campaign_state(Campaign.objects.get(pk=campaign_id), state="expired")
    return True


def _expire_some(campaign_id: int, now: datetime) -> list[int]:
    """Up to EXPIRE_CHUNK unsent rows of the campaign end expired (one statement); their ids.
    A row a claim holds is waited for, then left alone (it is no longer unsent)."""
    if postgres_fast_paths():
        with connection.cursor() as cursor:
            cursor.execute(_EXPIRE_SQL, [campaign_id, EXPIRE_CHUNK, EXPIRED_DETAIL, now])
            return [row_id for (row_id,) in cursor.fetchall()]
    pending = OutboundMessage.objects.filter(campaign_id=campaign_id, status__in=PENDING_STATUSES)
    # Locked as the SQL does (a no-op on SQLite): ids another expiry ended meanwhile are left
    # out, not reported and counted a second time.
    ids = list(pending.select_for_update().values_list("pk", flat=True)[:EXPIRE_CHUNK])
    pending.filter(pk__in=ids).update(status=S.EXPIRED, error_detail=EXPIRED_DETAIL, expired_at=now)
    return ids


def expire_due_campaigns(*, now: datetime | None = None) -> int:
    """Every running or paused campaign whose valid_until has passed (maintenance)."""
    now = now or timezone.now()
    due = Campaign.objects.filter(
        status__in=(Campaign.Status.RUNNING, Campaign.Status.PAUSED), valid_until__lte=now
    ).values_list("pk", flat=True)
    return sum(expire_campaign(campaign_id, now=now) for campaign_id in due)


def expire_due_rows(*, now: datetime | None = None, limit: int = 10_000) -> int:
    """Unsent rows past their own valid_until that no claim saw in time (their number paused,
    or busy with other campaigns) end `expired`, counted and reported like the claim's.
    Returns how many (maintenance; a batch at a time, rows being claimed are skipped)."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            OutboundMessage.objects.filter(status__in=PENDING_STATUSES, valid_until__lte=now)
            .order_by("valid_until")
            .select_for_update(skip_locked=True)
            .values_list("pk", "attempts")[:limit]
        )
        outcomes = [
            RowOutcome(pk, S.EXPIRED, attempts, error_detail=ROW_EXPIRED_DETAIL)
            for pk, attempts in due
        ]
        return len(record_outcomes(outcomes, from_statuses=PENDING_STATUSES, now=now))


def screen(
    rows: list[ClaimedMessage], rules: CampaignRules, *, now: datetime
) -> tuple[list[ClaimedMessage], list[RowOutcome]]:
    """Decide, for each claimed row, whether it goes now (see the module docstring). Returns
    the rows that go, and the new state of the others (cancelled, waiting or expired). Rows
    expired because the campaign is past its deadline report the campaign (`report_expiry`)
    in the claim's transaction."""
    held: list[RowOutcome] = []
    suppressed = suppressed_among(m.phone for m in rows)
    waits: dict[int, tuple[datetime, str, str]] = {}
    candidates = []
    openings: dict[tuple[ZoneInfo, ...], datetime] = {}
    for message in rows:
        if message.phone in suppressed:
            held.append(_give_back(message, S.CANCELLED, detail=SUPPRESSED_DETAIL))
            continue
        if past(rules.deadline_of(message), now):
            detail = _expired_detail(rules.valid_until, message.valid_until)
            held.append(_give_back(message, S.EXPIRED, detail=detail))
            continue
        if rules.window is not None:
            zones = zones_for(message.phone, message.timezone)
            opens = openings.get(zones)
            if opens is None:  # a batch has few distinct zone sets: judge each once
                opens = openings[zones] = opening(rules.window, zones, now)
            if opens > now:
                names = "/".join(sorted({z.key for z in zones}))
                waits[message.id] = (opens, WAIT_WINDOW, f"window {rules.window} closed in {names}")
                continue
        candidates.append(message)
    candidates = _cap(candidates, rules, now, waits)
    candidates = _budget(candidates, rules, now, waits)
    by_id = {m.id: m for m in rows}
    for message_id, (until, category, detail) in waits.items():
        message = by_id[message_id]
        last = rules.deadline_of(message)
        if last is not None and until > last:
            why = _expired_detail(rules.valid_until, message.valid_until)
            held.append(_give_back(message, S.EXPIRED, detail=f"{detail}; {why}"))
        else:
            held.append(_give_back(message, None, at=until, category=category, detail=detail))
    if rules.expired(now) and any(h.status == S.EXPIRED for h in held):
        # A claim after the campaign's deadline (the sender's waker claims ahead between two
        # of the feeder's looks at it): the campaign expired here, not in expire_campaign.
        report_expiry(rules.campaign_id, now=now)
    return candidates, held


def _cap(
    rows: list[ClaimedMessage],
    rules: CampaignRules,
    now: datetime,
    waits: dict[int, tuple[datetime, str, str]],
) -> list[ClaimedMessage]:
    cap = rules.cap
    capped = {m.id for m in rows if cap is not None and m.template_id in rules.capped_templates}
    if cap is None or not capped:
        return rows
    phones = [m.phone for m in rows if m.id in capped]
    frequency.lock_numbers(phones)
    sends = frequency.recent_sends(
        phones, since=now - cap.period, now=now, excluding=[m.id for m in rows]
    )
    passed = []
    for message in rows:
        if message.id not in capped:
            passed.append(message)
            continue
        times = sends.setdefault(message.phone, [])
        free = frequency.free_at(cap, times, now)
        if free > now:
            waits[message.id] = (free, WAIT_CAP, f"frequency cap {cap} reached")
            continue
        times.append(now)  # a second row to the same person in this batch counts this one
        passed.append(message)
    return passed


def _budget(
    rows: list[ClaimedMessage],
    rules: CampaignRules,
    now: datetime,
    waits: dict[int, tuple[datetime, str, str]],
) -> list[ClaimedMessage]:
    ledger = rules.ledger
    if ledger is None or ledger.limit is None or not rows:
        return rows
    phones = [m.phone for m in rows]
    free = budget.in_service_window(phones, now)
    charged = sorted({p for p in phones if p not in free})
    if not charged:
        return rows
    admission = budget.ledgers().admit(ledger, charged, now, judging=[m.id for m in rows])
    passed = []
    for message in rows:
        if message.phone in free or message.phone in admission.admitted:
            passed.append(message)
            continue
        until = admission.next_free or now
        detail = f"messaging limit ({ledger.limit} recipients per 24 h) reached"
        waits[message.id] = (until, WAIT_BUDGET, detail)
    return passed


def _give_back(
    message: ClaimedMessage,
    status: int | None,
    *,
    at: datetime | None = None,
    category: str = "",
    detail: str = "",
) -> RowOutcome:
    """The claimed row's new state: back to where it was (waiting until `at`) or final. The
    claim counted an attempt that never happened: it is given back."""
    return RowOutcome(
        message.id,
        message.previous_status if status is None else status,
        max(0, message.attempts - 1),
        at,
        None,
        None,
        category,
        detail[:500],
    )
