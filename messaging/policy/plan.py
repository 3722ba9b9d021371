"""The launch plan: the audience as the send policy will treat it, before launch and while a
campaign runs (docs/policy.md, "The plan").

Nothing here decides anything of its own. Every rule is asked of the module that enforces it
at claim time: the window and the zones of a number (`windows`), the frequency cap
(`frequency`), the portfolio budget (`budget`), suppression (`optout`), the +1 and "not on
WhatsApp" refusals (`imports`, counted by the import preview), and the campaign's rules
(`gate.rules_for`). What the plan adds is time: it plays the audience forward at the sender
number's rate (`pacing.starting_rate`), so the rules' answers become waves, an ETA and the
rows that cannot go before `valid_until`.

Reads are bounded: the rows go through in chunks of CHUNK numbers, each asked in a fixed
number of queries whatever its size (suppressed, service window open, recent marketing,
zones from contacts); the ledger is one query; prices are one query.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any

import phonenumbers
from django.conf import settings
from django.utils import timezone

from campaigns.models import (
    Campaign,
    Contact,
    ImportRejection,
    MessageTemplate,
    SenderNumber,
    TemplatePrice,
    WhatsAppAccount,
)
from messaging.models import PENDING_STATUSES, OutboundMessage
from messaging.pacing import starting_rate
from messaging.policy import budget, canary, frequency, gate
from messaging.policy.canary import HOLD
from messaging.policy.imports import US_MARKETING_REASON
from messaging.policy.optout import suppressed_among
from messaging.policy.windows import Window, open_span, opening, zones_for

if TYPE_CHECKING:
    from messaging.campaign_import import ImportResult
    from messaging.selectors import WaitingReason

CHUNK = 5000
# Sends further apart than this start a new wave (a night, a spent budget).
WAVE_GAP = timedelta(hours=1)
# How far the plan looks without a valid_until: rows later than this are "beyond the plan".
HORIZON = timedelta(days=31)
ZONES_SHOWN = 50
WAVES_SHOWN = 20

# Why a row is left out, in the order the page lists them.
SKIP_LABELS = {
    "invalid": "invalid numbers or values",
    "duplicate": "duplicate numbers",
    "suppressed": "suppressed (opted out)",
    "not_on_whatsapp": "not on WhatsApp (recent 131026)",
    "us_marketing": US_MARKETING_REASON,
    "frequency_cap": "over the frequency cap until after valid_until",
    "window": "window not open before valid_until",
    "budget": "no portfolio budget before valid_until",
    "rate": "not reached at the number's rate before valid_until",
    "canary": "held for the canary's verdict until after valid_until",
}


@dataclass(frozen=True)
class Recipient:
    phone: str
    timezone: str | None
    template_id: int | None
    message_id: int | None = None
    not_before: datetime | None = None  # a queued row's next_attempt_at
    valid_until: datetime | None = None  # a row's own (an API send's ttl)
    status: int | None = None  # a queued row's status and last error code
    error_code: int | None = None


@dataclass(frozen=True)
class Wave:
    starts: datetime
    ends: datetime
    count: int


@dataclass(frozen=True)
class ZoneRow:
    zone: str
    count: int
    opens: datetime  # when the window (if any) opens there, from the plan's start
    first_send: datetime | None
    last_send: datetime | None

    def open_at(self, start: datetime) -> bool:
        return self.opens <= start


@dataclass(frozen=True)
class BudgetLine:
    tier: str
    limit: int | None  # None = not enforced (unknown or unlimited tier)
    used: int  # unique recipients of the moving 24 h, now (budget.counted_now)
    charged: int  # recipients of this audience that take a new slot
    free: int  # service window open, or already counted in the 24 h

    @property
    def left(self) -> int | None:
        return budget.remaining(self.limit, self.used)


@dataclass(frozen=True)
class CanaryLine:
    """The canary in the timeline: its rows go first, the rest after the verdict."""

    size: int  # canary rows (still to send, for a running canary)
    rate: float | None  # its own rate, msg/s (None: the number's)
    sent_by: datetime | None  # when the plan's last canary row goes (or went)
    verdict_by: datetime | None  # the latest the verdict comes (canary.verdict_by)
    held: int  # rows that wait for the verdict

    def as_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "rate_per_second": self.rate,
            "sent_by": _iso(self.sent_by),
            "verdict_by": _iso(self.verdict_by),
            "wait_seconds": settings.POLICY_CANARY_WAIT_SECONDS,
            "held": self.held,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class CostLine:
    country: str  # ISO region, "" when the number has none
    category: str
    count: int
    unit_price: Decimal | None
    currency: str

    @property
    def total(self) -> Decimal | None:
        return None if self.unit_price is None else self.unit_price * self.count


@dataclass(frozen=True)
class Cost:
    lines: list[CostLine]

    @property
    def totals(self) -> dict[str, Decimal]:
        sums: dict[str, Decimal] = {}
        for line in self.lines:
            if line.total is not None:
                sums[line.currency] = sums.get(line.currency, Decimal(0)) + line.total
        return sums

    @property
    def priced(self) -> int:
        return sum(line.count for line in self.lines if line.unit_price is not None)

    @property
    def unpriced(self) -> list[CostLine]:
        return [line for line in self.lines if line.unit_price is None]


@dataclass(frozen=True)
class Waiting:
    """Rows a running campaign holds back now, and why (messaging.selectors)."""

    key: str
    count: int
    reason: str
    until: datetime | None


@dataclass
class Plan:
    start: datetime
    audience: int  # rows that would be queued (or are still to send)
    to_send: int  # of those, rows the plan sends before valid_until / the horizon
    skipped: dict[str, int]
    rate: float
    window: str | None
    cap: str | None
    cap_waiting: int  # over the cap at the start, sent later
    budget: BudgetLine
    waves: list[Wave]
    zones: list[ZoneRow]
    zones_more: int  # recipients in zones past ZONES_SHOWN
    eta: datetime | None
    valid_until: datetime | None
    beyond_horizon: int
    cost: Cost
    canary: str = ""
    canary_line: CanaryLine | None = None
    waiting: list[Waiting] = field(default_factory=list)

    @property
    def skipped_rows(self) -> list[tuple[str, str, int]]:
        return [(k, SKIP_LABELS[k], n) for k, n in self.skipped.items() if n]

    def as_json(self) -> dict[str, Any]:
        def at(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        cost = self.cost
        return {
            "start": at(self.start),
            "audience": self.audience,
            "to_send": self.to_send,
            "skipped": dict(self.skipped),
            "rate_per_second": round(self.rate, 3),
            "window": self.window,
            "frequency_cap": self.cap,
            "frequency_cap_waiting": self.cap_waiting,
            "budget": {
                "tier": self.budget.tier,
                "limit": self.budget.limit,
                "used": self.budget.used,
                "left": self.budget.left,
                "charged": self.budget.charged,
                "free": self.budget.free,
            },
            "waves": [
                {"starts": at(w.starts), "ends": at(w.ends), "count": w.count} for w in self.waves
            ],
            "zones": [
                {
                    "zone": z.zone,
                    "count": z.count,
                    "window_opens": at(z.opens),
                    "open_at_start": z.open_at(self.start),
                    "first_send": at(z.first_send),
                    "last_send": at(z.last_send),
                }
                for z in self.zones
            ],
            "zones_more": self.zones_more,
            "eta": at(self.eta),
            "valid_until": at(self.valid_until),
            "beyond_horizon": self.beyond_horizon,
            "cost": {
                "totals": {c: str(v) for c, v in sorted(cost.totals.items())},
                "priced": cost.priced,
                "unpriced": sum(line.count for line in cost.unpriced),
                "lines": [
                    {
                        "country": line.country,
                        "category": line.category,
                        "count": line.count,
                        "unit_price": None if line.unit_price is None else str(line.unit_price),
                        "currency": line.currency,
                        "total": None if line.total is None else str(line.total),
                    }
                    for line in cost.lines
                ],
            },
            "canary": self.canary,
            "canary_timeline": self.canary_line.as_json() if self.canary_line else None,
            "waiting": [
                {"key": w.key, "count": w.count, "reason": w.reason, "until": at(w.until)}
                for w in self.waiting
            ],
        }


# ---------------------------------------------------------------------------------------------
# Entry points


def plan_import(
    *,
    csv_file: str | IO[bytes] | Any,
    sender: SenderNumber,
    templates: Sequence[tuple[MessageTemplate, int]],
    default_region: str | None = None,
    policy: dict[str, Any] | None = None,
    start_at: datetime | None = None,
    now: datetime | None = None,
    preview_rows: int = 10,
) -> tuple[Plan, ImportResult]:
    """The plan of a CSV before any row exists: the import preview (which writes nothing)
    with every kept row, then the plan of those. Returns the plan and the preview result."""
    from messaging.campaign_import import preview_csv

    result = preview_csv(
        csv_file=csv_file,
        sender=sender,
        templates=templates,
        default_region=default_region,
        limit=preview_rows,
        keep_rows=True,
    )
    return plan_preview(
        result, sender=sender, templates=templates, policy=policy, start_at=start_at, now=now
    ), result


def plan_preview(
    result: ImportResult,
    *,
    sender: SenderNumber,
    templates: Sequence[tuple[MessageTemplate, int]],
    policy: dict[str, Any] | None = None,
    start_at: datetime | None = None,
    now: datetime | None = None,
) -> Plan:
    """The plan of an import preview run with `keep_rows=True`."""
    now = now or timezone.now()
    campaign = Campaign(sender=sender, **(policy or {}))  # never saved: the rules' holder
    skipped = {
        "invalid": result.rejected - result.us_marketing,
        "duplicate": result.duplicates,
        "suppressed": result.suppressed,
        "not_on_whatsapp": result.undeliverable,
        "us_marketing": result.us_marketing,
    }
    rows = (Recipient(p, z, t) for p, z, t in (result.kept or []))
    return build(
        campaign=campaign,
        sender=sender,
        templates=[t for t, _ in templates],
        recipients=rows,
        skipped=skipped,
        start=max(start_at or now, now),
        now=now,
        fill_zones=True,
    )


def plan_campaign(campaign: Campaign, *, now: datetime | None = None) -> Plan:
    """The plan of a saved campaign's rows still to send (queued or waiting to retry), from
    now or its start time, with what it holds back now and why."""
    from messaging.selectors import waiting_reasons

    now = now or timezone.now()
    start = now
    if campaign.status in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED) and campaign.start_at:
        start = max(now, campaign.start_at)
    us_marketing = ImportRejection.objects.filter(
        campaign_id=campaign.pk, reason=US_MARKETING_REASON
    ).count()
    skipped = {
        "invalid": campaign.rejected_count - us_marketing,
        "duplicate": campaign.duplicate_count,
        "suppressed": campaign.suppressed_count,
        "not_on_whatsapp": campaign.undeliverable_count,
        "us_marketing": us_marketing,
    }
    templates = list(MessageTemplate.objects.filter(campaigntemplate__campaign_id=campaign.pk))
    plan = build(
        campaign=campaign,
        sender=campaign.sender,
        templates=templates,
        recipients=_campaign_rows(campaign),
        skipped=skipped,
        start=start,
        now=now,
        fill_zones=False,
    )
    if campaign.status in (Campaign.Status.RUNNING, Campaign.Status.PAUSED):
        verdict_by = plan.canary_line.verdict_by if plan.canary_line else None
        plan.waiting = [
            Waiting(r.key, r.count, r.reason, r.until)
            for r in timed_waits(waiting_reasons(campaign), verdict_by)
        ]
    return plan


def timed_waits(reasons: list[WaitingReason], verdict_by: datetime | None) -> list[WaitingReason]:
    """`reasons` (selectors.waiting_reasons) with the canary's held rows timed. They have no
    time of their own (they sit at canary.HOLD until the verdict releases them); the plan
    knows the latest moment of the verdict (`CanaryLine.verdict_by`). The plan's list and the
    campaign page's live list both come from here."""
    return [
        replace(r, until=verdict_by) if r.key == canary.WAIT_CANARY and r.until is None else r
        for r in reasons
    ]


