"""A sender number's messaging limit, quality and status, and its portfolio's limit: the one
place they are written, whoever reports them (sync_numbers, the phone_number_quality_update
and business_capability_update webhooks, staff in admin). docs/policy.md, "Messaging limit".

Each write locks the row, compares with what is stored and only then records a change, so a
webhook delivered twice, or racing the command, changes nothing the second time. A change
writes a `NumberChange` row (the history, and what the `messaging_limit_changed` alert
announces), publishes the number event, bumps the campaigns version so running senders read
the new limit within a fraction of a second, and, when a limit rose, makes the rows waiting
for budget due now. A number that turns RED or is flagged or restricted pauses its campaigns.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from campaigns.models import Portfolio, SenderNumber, TierSource, WhatsAppAccount
from messaging import state_version
from messaging.graph_api import GraphError, fetch_business_account, fetch_phone_number
from messaging.integrations.events.payloads import publish_number_change
from messaging.models import NumberChange
from messaging.policy import budget
from messaging.policy.actions import (
    Effects,
    apply_effects,
    failed_tokens,
    management_error,
    skipped_tokens_line,
)
from messaging.services import pause_active_campaigns

logger = logging.getLogger(__name__)

QUALITY_RANK = {"RED": 0, "YELLOW": 1, "GREEN": 2}
# Entering one of these pauses the number's running and scheduled campaigns.
PAUSING_STATUSES = frozenset(
    {SenderNumber.Status.FLAGGED, SenderNumber.Status.RESTRICTED, SenderNumber.Status.BANNED}
)
_STATUS_LENGTH = SenderNumber._meta.get_field("status").max_length or 16


@dataclass(frozen=True)
class NumberReport:
    """What someone says about a number; None = not reported (left as it is)."""

    tier: str | None = None  # our tier name (budget.tier_from_graph); "" is not a tier
    quality: str | None = None
    status: str | None = None
    verified_name: str | None = None
    name_status: str | None = None
    event: str = ""  # the webhook's event (DOWNGRADE, FLAGGED…), kept with the change


def report_from_graph(data: dict[str, Any]) -> NumberReport:
    """The phone-number GET's answer as a report (fields it lacks are left alone)."""
    quality = str(data.get("quality_rating") or "").upper()
    status = str(data.get("status") or "").upper()
    limit = data.get("whatsapp_business_manager_messaging_limit")
    if limit is None:
        limit = data.get("messaging_limit_tier")  # deprecated; older API versions only
    return NumberReport(
        tier=budget.tier_from_graph(limit) or None,
        quality=quality if quality in SenderNumber.Quality.values else None,
        status=status[:_STATUS_LENGTH] or None,
        verified_name=str(data["verified_name"])[:200] if "verified_name" in data else None,
        name_status=str(data["name_status"])[:32] if "name_status" in data else None,
    )


def _direction(field: str, old: str, new: str) -> str:
    if field == NumberChange.Field.TIER:
        if not budget.tier_limit(old) and old != budget.UNLIMITED:
            return ""  # from "never synced": neither up nor down
        # None (unlimited) ranks above every number.
        old_limit, new_limit = budget.tier_limit(old), budget.tier_limit(new)
        old_rank = float("inf") if old_limit is None else old_limit
        new_rank = float("inf") if new_limit is None else new_limit
        return "up" if new_rank > old_rank else "down" if new_rank < old_rank else ""
    if field == NumberChange.Field.QUALITY:
        if old not in QUALITY_RANK or new not in QUALITY_RANK:
            return ""
        return "up" if QUALITY_RANK[new] > QUALITY_RANK[old] else "down"
    if new == SenderNumber.Status.CONNECTED:
        return "up"
    return "down" if old == SenderNumber.Status.CONNECTED else ""


