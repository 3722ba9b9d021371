"""The canary: a share of a campaign's rows goes first, at a slow rate if asked; the rest is
held until the canary's statuses are in, then sent, or the campaign pauses with the figure
(docs/policy.md, "Canary").

- `begin` (called by messaging.services.start_campaign when a campaign first runs) picks the
  canary rows spread evenly over the queue (id order is the interleaved send order), spaces
  them 1/canary_rate s apart, and holds every other row: its next_attempt_at moves to HOLD
  with the `wait:canary` category. The claim reads the due index in order and never reaches
  a held row; only the verdict releases them.
- `check` is the verdict. It waits until no canary row is still to send, then until
  POLICY_CANARY_STATUS_SHARE of them have a final status (delivered, read or failed), or
  POLICY_CANARY_WAIT_SECONDS after the last one went. A failure rate that is over the
  threshold whatever the rest does pauses at once.
- A campaign whose canary failed and that staff resume sends the rest: the resume is the
  decision (`release`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max
from django.db.models.functions import Greatest
from django.utils import timezone

from campaigns.models import Campaign, SenderNumber, Suppression
from messaging.errors import Category, classify
from messaging.models import OutboundMessage
from messaging.models import OutboundStatus as S
from messaging.policy.breaker import (
    failure_threshold,
    opt_out_threshold,
    percent,
    recipient_caused,
    top_codes,
)
from messaging.state_version import bump_on_commit

logger = logging.getLogger(__name__)

WAIT_CANARY = "wait:canary"
HELD_DETAIL = "held until the canary's verdict"
# Where a held row waits: no claim ever reaches it; the verdict moves it to "now".
HOLD = datetime(9999, 1, 1, tzinfo=UTC)
RUNNING, PASSED, FAILED = "running", "passed", "failed"
PAUSE_PREFIX = "Canary"
_QUALITY_RANK = {"GREEN": 0, "UNKNOWN": 0, "YELLOW": 1, "RED": 2}
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")
_SENT = (S.ACCEPTED, S.SENT, S.DELIVERED, S.READ)


class CanaryError(ValueError):
    """A canary setting that cannot be read."""


def parse_percent(text: str) -> float:
    """'2%', '2' or '0.5 %' -> 2.0 / 0.5; 0 < value <= 100."""
    match = _PERCENT.match(text or "")
    if not match or not 0 < float(match.group(1)) <= 100:
        raise CanaryError(f"canary {text!r}: expected a share of the rows, e.g. 2% (0-100]")
    return float(match.group(1))


def parse_share(text: str, what: str) -> float:
    """A threshold: '20%' or '0.2' -> 0.2."""
    value = (text or "").strip()
    try:
        share = float(value.rstrip("% ")) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise CanaryError(f"{what} {text!r}: expected a share, e.g. 20% or 0.2") from None
    if not 0 <= share <= 1:
        raise CanaryError(f"{what} {text!r}: must be between 0 and 100 %")
    return share


# The Campaign fields `settings_problem` judges.
SETTINGS_FIELDS = ("canary_percent", "canary_rate", "max_failure_rate", "max_opt_out_rate")


def settings_problem(fields: Mapping[str, Any]) -> str:
    """What is wrong with a campaign's canary and threshold fields ('' when fine), given by
    their Campaign field names (a missing or empty one is unset): the one check for the
    wizard, the admin form and the command."""
    percent_ = fields.get("canary_percent") or 0.0
    rate = fields.get("canary_rate")
    max_failure, max_opt_out = fields.get("max_failure_rate"), fields.get("max_opt_out_rate")
    if not 0 <= percent_ <= 100:
        return "The canary share must be between 0 and 100 %."
    if rate is not None and rate <= 0:
        return "The canary rate must be above 0 messages per second."
    if rate is not None and percent_ == 0:
        return "A canary rate needs a canary share."
    for name, value in (("failure", max_failure), ("opt-out", max_opt_out)):
        if value is not None and not 0 <= value <= 1:
            return f"The maximum {name} rate must be a share between 0 and 1."
    return ""


def share_of(campaign: Campaign) -> Decimal:
    """The canary's share of the rows, exact (as the SQL's numeric reads it)."""
    return Decimal(repr(float(campaign.canary_percent))) / 100


def place_in_canary(n: int, share: Decimal) -> int | None:
    """Row n (1-based, in send order) is in the canary when ceil(n × share) steps up at n: an
    even spread, the first row included, ceil(N × share) rows in all. Returns its place k in
    the canary (1-based), else None. `_BEGIN_SQL` says the same in SQL."""
    k = math.ceil(n * share)
    return k if k > math.ceil((n - 1) * share) else None


def gap_seconds(campaign: Campaign) -> float:
    """How far apart canary rows are due: 1 / canary_rate, 0 without a rate."""
    return 1.0 / campaign.canary_rate if campaign.canary_rate else 0.0


def waits_for_verdict(campaign: Campaign) -> bool:
    """The campaign's rows beyond the canary wait for a verdict: a canary not begun yet (it
    begins when the campaign first runs) or running."""
    if campaign.kind != "campaign" or campaign.canary_percent <= 0:
        return False
    return campaign.canary_state in ("", RUNNING)


def failed_in_canary(status: int, code: int | None) -> bool:
    """A canary row that already counts as failed although it waits to retry (a 131049 a
    day away): the verdict does not wait for it (`measure`)."""
    return status == S.RETRY and recipient_caused(code)


def verdict_by(last_sent_at: datetime) -> datetime:
    """The latest the verdict comes once every canary row went: POLICY_CANARY_WAIT_SECONDS
    after the last (sooner when POLICY_CANARY_STATUS_SHARE of its statuses are in)."""
    return last_sent_at + timedelta(seconds=settings.POLICY_CANARY_WAIT_SECONDS)


def begin(campaign: Campaign, *, now: datetime | None = None) -> int:
    """Pick and pace the canary, hold the rest (in the caller's transaction). Returns the
    canary's size; 0 when the campaign has no canary to run."""
    if campaign.canary_percent <= 0 or campaign.canary_state or campaign.kind != "campaign":
        return 0
    now = now or timezone.now()
    gap = gap_seconds(campaign)
    share = share_of(campaign)
    if connection.vendor == "postgresql":
        size = _begin_postgres(campaign.pk, share, gap, now)
    else:
        size = _begin_orm(campaign.pk, share, gap, now)
    number = SenderNumber.objects.get(pk=campaign.sender_id)
    campaign.canary_state = RUNNING
    campaign.canary_size = size
    campaign.canary_report = {"quality": number.quality_rating, "number_status": number.status}
    Campaign.objects.filter(pk=campaign.pk).update(
        canary_state=RUNNING, canary_size=size, canary_report=campaign.canary_report
    )
    logger.info("campaign %s: canary of %d row(s), the rest held", campaign.pk, size)
    return size


_TABLE = OutboundMessage._meta.db_table
# Row n (1-based, id order) is in the canary when ceil(n × share) steps up at n
# (place_in_canary, which the plan uses). k is its place in the canary.
_BEGIN_SQL = f"""
WITH ranked AS (
    SELECT id, row_number() OVER (ORDER BY id) AS n
    FROM {_TABLE} WHERE campaign_id = %(campaign)s AND status = {S.QUEUED}
), marked AS (
    SELECT id, ceil(n * %(share)s::numeric) AS k,
           ceil(n * %(share)s::numeric) > ceil((n - 1) * %(share)s::numeric) AS canary
    FROM ranked
), moved AS (
    UPDATE {_TABLE} AS m SET
        next_attempt_at = CASE WHEN marked.canary
            THEN %(now)s::timestamptz + (marked.k - 1) * %(gap)s * interval '1 second'
            ELSE %(hold)s END,
        error_category = CASE WHEN marked.canary THEN m.error_category ELSE %(category)s END,
        error_detail = CASE WHEN marked.canary THEN m.error_detail ELSE %(detail)s END
    FROM marked WHERE m.id = marked.id
    RETURNING marked.canary
)
SELECT count(*) FILTER (WHERE canary) FROM moved
"""  # noqa: S608


def _begin_postgres(campaign_id: int, share: Decimal, gap: float, now: datetime) -> int:
    params: dict[str, Any] = {
        "campaign": campaign_id,
        "share": share,
        "gap": gap,
        "now": now,
        "hold": HOLD,
        "category": WAIT_CANARY,
        "detail": HELD_DETAIL,
    }
    with connection.cursor() as cursor:
        cursor.execute(_BEGIN_SQL, params)
        return int(cursor.fetchone()[0] or 0)


def _begin_orm(campaign_id: int, share: Decimal, gap: float, now: datetime) -> int:
    ids = list(
        OutboundMessage.objects.filter(campaign_id=campaign_id, status=S.QUEUED)
        .order_by("id")
        .values_list("id", flat=True)
    )
    canary: list[int] = []
    held: list[int] = []
    for n, row_id in enumerate(ids, start=1):
        (canary if place_in_canary(n, share) is not None else held).append(row_id)
    for k, row_id in enumerate(canary):
        OutboundMessage.objects.filter(pk=row_id).update(
            next_attempt_at=now + timedelta(seconds=k * gap)
        )
    for start in range(0, len(held), 1000):
        OutboundMessage.objects.filter(pk__in=held[start : start + 1000]).update(
            next_attempt_at=HOLD, error_category=WAIT_CANARY, error_detail=HELD_DETAIL
        )
    return len(canary)


def release(campaign_id: int, *, now: datetime | None = None) -> int:
    """The held rows become due now, in their order. Returns how many."""
    now = now or timezone.now()
    released = OutboundMessage.objects.filter(
        campaign_id=campaign_id, status=S.QUEUED, next_attempt_at=HOLD
    ).update(next_attempt_at=now, error_category="", error_detail="")
    bump_on_commit()
    return released


@dataclass
class Figures:
    """The canary's rows as they stand (held rows are not counted)."""

    eligible: int = 0  # canary rows that could go (not cancelled, not expired)
    pending: int = 0  # still to send, in flight or in doubt
    settled: int = 0  # delivered, read or failed
    failed: int = 0  # failed (or waiting to retry) for recipient reasons
    by_code: dict[int, int] = field(default_factory=dict)
    blocked_codes: int = 0  # spam / restriction answers
    opt_outs: int = 0
    last_sent_at: datetime | None = None

    def failure_rate(self) -> float:
        return self.failed / self.eligible if self.eligible else 0.0

    def opt_out_rate(self) -> float:
        return self.opt_outs / self.eligible if self.eligible else 0.0


def measure(campaign: Campaign) -> Figures:
    """Bounded by the canary's size: the to-send part is a range of the due index below HOLD,
    the rest the (campaign, status) index past the queue statuses, where only canary rows
    (and held rows an opt-out cancelled) can be before the verdict."""
    figures = Figures()
    rows = list(
        OutboundMessage.objects.filter(
            campaign_id=campaign.pk, status__in=(S.QUEUED, S.RETRY), next_attempt_at__lt=HOLD
        )
        .values_list("status", "error_code")
        .annotate(n=Count("*"))
        .order_by()
    )
    later = (
        OutboundMessage.objects.filter(campaign_id=campaign.pk, status__gte=S.SENDING)
        .values_list("status", "error_code")
        .annotate(n=Count("*"), last=Max(Greatest("accepted_at", "failed_at")))
        .order_by()
    )
    for status, code, n, last in later:
        rows.append((status, code, n))
        if last is not None and (figures.last_sent_at is None or last > figures.last_sent_at):
            figures.last_sent_at = last
    for status, code, n in rows:
        if status in (S.CANCELLED, S.EXPIRED):
            continue
        figures.eligible += n
        if code is not None and classify(code).category == Category.SPAM:
            figures.blocked_codes += n
        if failed_in_canary(status, code):
            _failure(figures, code, n)  # failed this time; its retry is a day away
        elif status in (S.QUEUED, S.RETRY, S.SENDING, S.UNKNOWN, S.HELD):
            figures.pending += n
        elif status == S.FAILED:
            figures.settled += n
            if recipient_caused(code):
                _failure(figures, code, n)
        elif status in (S.DELIVERED, S.READ):
            figures.settled += n
    figures.opt_outs = _opt_outs(campaign)
    return figures


def _failure(figures: Figures, code: int | None, n: int) -> None:
    figures.failed += n
    if code is not None:
        figures.by_code[code] = figures.by_code.get(code, 0) + n


def _opt_outs(campaign: Campaign) -> int:
    """Canary recipients who opted out since it began: a keyword, WhatsApp's "stop" or a
    131050 answer (the opt-out service records them all as suppressions)."""
    since = campaign.started_at or campaign.created_at
    reached = OutboundMessage.objects.filter(
        campaign_id=campaign.pk, status__in=(*_SENT, S.FAILED)
    ).values("phone")
    return Suppression.objects.filter(
        created_at__gte=since,
        source__in=(
            Suppression.Source.KEYWORD,
            Suppression.Source.USER_PREFERENCES,
            Suppression.Source.API_ERROR,
        ),
        phone__in=reached,
    ).count()


@dataclass(frozen=True)
class Verdict:
    passed: bool
    summary: str  # the figures, for the pause reason or the campaign page


def judge(campaign: Campaign, figures: Figures, now: datetime) -> Verdict | None:
    """The verdict, or None while the canary's statuses are still coming in."""
    max_failure = failure_threshold(campaign.max_failure_rate)
    max_opt_out = opt_out_threshold(campaign.max_opt_out_rate)
    of = f"of {figures.eligible} canary messages"
    if figures.eligible and figures.failure_rate() > max_failure:
        # Over the threshold whatever the rest does: no need to wait.
        return Verdict(
            False,
            f"{PAUSE_PREFIX}: {percent(figures.failure_rate())} {of} failed "
            f"({figures.failed}; {top_codes(figures.by_code)}), above {percent(max_failure)}",
        )
    if figures.eligible and figures.opt_out_rate() > max_opt_out:
        return Verdict(
            False,
            f"{PAUSE_PREFIX}: {percent(figures.opt_out_rate())} {of} opted out "
            f"({figures.opt_outs}), above {percent(max_opt_out)}",
        )
    block = _block_signal(campaign, figures)
    if block:
        return Verdict(False, f"{PAUSE_PREFIX}: {block}")
    if figures.pending:
        return None
    share = figures.settled / figures.eligible if figures.eligible else 1.0
    waited = figures.last_sent_at is None or now >= verdict_by(figures.last_sent_at)
    if share < settings.POLICY_CANARY_STATUS_SHARE and not waited:
        return None
    return Verdict(
        True,
        f"canary passed: {figures.eligible} sent, {percent(figures.failure_rate())} failed, "
        f"{percent(figures.opt_out_rate())} opted out, {percent(share)} statuses in",
    )


def _block_signal(campaign: Campaign, figures: Figures) -> str:
    if figures.blocked_codes:
        return f"{figures.blocked_codes} answer(s) said the number or account is restricted"
    number = SenderNumber.objects.get(pk=campaign.sender_id)
    before = (campaign.canary_report or {}).get("quality", "UNKNOWN")
    if _QUALITY_RANK.get(number.quality_rating, 0) > _QUALITY_RANK.get(before, 0):
        return f"the number's quality fell from {before} to {number.quality_rating}"
    if number.status != SenderNumber.Status.CONNECTED and number.status != (
        (campaign.canary_report or {}).get("number_status")
    ):
        return f"the number is {number.status}"
    return ""


def check(campaign_id: int, *, now: datetime | None = None) -> str | None:
    """Look at a running canary; pass it (release the rest) or fail it (pause). Returns the
    new canary state, or None when the verdict is not in yet."""
    from messaging.services import TransitionError, pause_campaign

    now = now or timezone.now()
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.canary_state != RUNNING or campaign.status != Campaign.Status.RUNNING:
        return None
    figures = measure(campaign)
    verdict = judge(campaign, figures, now)
    if verdict is None:
        return None
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign_id)
        if locked.canary_state != RUNNING or locked.status != Campaign.Status.RUNNING:
            return None  # another worker got there first, or staff paused it meanwhile
        report = {**(locked.canary_report or {}), "verdict": verdict.summary}
        state = PASSED if verdict.passed else FAILED
        Campaign.objects.filter(pk=campaign_id).update(
            canary_state=state, canary_done_at=now, canary_report=report
        )
        if verdict.passed:
            released = release(campaign_id, now=now)
            logger.info(
                "campaign %s: %s; %d row(s) released", campaign_id, verdict.summary, released
            )
        else:
            try:
                pause_campaign(campaign_id=campaign_id, reason=verdict.summary)
            except TransitionError:
                return None
            logger.warning("campaign %s paused: %s", campaign_id, verdict.summary)
    return state


def check_soon(campaign_id: int) -> None:
    """From the outcome paths, after their commit: only campaigns in their canary get here,
    and a look costs a few queries bounded by the canary's size. Never fails the caller
    (the maintenance loop looks again)."""
    try:
        check(campaign_id)
    except Exception:
        logger.exception("campaign %s: canary check failed; maintenance retries it", campaign_id)


def check_running(*, now: datetime | None = None) -> int:
    """Every running canary (maintenance): the time-based verdicts. Returns how many ended."""
    ids = Campaign.objects.filter(status=Campaign.Status.RUNNING, canary_state=RUNNING).values_list(
        "pk", flat=True
    )
    return sum(check(campaign_id, now=now) is not None for campaign_id in ids)


def resumed(campaign: Campaign) -> None:
    """Staff resumed a campaign whose canary failed: that is their verdict, the rest goes."""
    if campaign.canary_state == FAILED:
        release(campaign.pk)
        report = {**(campaign.canary_report or {}), "resumed": "released by staff"}
        Campaign.objects.filter(pk=campaign.pk).update(canary_state=PASSED, canary_report=report)