def _campaign_rows(campaign: Campaign) -> Iterator[Recipient]:
    rows = (
        OutboundMessage.objects.filter(campaign_id=campaign.pk, status__in=PENDING_STATUSES)
        .order_by("next_attempt_at", "id")
        .values_list(
            "id",
            "phone",
            "template_id",
            "next_attempt_at",
            "valid_until",
            "contact__attributes__timezone",
            "status",
            "error_code",
        )
    )
    for pk, phone, template_id, at, until, zone, status, code in rows.iterator(chunk_size=CHUNK):
        zone = zone if isinstance(zone, str) else None
        yield Recipient(phone, zone, template_id, pk, at, until, status, code)


# ---------------------------------------------------------------------------------------------
# The plan itself


@dataclass
class _Row:
    phone: str
    zone: str  # the zone key, as the gate names it
    ready: float  # the earliest moment (timestamp) the rules allow it
    charged: bool  # takes a new slot of the portfolio budget
    in_window: bool  # their service window is open: the budget never sees them
    end: float  # it goes before this or never (its deadline, or the plan's horizon)
    cost_key: tuple[str, str]
    held: str = ""  # the last rule that held it back
    sent: float | None = None
    # "canary": one of the canary's rows; "after": waits for the canary's verdict; "".
    canary: str = ""