def _change(
    *,
    field: str,
    old: str,
    new: str,
    source: str,
    detail: str,
    now: datetime,
    portfolio: Portfolio | None = None,
    sender: SenderNumber | None = None,
) -> NumberChange:
    return NumberChange.objects.create(
        portfolio=portfolio,
        sender=sender,
        field=field,
        old=old[:32],
        new=new[:32],
        direction=_direction(field, old, new),
        source=source,
        detail=detail[:200],
        changed_at=now,
    )


def _first_reading(field: str, old: str) -> bool:
    """A value learned for the first time (never synced before) is no change to announce."""
    if field == NumberChange.Field.QUALITY:
        return old == SenderNumber.Quality.UNKNOWN
    return field == NumberChange.Field.TIER and not old


def _after_limit_change(sender_id: int, *, raised: bool, now: datetime) -> None:
    """Senders re-read the ledger on the version bump; a raised limit frees waiting rows."""
    state_version.bump_on_commit()
    if raised:
        released = budget.release_waiting(budget.ledger_for(sender_id), now)
        if released:
            logger.info("limit raised: %s rows waiting for budget are due now", released)


@transaction.atomic
def set_portfolio_tier(
    *, portfolio_id: int, tier: str, source: str, detail: str = "", now: datetime | None = None
) -> NumberChange | None:
    """Set a portfolio's messaging limit (staff, or Meta through a number of it); the change,
    or None when it already was that tier."""
    now = now or timezone.now()
    tier = budget.tier_from_graph(tier)
    if not tier:
        raise ValueError("not a messaging limit tier (TIER_250 … TIER_UNLIMITED)")
    portfolio = Portfolio.objects.select_for_update().get(pk=portfolio_id)
    if portfolio.messaging_tier == tier:
        if source != portfolio.tier_source and source != TierSource.STAFF:
            # Meta confirmed what staff set (or the default): the limit is Meta's now.
            Portfolio.objects.filter(pk=portfolio.pk).update(tier_source=source)
        return None
    change = None
    # The default tier (never synced nor set) was a guess: learning the real one is no change.
    if portfolio.tier_source != TierSource.DEFAULT:
        change = _change(
            field=NumberChange.Field.TIER,
            old=portfolio.messaging_tier,
            new=tier,
            source=source,
            detail=detail,
            now=now,
            portfolio=portfolio,
        )
    Portfolio.objects.filter(pk=portfolio.pk).update(
        messaging_tier=tier, tier_source=source, tier_updated_at=now
    )
    logger.info(
        "portfolio %s: messaging limit %s -> %s (%s)",
        portfolio.pk,
        portfolio.messaging_tier,
        tier,
        source,
    )
    some_number = (
        SenderNumber.objects.filter(account__portfolio_id=portfolio.pk)
        .values_list("pk", flat=True)
        .first()
    )
    if some_number is not None:
        raised = _direction(NumberChange.Field.TIER, portfolio.messaging_tier, tier) == "up"
        _after_limit_change(some_number, raised=raised, now=now)
    return change


