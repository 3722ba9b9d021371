"""The one table that maps WhatsApp error codes to a category and the engine's action.

Used by the sender for send responses and by the webhooks for failed statuses, so both paths
treat a code the same way (docs/whatsapp-api.md says what each code means and why it is where
it is). Staff see it in admin.
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
    # Opt the number out: suppressed for every campaign, its queued messages cancelled.
    suppress: bool = False
    # What it means and what to do, in a sentence for staff (campaign page, error table).
    staff_hint: str = ""
    # Mark the contact "not on WhatsApp": later imports report it instead of queueing it
    # (for POLICY_UNDELIVERABLE_DAYS: the code does not prove the number will never work).
    undeliverable: bool = False


def _rules(codes: tuple[int, ...], rule: ErrorRule) -> dict[int, ErrorRule]:
    return dict.fromkeys(codes, rule)


ERROR_TABLE: dict[int, ErrorRule] = {
    **_rules(
        (130429, 131057, 80007, 4),
        ErrorRule(
            Category.THROTTLED,
            Action.SLOW_DOWN,
            "Throughput or API rate limit reached",
            staff_hint="WhatsApp asked us to slow down; the number's rate was lowered and the "
            "message is retried. Nothing to do unless it persists.",
        ),
    ),
    131056: ErrorRule(
        Category.PAIR_RATE,
        Action.RETRY_RECIPIENT,
        "Too many messages to this user",
        staff_hint="Too many messages to this one person in a short time; retried for them "
        "after a pause, others are not slowed.",
    ),
    **_rules(
        (1, 2, 131016, 133004),
        ErrorRule(
            Category.TRANSIENT,
            Action.RETRY,
            "Service temporarily unavailable",
            staff_hint="A passing problem at Meta; retried with backoff. Nothing to do.",
        ),
    ),
    131000: ErrorRule(
        Category.TRANSIENT,
        Action.RETRY,
        "Unknown error at Meta",
        max_attempts=3,
        staff_hint="Meta could not say what went wrong; retried up to 3 times.",
    ),
    131049: ErrorRule(
        Category.MARKETING_LIMIT,
        Action.RETRY_AFTER_24H,
        "Per-user marketing limit reached",
        staff_hint="WhatsApp limits the marketing messages this person receives; retried "
        "after 24 h while the campaign is still valid.",
    ),
    131026: ErrorRule(
        Category.RECIPIENT,
        Action.FAIL_MARK_CONTACT,
        "Message undeliverable",
        staff_hint="Not a WhatsApp user, or cannot receive this message (old app, terms not "
        "accepted); not retried, and left out of new campaigns for a while.",
        undeliverable=True,
    ),
    131050: ErrorRule(
        Category.RECIPIENT,
        Action.FAIL_MARK_CONTACT,
        "User stopped marketing messages",
        suppress=True,
        staff_hint="The person turned off marketing messages from this business; the number "
        "is suppressed for future campaigns.",
    ),
    **_rules(
        (131047, 131051, 131052, 131021, 131030, 130472, 130403, 130497, 132005),
        ErrorRule(
            Category.RECIPIENT,
            Action.FAIL,
            "Not deliverable to this recipient",
            staff_hint="WhatsApp will not deliver to this person (blocked, region, or "
            "re-engagement rules); not retried.",
        ),
    ),
    **_rules(
        (100, 131008, 131009, 135000),
        ErrorRule(
            Category.PAYLOAD,
            Action.FAIL,
            "Invalid or missing parameter",
            staff_hint="The message we built was refused: check the template variables in "
            "the CSV for this row.",
        ),
    ),
    **_rules(
        (132000, 132012, 132007),
        ErrorRule(
            Category.TEMPLATE,
            Action.FAIL_PAUSE_CAMPAIGN,
            "Template does not fit the data",
            staff_hint="The template's variables do not match what we sent; the campaign "
            "was paused. Fix the template or the data, then resume.",
        ),
    ),
    **_rules(
        (132001, 132015, 132016),
        ErrorRule(
            Category.TEMPLATE,
            Action.FAIL_PAUSE_CAMPAIGN,
            "Template missing, paused or disabled",
            staff_hint="The template was paused or disabled by Meta (often for quality) or "
            "deleted; the campaign was paused. Send the rest with another template.",
        ),
    ),
    **_rules(
        (131048, 131064, 368, 131031, 131042, 131053, 131045, 133010, 131037, 131063),
        ErrorRule(
            Category.SPAM,
            Action.PAUSE_CAMPAIGN,
            "Number or account restricted",
            staff_hint="Meta restricted the number or account (spam, quality, billing); the "
            "campaign was paused. Check Business Manager before resuming.",
        ),
    ),
    **_rules(
        (0, 190, 3, 10),
        ErrorRule(
            Category.AUTH,
            Action.PAUSE_ACCOUNT,
            "Access token invalid or lacks permission",
            staff_hint="The access token is invalid or lacks permission; every campaign of "
            "the account was paused. Replace the token, then resume.",
        ),
    ),
}

# Codes we have never seen: transient, but with a short leash; logged by the caller.
UNKNOWN_RULE = ErrorRule(
    Category.UNKNOWN,
    Action.RETRY,
    "Unrecognised error",
    max_attempts=3,
    staff_hint="A code our error table does not know; retried up to 3 times. Report it.",
)
# Errors with no WhatsApp code at all (HTTP 429, 5xx, refused connections).
HTTP_THROTTLED_RULE = ERROR_TABLE[130429]
HTTP_TRANSIENT_RULE = ErrorRule(
    Category.TRANSIENT,
    Action.RETRY,
    "HTTP or network error",
    staff_hint="The API could not be reached or answered with a server error; retried.",
)


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