def build(
    *,
    campaign: Campaign,
    sender: SenderNumber,
    templates: Iterable[MessageTemplate],
    recipients: Iterable[Recipient],
    skipped: dict[str, int],
    start: datetime,
    now: datetime,
    fill_zones: bool,
) -> Plan:
    """The plan of `recipients` (in send order) for `campaign`'s rules from `start`.
    `fill_zones`: look up the `timezone` attribute of known contacts for rows that have none
    (an import merges it into the contact)."""
    categories = {t.pk: (t.category or "").upper() for t in templates}
    ledger = budget.ledger_for(sender.pk)
    rules = gate.rules_for(campaign, categories=categories, ledger=ledger)
    window, cap = rules.window, rules.cap
    counted = (
        budget.messaged_since(ledger, now - budget.window()) if ledger.limit is not None else {}
    )
    skipped = {**dict.fromkeys(SKIP_LABELS, 0), **skipped}
    horizon = (start + HORIZON).timestamp()
    # Per zone: (asked at, opens, closes): for any moment from `asked at` to `closes`, the
    # window opens at max(moment, opens), so one answer serves every row of the zone.
    spans: dict[str, tuple[float, float, float]] = {}
    zone_of: dict[str, tuple[Any, ...]] = {}
    zone_opens: dict[str, datetime] = {}
    rows: list[_Row] = []
    audience = cap_waiting = charged = free = 0
    timing = _CanaryTiming.of(campaign, start)
    for chunk in _chunks(recipients):
        audience += len(chunk)
        judged = _judge_chunk(
            chunk,
            rules,
            categories,
            counted,
            start,
            now,
            fill_zones,
            skipped,
            zone_of,
            horizon,
            timing,
            audience - len(chunk),
        )
        for row, capped_until in judged:
            if capped_until is not None:
                if row.end < horizon and capped_until.timestamp() >= row.end:
                    skipped["frequency_cap"] += 1  # the gate expires it
                    continue
                cap_waiting += 1
            if row.zone not in zone_opens:
                zones = zone_of[row.zone]
                zone_opens[row.zone] = opening(window, zones, start) if window else start
            if ledger.limit is not None:
                charged += row.charged
                free += not row.charged
            rows.append(row)
    rate = starting_rate(sender)
    verdict = _simulate(
        rows, window, zone_of, spans, ledger.limit, counted, rate, start, timing.floor
    )
    sent: list[float] = []
    beyond_horizon = 0
    for row in rows:
        if row.sent is not None:
            sent.append(row.sent)
        elif row.end < horizon:
            skipped[row.held or "rate"] += 1  # past its deadline: the gate expires it
        else:
            beyond_horizon += 1
    sent.sort()
    tier = "" if ledger.limit is None else _tier_name(sender, ledger)
    # What is used and left now is the engine's own count (the Redis ledger it admits against),
    # as the admin and the gauge show it; the timeline above starts from PostgreSQL's rows.
    used = budget.counted_now([ledger], now).get(ledger.key, 0)
    plan = Plan(
        start=start,
        audience=audience,
        to_send=len(sent),
        skipped=skipped,
        rate=rate,
        window=str(window) if window else None,
        cap=str(cap) if cap and rules.capped_templates else None,
        cap_waiting=cap_waiting,
        budget=BudgetLine(tier, ledger.limit, used, charged, free),
        waves=_waves(sent),
        zones=[],
        zones_more=0,
        eta=datetime.fromtimestamp(sent[-1], tz=UTC) if sent else None,
        valid_until=rules.valid_until,
        beyond_horizon=beyond_horizon,
        cost=_cost(rows),
    )
    plan.canary_line = timing.line(rows, verdict)
    plan.canary = _canary(campaign, plan.canary_line)
    plan.zones, plan.zones_more = _zones(rows, zone_opens)
    return plan


