"""The one table that maps WhatsApp error codes to a category and the engine's action.

Used by the sender for send responses and by the webhooks for failed statuses, so both paths
treat a code the same way (see ../shared/whatsapp-cloud-api.md §2.2). Staff see it in admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    THROTTLED = "throttled"
    PAIR_RATE = "pair_rate"
    TRANSIENT = "transient"
    MARKETING_LIMIT = "marketing_limit"
    RECIPIENT = "recipient"
    TEMPLATE = "template"
    SPAM = "spam"
    AUTH = "auth"
    PAYLOAD = "payload"
    UNKNOWN = "unknown"


class Action(StrEnum):
    # Slow the sender number down (multiplicative decrease), retry the message.
    SLOW_DOWN = "slow_down"
    # Retry only this recipient after 1, 4, 16… s; keep sending to others.
    RETRY_RECIPIENT = "retry_recipient"
    # Retry on the backoff schedule.
    RETRY = "retry"
    # Retry no sooner than 24 h, within the campaign's validity.
    RETRY_AFTER_24H = "retry_after_24h"
    # Fail the message; never retry.
    FAIL = "fail"
    # Fail the message and suppress or mark the contact.
    FAIL_MARK_CONTACT = "fail_mark_contact"
    # Fail the message and pause the campaign (template gone, paused, disabled, mismatched).
    FAIL_PAUSE_CAMPAIGN = "fail_pause_campaign"
    # Put the message back and pause the campaign (spam, account restricted, billing).
    PAUSE_CAMPAIGN = "pause_campaign"
    # Put the message back and pause every campaign of the business account.
    PAUSE_ACCOUNT = "pause_account"


@dataclass(frozen=True)
class ErrorRule:
    category: Category
    action: Action
    description: str
    # Transient rules with a cap tighter than SENDER_MAX_ATTEMPTS (e.g. 131000: 2–3 tries).
    max_attempts: int | None = None
    # Suppress the number in future campaigns too (not only mark this message).
    suppress: bool = False


def _rules(codes: tuple[int, ...], rule: ErrorRule) -> dict[int, ErrorRule]:
    return dict.fromkeys(codes, rule)


ERROR_TABLE: dict[int, ErrorRule] = {
    **_rules(
        (130429, 131057, 80007, 4),
        ErrorRule(Category.THROTTLED, Action.SLOW_DOWN, "Throughput or API rate limit reached"),
    ),
    131056: ErrorRule(Category.PAIR_RATE, Action.RETRY_RECIPIENT, "Too many messages to this user"),
    **_rules(
        (1, 2, 131016, 133004),
        ErrorRule(Category.TRANSIENT, Action.RETRY, "Service temporarily unavailable"),
    ),
    131000: ErrorRule(Category.TRANSIENT, Action.RETRY, "Unknown error at Meta", max_attempts=3),
    131049: ErrorRule(
        Category.MARKETING_LIMIT, Action.RETRY_AFTER_24H, "Per-user marketing limit reached"
    ),
    131026: ErrorRule(Category.RECIPIENT, Action.FAIL_MARK_CONTACT, "Message undeliverable"),
    131050: ErrorRule(
        Category.RECIPIENT,
        Action.FAIL_MARK_CONTACT,
        "User stopped marketing messages",
        suppress=True,
    ),
    **_rules(
        (131047, 131051, 131052, 131021, 131030, 130472, 130403, 130497, 132005),
        ErrorRule(Category.RECIPIENT, Action.FAIL, "Not deliverable to this recipient"),
    ),
    **_rules(
        (100, 131008, 131009, 135000),
        ErrorRule(Category.PAYLOAD, Action.FAIL, "Invalid or missing parameter"),
    ),
    **_rules(
        (132000, 132012, 132007),
        ErrorRule(Category.TEMPLATE, Action.FAIL_PAUSE_CAMPAIGN, "Template does not fit the data"),
    ),
    **_rules(
        (132001, 132015, 132016),
        ErrorRule(
            Category.TEMPLATE,
            Action.FAIL_PAUSE_CAMPAIGN,
            "Template missing, paused or disabled",
        ),
    ),
    **_rules(
        (131048, 131064, 368, 131031, 131042, 131053, 131045, 133010, 131037, 131063),
        ErrorRule(Category.SPAM, Action.PAUSE_CAMPAIGN, "Number or account restricted"),
    ),
    **_rules(
        (0, 190, 3, 10),
        ErrorRule(Category.AUTH, Action.PAUSE_ACCOUNT, "Access token invalid or lacks permission"),
    ),
}

# Codes we have never seen: transient, but with a short leash; logged by the caller.
UNKNOWN_RULE = ErrorRule(Category.UNKNOWN, Action.RETRY, "Unrecognised error", max_attempts=3)
# Errors with no WhatsApp code at all (HTTP 429, 5xx, refused connections).
HTTP_THROTTLED_RULE = ERROR_TABLE[130429]
HTTP_TRANSIENT_RULE = ErrorRule(Category.TRANSIENT, Action.RETRY, "HTTP or network error")


def classify(code: int | None, http_status: int | None = None) -> ErrorRule:
    """The rule for a WhatsApp error code (preferred) or, failing that, an HTTP status."""
    if code is not None:
        if code in ERROR_TABLE:
            return ERROR_TABLE[code]
        if 200 <= code <= 299:  # the permission family
            return ERROR_TABLE[10]
    if http_status == 429:
        return HTTP_THROTTLED_RULE
    if http_status is None or http_status >= 500:
        return HTTP_TRANSIENT_RULE
    return UNKNOWN_RULE


def is_retryable(rule: ErrorRule) -> bool:
    return rule.action in (
        Action.SLOW_DOWN,
        Action.RETRY,
        Action.RETRY_RECIPIENT,
        Action.RETRY_AFTER_24H,
    )