@transaction.atomic
def record_number_state(
    *, sender_id: int, report: NumberReport, source: str, now: datetime | None = None
) -> list[NumberChange]:
    """Apply what `report` says about one number; returns the changes it made (none when
    nothing differs, so repeating a report is harmless)."""
    now = now or timezone.now()
    # Locks in one order everywhere, portfolio then number, so a webhook for the whole
    # account and sync_numbers for one of its numbers never deadlock.
    portfolio_id = (
        SenderNumber.objects.filter(pk=sender_id).values_list("account__portfolio_id").get()[0]
    )
    if portfolio_id is not None:
        list(Portfolio.objects.select_for_update().filter(pk=portfolio_id).values_list("pk"))
    number = (
        SenderNumber.objects.select_for_update(of=("self",))
        .select_related("account")
        .get(pk=sender_id)
    )
    changes: list[NumberChange] = []
    fields: dict[str, Any] = {}
    limit_moved = raised = False
    moved: list[tuple[str, str]] = []  # every (field, new value), logged or not
    reported = (
        ("messaging_tier", NumberChange.Field.TIER, report.tier or None),
        ("quality_rating", NumberChange.Field.QUALITY, report.quality),
        ("status", NumberChange.Field.STATUS, report.status),
    )
    for attribute, field, value in reported:
        old = getattr(number, attribute)
        if value is None or value == old:
            continue
        fields[attribute] = value
        moved.append((field, value))
        if field == NumberChange.Field.TIER and portfolio_id is None:
            # The account is its own portfolio: this number's limit is (part of) the ledger.
            limit_moved = True
            raised = raised or _direction(field, old or budget.UNLIMITED, value) == "up"
        # A portfolio's numbers all report its limit: the change is the portfolio's, logged
        # (and alerted) once there, not once per number.
        if field == NumberChange.Field.TIER and portfolio_id is not None:
            continue
        if _first_reading(field, old):
            continue
        changes.append(
            _change(
                field=field,
                old=old,
                new=value,
                source=source,
                detail=report.event,
                now=now,
                sender=number,
            )
        )
    if fields:
        fields.update(tier_source=source, state_updated_at=now)
    if source == TierSource.GRAPH:
        fields.update(synced_at=now, sync_error="")
    if report.verified_name is not None:
        fields["verified_name"] = report.verified_name
    if report.name_status is not None:
        fields["name_status"] = report.name_status
    if fields:
        SenderNumber.objects.filter(pk=number.pk).update(**fields)
    if report.tier and portfolio_id is not None:
        portfolio_change = set_portfolio_tier(
            portfolio_id=portfolio_id,
            tier=report.tier,
            source=source,
            detail=report.event or f"reported by {number.display_number}",
            now=now,
        )
        if portfolio_change is not None:
            changes.append(portfolio_change)
    if limit_moved:
        _after_limit_change(number.pk, raised=raised, now=now)
    _pause_if_burned(number, moved, event=report.event)
    for change in changes:
        logger.info("sender %s: %s (%s)", number.pk, change, source)
    if moved:
        publish_number_change(number, event=report.event or "CHANGED", changes=dict(moved))
    return changes


def _pause_if_burned(number: SenderNumber, moved: list[tuple[str, str]], *, event: str) -> None:
    """Entering RED or a flagged/restricted status pauses the number's campaigns (once, on
    the change: staff may resume while it lasts)."""
    reasons = [
        f"{field} {new}"
        for field, new in moved
        if (field == NumberChange.Field.QUALITY and new == SenderNumber.Quality.RED)
        or (field == NumberChange.Field.STATUS and new in PAUSING_STATUSES)
    ]
    if not reasons:
        return
    reason = f"Number {number.display_number}: " + ", ".join(reasons)
    if event and event not in reason:
        reason += f" ({event})"
    logger.warning("sender %s: %s", number.pk, reason)
    pause_active_campaigns(reason=reason[:255], sender_id=number.pk)


@transaction.atomic
def record_business_limit(
    *, waba_id: str, tier: str, source: str, now: datetime | None = None
) -> list[NumberChange]:
    """business_capability_update: the limit of the account's portfolio (or, for an account
    without one, of each of its numbers)."""
    now = now or timezone.now()
    account = WhatsAppAccount.objects.filter(waba_id=waba_id).first()
    if account is None or not budget.tier_from_graph(tier):
        return []
    changes: list[NumberChange] = []
    event = "business_capability_update"
    if account.portfolio_id is not None:
        change = set_portfolio_tier(
            portfolio_id=account.portfolio_id, tier=tier, source=source, detail=event, now=now
        )
        changes += [change] if change is not None else []
    report = NumberReport(tier=budget.tier_from_graph(tier), event=event)
    for sender_id in account.numbers.order_by("pk").values_list("pk", flat=True):
        changes += record_number_state(sender_id=sender_id, report=report, source=source, now=now)
    return changes


