"""What the sender does with each send outcome: the row's next state and campaign side effects.

Pure decisions (`decide`) are kept apart from their effects (`apply_side_effects`) so the table
in messaging/errors.py is the only place a code's meaning is written down.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from campaigns.models import MessageTemplate, WhatsAppAccount
from campaigns.services import suppress_numbers
from messaging.errors import Action
from messaging.graph_api import OutcomeKind, SendOutcome
from messaging.models import OutboundStatus as S
from messaging.queue import ClaimedMessage, RowOutcome
from messaging.services import pause_active_campaigns

logger = logging.getLogger(__name__)


def backoff_seconds(attempt: int) -> float:
    """The retry schedule after `attempt` failed tries, ± jitter (settings SENDER_RETRY_*).

    The first retry comes after about a second (most transient errors are one-offs, and a
    campaign's last rows should not wait behind long backoffs), then base × 2^(attempt-2),
    capped: 1, 5, 10, 20 … s by default.
    """
    if attempt <= 1:
        delay = settings.SENDER_RETRY_FIRST_SECONDS
    else:
        delay = settings.SENDER_RETRY_BASE_SECONDS * 2 ** (attempt - 2)
    delay = min(delay, settings.SENDER_RETRY_MAX_SECONDS)
    jitter = settings.SENDER_RETRY_JITTER
    return delay * random.uniform(1 - jitter, 1 + jitter)


@dataclass
class SideEffects:
    """Collected over a batch and applied once: many rows often carry the same signal."""

    throttled: bool = False
    pause_campaigns: dict[int, str] = field(default_factory=dict)
    pause_accounts: dict[int, str] = field(default_factory=dict)
    suppress: set[str] = field(default_factory=set)
    template_status: dict[int, str] = field(default_factory=dict)


# Template error codes that say what happened to the template itself.
_TEMPLATE_STATUS_BY_CODE = {132001: "MISSING", 132015: "PAUSED", 132016: "DISABLED"}


def decide(
    message: ClaimedMessage,
    outcome: SendOutcome,
    *,
    account_id: int,
    valid_until: datetime | None,
    effects: SideEffects,
    now: datetime | None = None,
) -> RowOutcome:
    now = now or timezone.now()
    attempts = message.attempts
    if outcome.kind == OutcomeKind.ACCEPTED:
        detail = "" if outcome.message_status == "accepted" else outcome.message_status
        return RowOutcome(
            message.id, S.ACCEPTED, attempts, wamid=outcome.wamid, error_detail=detail
        )
    if outcome.kind == OutcomeKind.AMBIGUOUS:
        return RowOutcome(message.id, S.UNKNOWN, attempts, error_detail=outcome.detail)
    if outcome.kind == OutcomeKind.NOT_SENT:
        return _retry_or_fail(message, attempts, None, "transient", outcome.detail, now)

    rule = outcome.rule
    assert rule is not None
    code, category, detail = outcome.error_code, str(rule.category), outcome.detail

    def row(status: int, *, attempts: int = attempts, at: datetime | None = None) -> RowOutcome:
        return RowOutcome(message.id, status, attempts, at, None, code, category, detail)

    match rule.action:
        case Action.SLOW_DOWN:
            effects.throttled = True
            # Our pacing's fault, not the message's: the attempt does not count.
            return row(
                S.RETRY, attempts=attempts - 1, at=now + timedelta(seconds=1 + random.random())
            )
        case Action.RETRY_RECIPIENT:
            return row(S.RETRY, at=now + timedelta(seconds=4 ** max(0, attempts - 1)))
        case Action.RETRY:
            return _retry_or_fail(message, attempts, code, category, detail, now, rule.max_attempts)
        case Action.RETRY_AFTER_24H:
            at = now + timedelta(hours=24)
            if valid_until is not None and at > valid_until:
                return row(S.FAILED)
            return row(S.RETRY, at=at)
        case Action.FAIL:
            return row(S.FAILED)
        case Action.FAIL_MARK_CONTACT:
            if rule.suppress:
                effects.suppress.add(message.phone)
            return row(S.FAILED)
        case Action.FAIL_PAUSE_CAMPAIGN:
            effects.pause_campaigns[message.campaign_id] = f"Template error {code}: {detail}"
            if code in _TEMPLATE_STATUS_BY_CODE:
                effects.template_status[message.template_id] = _TEMPLATE_STATUS_BY_CODE[code]
            return row(S.FAILED)
        case Action.PAUSE_CAMPAIGN:
            effects.pause_campaigns[message.campaign_id] = f"{category} error {code}: {detail}"
            return row(S.RETRY, attempts=attempts - 1, at=now)
        case Action.PAUSE_ACCOUNT:
            effects.pause_accounts[account_id] = f"{category} error {code}: {detail}"
            return row(S.RETRY, attempts=attempts - 1, at=now)
    raise AssertionError(f"unhandled action {rule.action}")


def _retry_or_fail(
    message: ClaimedMessage,
    attempts: int,
    code: int | None,
    category: str,
    detail: str,
    now: datetime,
    rule_cap: int | None = None,
) -> RowOutcome:
    cap = min(settings.SENDER_MAX_ATTEMPTS, rule_cap or settings.SENDER_MAX_ATTEMPTS)
    if attempts >= cap:
        return RowOutcome(message.id, S.FAILED, attempts, None, None, code, category, detail)
    at = now + timedelta(seconds=backoff_seconds(attempts))
    return RowOutcome(message.id, S.RETRY, attempts, at, None, code, category, detail)


def apply_side_effects(effects: SideEffects) -> None:
    """Pause campaigns and accounts, suppress numbers, mark templates: once per batch."""
    for campaign_id, reason in effects.pause_campaigns.items():
        pause_active_campaigns(reason=reason, pk=campaign_id)
    for account_id, reason in effects.pause_accounts.items():
        WhatsAppAccount.objects.filter(pk=account_id, auth_failed_at__isnull=True).update(
            auth_failed_at=timezone.now()
        )
        logger.error("business account %s: %s; pausing its campaigns", account_id, reason)
        pause_active_campaigns(reason=reason, sender__account_id=account_id)
    for template_id, status in effects.template_status.items():
        MessageTemplate.objects.filter(pk=template_id).update(status=status)
    if effects.suppress:
        suppress_numbers(phones=effects.suppress, source="api_error", reason="131050")