def _chunks(recipients: Iterable[Recipient]) -> Iterator[list[Recipient]]:
    chunk: list[Recipient] = []
    for recipient in recipients:
        chunk.append(recipient)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _judge_chunk(
    chunk: list[Recipient],
    rules: gate.CampaignRules,
    categories: dict[int, str],
    counted: dict[str, float],
    start: datetime,
    now: datetime,
    fill_zones: bool,
    skipped: dict[str, int],
    zone_of: dict[str, tuple[Any, ...]],
    horizon: float,
    timing: _CanaryTiming,
    before: int,
) -> list[tuple[_Row, datetime | None]]:
    """Each row of a chunk as the gate would meet it at `start`: a fixed number of queries.
    `before`: how many rows came in earlier chunks (the canary counts places in send order)."""
    phones = [r.phone for r in chunk]
    suppressed = suppressed_among(phones)
    zones_known: dict[str, str] = {}
    if fill_zones:
        zones_known = dict(
            Contact.objects.filter(phone__in=[r.phone for r in chunk if not r.timezone])
            .filter(attributes__has_key="timezone")
            .values_list("phone", "attributes__timezone")
        )
    in_window: set[str] = set()
    if rules.ledger is not None and rules.ledger.limit is not None:
        in_window = budget.in_service_window(phones, start)
    cap = rules.cap
    capped = [r for r in chunk if cap is not None and r.template_id in rules.capped_templates]
    sends: dict[str, list[datetime]] = {}
    if cap is not None and capped:
        sends = frequency.recent_sends(
            [r.phone for r in capped],
            since=start - cap.period,
            now=start,
            excluding=[r.message_id for r in capped if r.message_id is not None],
        )
    judged = []
    keys: dict[tuple[Any, ...], str] = {}
    for n, recipient in enumerate(chunk, start=before + 1):
        # Before the suppression check: canary.begin counts every queued row's place.
        in_canary, canary_at = timing.place(n, recipient)
        if recipient.phone in suppressed:
            skipped["suppressed"] += 1  # the gate cancels it when claimed
            continue
        zones = zones_for(recipient.phone, recipient.timezone or zones_known.get(recipient.phone))
        key = keys.get(zones)
        if key is None:
            key = keys[zones] = "/".join(sorted({z.key for z in zones}))  # as the gate names it
            zone_of.setdefault(key, zones)
        # A row held for the canary's verdict goes after it (_simulate); the plan assumes
        # the canary passes.
        not_before = None if recipient.not_before == HOLD else recipient.not_before
        ready = max(start, not_before or start, canary_at or start)
        capped_until = None
        if cap is not None and recipient.template_id in rules.capped_templates:
            free_at = frequency.free_at(cap, sends.get(recipient.phone, []), start)
            if free_at > start:
                capped_until = free_at
                ready = max(ready, free_at)
        category = categories.get(recipient.template_id or 0, "")
        row = _Row(
            phone=recipient.phone,
            zone=key,
            ready=ready.timestamp(),
            charged=recipient.phone not in in_window and recipient.phone not in counted,
            in_window=recipient.phone in in_window,
            end=min(horizon, _stamp(gate.deadline(rules.valid_until, recipient.valid_until))),
            cost_key=(_region(recipient.phone), category),
            held="frequency_cap" if capped_until is not None else "",
            canary=in_canary,
        )
        judged.append((row, capped_until))
    return judged