def record_sync_error(*, sender_id: int, error: str) -> None:
    """sync_numbers could not read this number: say why on it (the rest is left as it was)."""
    SenderNumber.objects.filter(pk=sender_id).update(sync_error=error[:500])


_BUSINESS_ID_LENGTH = Portfolio._meta.get_field("business_id").max_length or 64
_NAME_LENGTH = Portfolio._meta.get_field("name").max_length or 200


def owner_business(data: dict[str, Any]) -> tuple[str, str] | None:
    """(business id, name) of the WABA GET's `owner_business_info`; None when the answer has
    none we can use (missing, not an object, an id that is not a Graph id)."""
    info = data.get("owner_business_info")
    if not isinstance(info, dict):
        return None
    business_id = str(info.get("id") or "").strip()
    if not business_id.isdigit() or len(business_id) > _BUSINESS_ID_LENGTH:
        return None
    name = info.get("name")
    return business_id, (name.strip()[:_NAME_LENGTH] if isinstance(name, str) else "")


def _strictest_tier(tiers: Iterable[str]) -> str:
    """The tier an account without a portfolio drew on (budget.ledger_for): its strictest
    number's; "" when none is known."""
    known = [t for t in tiers if budget.tier_limit(t) is not None or t == budget.UNLIMITED]
    limited = [t for t in known if budget.tier_limit(t) is not None]
    if limited:
        return min(limited, key=lambda t: budget.tier_limit(t) or 0)
    return known[0] if known else ""


@transaction.atomic
def record_owner_business(*, account_id: int, business_id: str, name: str = "") -> bool:
    """Meta says business `business_id` owns the account: it is the account's portfolio
    (created when new). Returns whether the account moved. A new portfolio starts from the
    limit the account's numbers drew on until now (a default guess, replaced without a change
    row by the first tier Meta reports), so discovering it never tightens the budget."""
    account = WhatsAppAccount.objects.select_for_update().get(pk=account_id)
    portfolio = Portfolio.objects.filter(business_id=business_id).first()
    if portfolio is None:
        tiers = account.numbers.values_list("messaging_tier", flat=True)
        portfolio = Portfolio.objects.create(
            business_id=business_id,
            name=name,
            messaging_tier=_strictest_tier(tiers),
            tier_source=TierSource.DEFAULT,
        )
        logger.info("portfolio %s (%s) created from the Graph API", portfolio.pk, business_id)
    elif name and not portfolio.name:
        Portfolio.objects.filter(pk=portfolio.pk).update(name=name)
    if account.portfolio_id == portfolio.pk:
        return False
    logger.info(
        "account %s: portfolio %s -> %s (owner business %s, Graph API)",
        account.pk,
        account.portfolio_id,
        portfolio.pk,
        business_id,
    )
    WhatsAppAccount.objects.filter(pk=account.pk).update(portfolio=portfolio)
    # Its numbers now draw on the portfolio's ledger: running senders re-read it.
    state_version.bump_on_commit()
    return True


@dataclass
class SyncReport:
    """What a sync_numbers run did, line by line (the command prints them, the task logs
    them)."""

    lines: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(
        default_factory=list
    )  # each also in `lines`' place on stderr
    numbers: int = 0
    failed: int = 0
    skipped: int = 0  # not reached before `until`


def sync_numbers(numbers: Iterable[SenderNumber], *, until: float | None = None) -> SyncReport:
    """For each account of `numbers`: its owning business (the portfolio), then each number's
    messaging limit, quality, status and name, from the Graph API. A number that cannot be
    read keeps its values and gets the error; an error code's account-wide action (an
    invalid or expired token pauses the account) is applied as for a send, once per run.
    `until` (time.monotonic()): no call starts after it; the numbers left are counted."""
    report = SyncReport()
    effects = Effects()
    by_account: dict[int, list[SenderNumber]] = {}
    for number in numbers:
        by_account.setdefault(number.account_id, []).append(number)
    for group in by_account.values():
        if until is not None and time.monotonic() >= until:
            report.skipped += len(group)
            continue
        _sync_owner(group[0].account, report, effects)
        for number in group:
            if until is not None and time.monotonic() >= until:
                report.skipped += 1
                continue
            _sync_number(number, report, effects)
    apply_effects(effects)
    return report


