"""What an error answer does to a message and around it: one interpreter for both paths.

A send answer (the sender's flusher) and a failed-status webhook (the ladder) both call
`judge` for the row's next state and collect `Effects`, then call `apply_effects` once per
batch. So a code gets the same treatment whichever way it arrives; the meaning of each code
is the table in messaging/errors.py.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from messaging.errors import Action, ErrorRule
from messaging.models import OutboundStatus as S

logger = logging.getLogger(__name__)

# Template error codes that say what happened to the template itself.
TEMPLATE_STATUS_BY_CODE = {132001: "MISSING", 132015: "PAUSED", 132016: "DISABLED"}


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
    return float(delay * random.uniform(1 - jitter, 1 + jitter))


@dataclass(frozen=True, slots=True)
class Target:
    """The message an answer is about, as far as its effects reach."""

    campaign_id: int
    sender_id: int
    template_id: int | None  # None: a free-form text row (the API's)
    phone: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The row's next state. `attempts` is what the row keeps (a retry that was not the
    message's fault gives its attempt back)."""

    status: int
    attempts: int
    next_attempt_at: datetime | None = None


@dataclass
class Effects:
    """Collected over a batch and applied once: many rows often carry the same signal."""

    throttled_senders: set[int] = field(default_factory=set)
    pause_campaigns: dict[int, str] = field(default_factory=dict)
    # Keyed by sender number: its business account is resolved when applied.
    pause_accounts: dict[int, str] = field(default_factory=dict)
    # Keyed by business account: a management call (sync_numbers, sync_templates) has no
    # sender number, only the account whose token it used.
    pause_account_ids: dict[int, str] = field(default_factory=dict)
    opt_out: dict[str, str] = field(default_factory=dict)  # phone -> reason
    undeliverable: dict[str, int] = field(default_factory=dict)  # phone -> code
    template_status: dict[int, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(getattr(self, f) for f in self.__dataclass_fields__)


def reason_for(rule: ErrorRule, code: int | None) -> str:
    """The pause reason staff read, the same text whichever path saw the code."""
    return f"{rule.category} error {code}: {rule.description}"


def judge(
    rule: ErrorRule,
    *,
    code: int | None,
    attempts: int,
    valid_until: datetime | None,
    target: Target,
    effects: Effects,
    now: datetime | None = None,
) -> Verdict:
    """The next state of a row whose latest attempt (`attempts`, counting it) got `rule`."""
    now = now or timezone.now()
    cap = min(settings.SENDER_MAX_ATTEMPTS, rule.max_attempts or settings.SENDER_MAX_ATTEMPTS)

    def retry(at: datetime, *, counts: bool = True) -> Verdict:
        kept = attempts if counts else max(0, attempts - 1)
        if counts and attempts >= cap:
            return Verdict(S.FAILED, attempts)
        if valid_until is not None and at > valid_until:
            return Verdict(S.FAILED, attempts)
        return Verdict(S.RETRY, kept, at)

    match rule.action:
        case Action.SLOW_DOWN:
            effects.throttled_senders.add(target.sender_id)
            # Our pacing's fault, not the message's: the attempt does not count.
            return retry(now + timedelta(seconds=1 + random.random()), counts=False)
        case Action.RETRY_RECIPIENT:
            # The pair rate: 1, 4, 16… s for this recipient only.
            return retry(now + timedelta(seconds=4 ** max(0, attempts - 1)))
        case Action.RETRY:
            return retry(now + timedelta(seconds=backoff_seconds(attempts)))
        case Action.RETRY_AFTER_24H:
            return retry(now + timedelta(hours=24))
        case Action.FAIL:
            return Verdict(S.FAILED, attempts)
        case Action.FAIL_MARK_CONTACT:
            if rule.suppress:
                effects.opt_out[target.phone] = f"{code}: {rule.description}"
            if rule.undeliverable:
                effects.undeliverable[target.phone] = code or 0
            return Verdict(S.FAILED, attempts)
        case Action.FAIL_PAUSE_CAMPAIGN:
            effects.pause_campaigns[target.campaign_id] = reason_for(rule, code)
            if code in TEMPLATE_STATUS_BY_CODE and target.template_id is not None:
                effects.template_status[target.template_id] = TEMPLATE_STATUS_BY_CODE[code]
            return Verdict(S.FAILED, attempts)
        case Action.PAUSE_CAMPAIGN:
            effects.pause_campaigns[target.campaign_id] = reason_for(rule, code)
            return retry(now, counts=False)
        case Action.PAUSE_ACCOUNT:
            effects.pause_accounts[target.sender_id] = reason_for(rule, code)
            return retry(now, counts=False)
    raise AssertionError(f"unhandled action {rule.action}")


def judge_management(
    rule: ErrorRule, *, code: int | None, account_id: int, effects: Effects
) -> None:
    """What a management call's error (sync_numbers, sync_templates) does: the same
    account-wide action as on a send (an invalid or expired token, 0/190, pauses the account
    and sets auth_failed_at). The other actions are about a message, and there is none."""
    if rule.action == Action.PAUSE_ACCOUNT:
        effects.pause_account_ids[account_id] = reason_for(rule, code)


def management_error(
    rule: ErrorRule | None, *, code: int | None, waba_id: str, effects: Effects | None = None
) -> None:
    """`judge_management` for the account `waba_id`, applied at once unless the caller
    collects `effects` to apply them itself. Nothing for an account not stored (yet) or for
    no answer at all (`rule` None)."""
    from campaigns.models import WhatsAppAccount

    account_id = WhatsAppAccount.objects.filter(waba_id=waba_id).values_list("pk", flat=True)
    if rule is None or not account_id:
        return
    collected = effects if effects is not None else Effects()
    judge_management(rule, code=code, account_id=account_id[0], effects=collected)
    if effects is None:
        apply_effects(collected)


def failed_tokens(waba_ids: Iterable[str] | None = None) -> dict[str, datetime]:
    """waba_id -> auth_failed_at of the accounts (of `waba_ids`, or all) whose token failed.

    A sync that names no account (the cluster's Schedules, `sync_numbers` without arguments)
    leaves these out until staff clear the failure (the account admin's action, once the token
    is replaced): another call could only fail again, and its pause would stop once more the
    campaigns staff resumed. A sync that names the account still calls it, so staff can try a
    new token; a call that succeeds clears nothing, since reading templates or numbers does not
    prove the token may send (10, a missing permission, fails a token too)."""
    from campaigns.models import WhatsAppAccount

    failed = WhatsAppAccount.objects.filter(auth_failed_at__isnull=False)
    if waba_ids is not None:
        failed = failed.filter(waba_id__in=list(waba_ids))
    rows = failed.order_by("waba_id").values_list("waba_id", "auth_failed_at")
    return {waba_id: at for waba_id, at in rows if at is not None}


def token_failure(sender_id: int) -> str:
    """Why a campaign on this number may not start or resume now ('' when it may): its
    account's token failed (auth_failed_at). Its first send would answer 190 again and pause
    it; staff replace the token and clear the failure in admin first."""
    from campaigns.models import WhatsAppAccount

    failed = WhatsAppAccount.objects.filter(
        numbers__pk=sender_id, auth_failed_at__isnull=False
    ).values_list("waba_id", "auth_failed_at")
    for waba_id, at in failed:
        return (
            f"the token of business account {waba_id} failed at {at:%Y-%m-%d %H:%M} UTC: "
            "replace it, then clear the auth failure in admin (business accounts)"
        )
    return ""


def skipped_tokens_line(failed: Mapping[str, datetime]) -> str:
    """What a sync that left out `failed` (failed_tokens) says about them."""
    return (
        f"{len(failed)} account(s) skipped, their token failed: {', '.join(sorted(failed))} "
        "(clear the auth failure in admin once the token is replaced)"
    )


def failed_token_note(waba_id: str, since: datetime) -> str:
    """What a sync that was told to call an account whose token failed says about it."""
    return (
        f"account {waba_id}: its token failed at {since:%Y-%m-%d %H:%M} UTC; the scheduled "
        "syncs skip it until staff clear the auth failure in admin"
    )


def apply_effects(effects: Effects, *, throttle: Callable[[int], object] | None = None) -> None:
    """Carry out a batch's effects. `throttle(sender_id)` is the live sender's own bucket;
    without one (webhooks) the number's shared bucket is slowed."""
    from campaigns.models import MessageTemplate, SenderNumber, WhatsAppAccount
    from messaging.policy.optout import mark_undeliverable, opt_out
    from messaging.services import pause_active_campaigns

    for sender_id in sorted(effects.throttled_senders):
        (throttle or throttle_shared)(sender_id)
    for campaign_id, reason in sorted(effects.pause_campaigns.items()):
        pause_active_campaigns(reason=reason, pk=campaign_id)
    paused_accounts = dict(effects.pause_account_ids)
    if effects.pause_accounts:
        accounts = dict(
            SenderNumber.objects.filter(pk__in=effects.pause_accounts).values_list(
                "pk", "account_id"
            )
        )
        for sender_id, reason in sorted(effects.pause_accounts.items()):
            paused_accounts.setdefault(accounts[sender_id], reason)
    for account_id, reason in sorted(paused_accounts.items()):
        WhatsAppAccount.objects.filter(pk=account_id, auth_failed_at__isnull=True).update(
            auth_failed_at=timezone.now()
        )
        logger.error("business account %s: %s; pausing its campaigns", account_id, reason)
        pause_active_campaigns(reason=reason, sender__account_id=account_id)
    for template_id, status in sorted(effects.template_status.items()):
        MessageTemplate.objects.filter(pk=template_id).update(status=status)
    if effects.template_status:
        from messaging.integrations import lookup_cache

        lookup_cache.changed()  # the send API refuses the template from its next request
    by_reason: dict[str, list[str]] = {}
    for phone, reason in effects.opt_out.items():
        by_reason.setdefault(reason, []).append(phone)
    for reason, phones in sorted(by_reason.items()):
        opt_out(phones=phones, source="api_error", reason=reason)
    if effects.undeliverable:
        mark_undeliverable(effects.undeliverable)


def throttle_shared(sender_id: int) -> float:
    """Slow a number's shared bucket from outside its sender loop (a throttle webhook)."""
    from campaigns.models import SenderNumber
    from messaging.pacing import bucket_for

    number = SenderNumber.objects.get(pk=sender_id)
    target = number.rate_mps * settings.SENDER_RATE_HEADROOM
    bucket = bucket_for(
        sender_id=sender_id, target=target, cap=number.rate_mps, initial=number.learned_rate
    )
    rate = bucket.throttled()
    SenderNumber.objects.filter(pk=sender_id).update(
        learned_rate=rate, learned_rate_at=timezone.now()
    )
    return rate