def _simulate(
    rows: list[_Row],
    window: Window | None,
    zone_of: dict[str, tuple[Any, ...]],
    spans: dict[str, tuple[float, float, float]],
    limit: int | None,
    counted: dict[str, float],
    rate: float,
    start: datetime,
    canary_floor: float | None = None,
) -> float | None:
    """Play the rows forward: one sender at `rate`, each row at its ready time in order, held
    while its window is closed, and (when the budget is enforced) while the moving 24 h holds
    `limit` recipients. Rows marked "after" wait for the canary: they join once every canary
    row went (or cannot go), at the latest moment of its verdict (canary.verdict_by of the last
    canary send, or of `canary_floor`, the last one a running canary sent already). Sets
    `row.sent` of the rows that go before their `end`; returns the verdict's moment, if any."""
    gap = 1.0 / rate if rate > 0 else 1.0
    width = budget.window().total_seconds()
    expiry = {phone: at + width for phone, at in counted.items()}
    ledger = [(at, phone) for phone, at in expiry.items()]
    heapq.heapify(ledger)
    after = [i for i, row in enumerate(rows) if row.canary == "after"]
    ready = [(row.ready, i) for i, row in enumerate(rows) if row.canary != "after"]
    heapq.heapify(ready)
    waiting: deque[int] = deque()  # charged rows held by the budget, in order
    clock = start.timestamp()
    canary_left = sum(row.canary == "canary" for row in rows)
    last_canary = canary_floor
    verdict: float | None = None

    def release() -> None:
        """The verdict (assumed a pass) lets the held rows in, at its latest moment."""
        nonlocal verdict
        verdict = start.timestamp()
        if last_canary is not None:
            moment = datetime.fromtimestamp(last_canary, tz=UTC)
            verdict = max(verdict, canary.verdict_by(moment).timestamp())
        for i in after:
            if verdict > rows[i].ready:
                rows[i].held = "canary"
            heapq.heappush(ready, (max(rows[i].ready, verdict), i))

    def canary_done(index: int) -> None:
        """One canary row went or never will: after the last, the verdict."""
        nonlocal canary_left, last_canary
        row = rows[index]
        if row.canary != "canary":
            return
        canary_left -= 1
        if row.sent is not None:
            last_canary = max(last_canary or row.sent, row.sent)
        if canary_left == 0 and after:
            release()

    if canary_left == 0 and after:
        release()  # no canary row left to send (a running canary's are all out)

    def prune(moment: float) -> None:
        while ledger and (ledger[0][0] <= moment or expiry.get(ledger[0][1]) != ledger[0][0]):
            at, phone = heapq.heappop(ledger)
            if expiry.get(phone) == at:
                del expiry[phone]

    def full() -> bool:
        return limit is not None and len(expiry) >= limit

    while ready or waiting:
        next_ready = ready[0][0] if ready else math.inf
        next_slot = math.inf
        if waiting:
            prune(clock)
            next_slot = clock if not full() else (ledger[0][0] if ledger else math.inf)
        if next_slot == math.inf and next_ready == math.inf:
            break  # a limit of 0: the waiting rows never go
        if waiting and next_slot <= next_ready:
            index = waiting.popleft()
            moment = max(next_slot, clock)
        else:
            moment, index = heapq.heappop(ready)
            moment = max(moment, clock)
        row = rows[index]
        if moment >= row.end:
            canary_done(index)
            continue  # not before its deadline (or the horizon)
        if window is not None:
            span = spans.get(row.zone)
            if span is None or not span[0] <= moment < span[2]:
                opens, closes = open_span(
                    window, zone_of[row.zone], datetime.fromtimestamp(moment, tz=UTC)
                )
                span = (moment, opens.timestamp(), closes.timestamp())
                spans[row.zone] = span
            if span[1] > moment:
                row.held = "window"
                heapq.heappush(ready, (span[1], index))
                continue
        if limit is not None and not row.in_window:
            prune(moment)
            if row.phone not in expiry and full():
                row.held = "budget"
                waiting.append(index)
                continue
            # Admitted, or messaged already in the 24 h: either way its entry starts again.
            expiry[row.phone] = moment + width
            heapq.heappush(ledger, (moment + width, row.phone))
        row.sent = moment
        clock = moment + gap
        canary_done(index)
    for i in after:
        if rows[i].sent is None and verdict is None:
            rows[i].held = "canary"  # the canary never ended within the plan
    return verdict