def _sync_owner(account: WhatsAppAccount, report: SyncReport, effects: Effects) -> None:
    """The account's portfolio, if Meta names one. Not reading it is no number's failure:
    the numbers are still read, and the portfolio stays as staff set it."""
    try:
        data = fetch_business_account(waba_id=account.waba_id)
    except GraphError as exc:
        management_error(exc.rule, code=exc.code, waba_id=account.waba_id, effects=effects)
        report.problems.append(f"account {account.waba_id}: could not read its owner: {exc}")
        return
    owner = owner_business(data)
    if owner is None:
        report.lines.append(f"account {account.waba_id}: no owner business in the answer")
        return
    moved = record_owner_business(account_id=account.pk, business_id=owner[0], name=owner[1])
    said = "now in" if moved else "in"
    report.lines.append(f"account {account.waba_id}: {said} portfolio {owner[0]} {owner[1]}")


def _sync_number(number: SenderNumber, report: SyncReport, effects: Effects) -> None:
    report.numbers += 1
    try:
        data = fetch_phone_number(
            phone_number_id=number.phone_number_id, waba_id=number.account.waba_id
        )
    except GraphError as exc:
        report.failed += 1
        record_sync_error(sender_id=number.pk, error=str(exc))
        management_error(exc.rule, code=exc.code, waba_id=number.account.waba_id, effects=effects)
        report.problems.append(
            f"{number.display_number}: could not read {number.phone_number_id}: {exc}"
        )
        return
    reported = report_from_graph(data)
    changes = record_number_state(sender_id=number.pk, report=reported, source=TierSource.GRAPH)
    said = ", ".join(f"{c.get_field_display()} {c.old or '—'} → {c.new}" for c in changes)
    report.lines.append(
        f"{number.display_number}: limit {reported.tier or '?'}, quality "
        f"{reported.quality or '?'}, status {reported.status or '?'}"
        + (f"; changed: {said}" if said else "; unchanged")
    )


# The scheduled sync stops starting calls after this long: one more call can take its read
# timeout (30 s) and the cluster kills a task at Q_CLUSTER["timeout"] (60 s).
SCHEDULED_SYNC_SECONDS = 20.0


def unattended(
    numbers: QuerySet[SenderNumber],
) -> tuple[QuerySet[SenderNumber], dict[str, datetime]]:
    """What a sync that names no account reads of `numbers`: not the numbers of an account
    whose token failed (actions.failed_tokens), which it names instead."""
    accounts = numbers.values_list("account__waba_id", flat=True).distinct()
    failed = failed_tokens(accounts)
    return numbers.exclude(account__waba_id__in=list(failed)), failed


def sync_all_numbers() -> str:
    """The cluster's Schedule (every 3 hours, messaging migration 0015): the numbers synced
    longest ago first, within SCHEDULED_SYNC_SECONDS, so a run cut short is resumed by the
    next one rather than starting over; not those of an account whose token failed."""
    deadline = time.monotonic() + SCHEDULED_SYNC_SECONDS
    numbers, failed = unattended(
        SenderNumber.objects.select_related("account").order_by(
            F("synced_at").asc(nulls_first=True), "pk"
        )
    )
    report = sync_numbers(numbers, until=deadline)
    for problem in report.problems:
        logger.warning("sync_numbers: %s", problem)
    left = f", {report.skipped} left for the next run" if report.skipped else ""
    unasked = f"; {skipped_tokens_line(failed)}" if failed else ""
    synced = report.numbers - report.failed
    return f"{synced} of {report.numbers} number(s) synced{left}{unasked}"