def _stamp(moment: datetime | None) -> float:
    return math.inf if moment is None else moment.timestamp()


def _waves(sent: list[float]) -> list[Wave]:
    waves: list[Wave] = []
    first = last = None
    count = 0
    for at in sent:
        if last is not None and at - last > WAVE_GAP.total_seconds():
            waves.append(_wave(first, last, count))
            first, count = None, 0
        first = at if first is None else first
        last = at
        count += 1
    if first is not None and last is not None:
        waves.append(_wave(first, last, count))
    if len(waves) > WAVES_SHOWN:
        rest = waves[WAVES_SHOWN - 1 :]
        merged = Wave(rest[0].starts, rest[-1].ends, sum(w.count for w in rest))
        waves = [*waves[: WAVES_SHOWN - 1], merged]
    return waves


def _wave(first: float | None, last: float | None, count: int) -> Wave:
    assert first is not None and last is not None
    return Wave(datetime.fromtimestamp(first, tz=UTC), datetime.fromtimestamp(last, tz=UTC), count)


def _zones(rows: list[_Row], opens: dict[str, datetime]) -> tuple[list[ZoneRow], int]:
    counts: Counter[str] = Counter()
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for row in rows:
        counts[row.zone] += 1
        if row.sent is not None:
            first[row.zone] = min(first.get(row.zone, row.sent), row.sent)
            last[row.zone] = max(last.get(row.zone, row.sent), row.sent)

    def stamp(value: float | None) -> datetime | None:
        return None if value is None else datetime.fromtimestamp(value, tz=UTC)

    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = [
        ZoneRow(zone, n, opens[zone], stamp(first.get(zone)), stamp(last.get(zone)))
        for zone, n in ordered[:ZONES_SHOWN]
    ]
    return shown, sum(n for _, n in ordered[ZONES_SHOWN:])


def _region(phone: str) -> str:
    """The number's country (ISO region), as phonenumbers says. Most country codes belong to
    one region, read from the code alone; shared ones (+1, +7, +44…) need the whole number."""
    for digits in (1, 2, 3):
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(phone[1 : 1 + digits] or 0))
        if regions is not None:
            if len(regions) == 1:
                return regions[0]
            break
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(phone, None)) or ""
    except phonenumbers.NumberParseException:
        return ""


def _cost(rows: list[_Row]) -> Cost:
    """Rows the plan sends, per (country, category), priced from the staff's table: one
    query. A pair without a row in the table has no price and no estimate."""
    counts = Counter(row.cost_key for row in rows if row.sent is not None)
    countries = sorted({country for country, _ in counts if country})
    prices = {
        (p.country, p.category): p
        for p in TemplatePrice.objects.filter(
            country__in=countries, category__in=sorted({c for _, c in counts})
        )
    }
    lines = []
    for (country, category), n in sorted(counts.items()):
        price = prices.get((country, category))
        lines.append(
            CostLine(
                country,
                category or "(no category)",
                n,
                price.price if price else None,
                price.currency if price else "",
            )
        )
    return Cost(lines)


def _tier_name(sender: SenderNumber, ledger: budget.Ledger) -> str:
    """The tier behind the ledger's limit, as staff set or sync it."""
    account = WhatsAppAccount.objects.select_related("portfolio").get(pk=sender.account_id)
    if account.portfolio is not None:
        return f"{account.portfolio.messaging_tier} (portfolio {account.portfolio})"
    return f"the strictest tier of account {account}'s numbers"


@dataclass
class _CanaryTiming:
    """Which rows the canary sends first and which wait for its verdict, as canary.begin
    will pick them (not begun yet) or did (running)."""

    phase: str  # "" (no canary to wait for), "planned" (begins at the start), "running"
    share: Decimal = Decimal(0)
    gap: float = 0.0
    start: datetime | None = None
    floor: float | None = None  # a running canary's last send so far
    rate: float | None = None

    @classmethod
    def of(cls, campaign: Campaign, start: datetime) -> _CanaryTiming:
        if not canary.waits_for_verdict(campaign):
            return cls("")
        rate = campaign.canary_rate
        if campaign.canary_state == canary.RUNNING:
            last = canary.measure(campaign).last_sent_at if campaign.pk else None
            return cls("running", floor=last.timestamp() if last else None, rate=rate)
        share, gap = canary.share_of(campaign), canary.gap_seconds(campaign)
        return cls("planned", share=share, gap=gap, start=start, rate=rate)

    def place(self, n: int, recipient: Recipient) -> tuple[str, datetime | None]:
        """Row n (1-based, send order): ("canary", its canary pacing) or ("after", None);
        "" for a row that neither gates the verdict nor waits for it."""
        if self.phase == "running":
            if recipient.not_before == HOLD:
                return "after", None
            if recipient.status is not None and canary.failed_in_canary(
                recipient.status, recipient.error_code
            ):
                return "", None  # counted as failed already: its retry is its own
            return "canary", None
        if self.phase == "planned" and self.start is not None:
            k = canary.place_in_canary(n, self.share)
            if k is None:
                return "after", None
            return "canary", self.start + timedelta(seconds=(k - 1) * self.gap)
        return "", None

    def line(self, rows: list[_Row], verdict: float | None) -> CanaryLine | None:
        if not self.phase:
            return None
        sent = [row.sent for row in rows if row.canary == "canary" and row.sent is not None]
        last = max(sent) if sent else self.floor

        def at(value: float | None) -> datetime | None:
            return None if value is None else datetime.fromtimestamp(value, tz=UTC)

        return CanaryLine(
            size=sum(row.canary == "canary" for row in rows),
            rate=self.rate,
            sent_by=at(last),
            verdict_by=at(verdict),
            held=sum(row.canary == "after" for row in rows),
        )


def _canary(campaign: Campaign, line: CanaryLine | None) -> str:
    """The canary in words; the timeline (waves, ETA) already includes its wait."""
    if line is None:
        if campaign.canary_state == canary.FAILED:
            return "the canary failed: the rest goes only if staff resume the campaign"
        return ""
    rate = f" at {line.rate:g} msg/s" if line.rate else ""
    stamp = "%Y-%m-%d %H:%M UTC"
    went = f", sent by {line.sent_by.astimezone(UTC):{stamp}}" if line.sent_by else ""
    share = f"{settings.POLICY_CANARY_STATUS_SHARE:.0%}"
    wait = timedelta(seconds=settings.POLICY_CANARY_WAIT_SECONDS)
    verdict = (
        f"its verdict by {line.verdict_by.astimezone(UTC):{stamp}} at the latest ({wait} after "
        f"its last send, sooner once {share} of its statuses are in)"
        if line.verdict_by
        else "its verdict"
    )
    running = "running: " if campaign.canary_state == canary.RUNNING else ""
    return (
        f"{running}a canary of {line.size} row(s){rate} goes first{went}; the other "
        f"{line.held} wait for {verdict}. The waves and the ETA include that wait."
    )


def plan_lines(plan: Plan) -> list[str]:
    """The plan as lines of text (create_campaign --plan without --json)."""

    def at(value: datetime | None) -> str:
        return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"

    lines = [f"plan from {at(plan.start)}: {plan.audience} to queue, {plan.to_send} sent"]
    lines += [f"  skipped: {n} {label}" for _key, label, n in plan.skipped_rows]
    if plan.beyond_horizon:
        lines.append(f"  {plan.beyond_horizon} not sent within {HORIZON.days} days")
    b = plan.budget
    if b.limit is None:
        lines.append("budget: no messaging limit enforced (tier unknown or unlimited)")
    else:
        lines.append(
            f"budget: {b.tier}, {b.limit} per 24 h, {b.used} used, {b.left} left; "
            f"{b.charged} of this audience count, {b.free} free"
        )
    for wave in plan.waves:
        lines.append(f"  wave {at(wave.starts)} .. {at(wave.ends)}: {wave.count}")
    lines.append(f"window: {plan.window or 'none'}; frequency cap: {plan.cap or 'none'}")
    if plan.cap_waiting:
        lines.append(f"  {plan.cap_waiting} wait for the frequency cap")
    for zone in plan.zones:
        opens = "open" if zone.open_at(plan.start) else f"opens {at(zone.opens)}"
        lines.append(f"  {zone.zone}: {zone.count} ({opens})")
    if plan.zones_more:
        lines.append(f"  other zones: {plan.zones_more}")
    lines.append(f"rate {plan.rate:g} msg/s; ETA {at(plan.eta)}")
    totals = plan.cost.totals
    cost = ", ".join(f"{v:.2f} {c}" for c, v in sorted(totals.items())) or "none"
    lines.append(f"cost: {cost} for {plan.cost.priced} priced message(s)")
    for line in plan.cost.unpriced:
        lines.append(f"  not priced: {line.count} to {line.country or '?'} ({line.category})")
    if plan.canary:
        lines.append(f"canary: {plan.canary}")
    return lines
