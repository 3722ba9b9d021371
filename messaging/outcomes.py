"""What the sender does with each send outcome: the row's next state.

Error answers are judged by messaging.policy (the same function the failed-status webhooks
use); this module only adds what is particular to a send answer (accepted, unknown).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from messaging import queue
from messaging.errors import HTTP_TRANSIENT_RULE
from messaging.graph_api import OutcomeKind, SendOutcome
from messaging.models import OutboundStatus as S
from messaging.policy import breaker
from messaging.policy.actions import Effects, Target, judge
from messaging.policy.breaker import Sample
from messaging.policy.gate import deadline
from messaging.queue import ClaimedMessage, RowOutcome


def record_answers(
    answers: list[tuple[ClaimedMessage, SendOutcome]],
    *,
    sender_id: int,
    valid_until: Mapping[int, datetime | None],
    now: datetime | None = None,
) -> tuple[list[tuple[int, int, int]], Effects]:
    """The flusher's step: judge a batch of send answers and write them in one statement.
    Returns the rows moved and the effects to apply (policy.apply_effects), kept apart so a
    lost connection between the two retries only what is left. `now` is the sender's clock:
    retries are due by the clock its claims read."""
    effects = Effects()
    outcomes = [
        decide(
            message,
            outcome,
            sender_id=sender_id,
            valid_until=deadline(valid_until.get(message.campaign_id), message.valid_until),
            effects=effects,
            now=now,
        )
        for message, outcome in answers
    ]
    moved = queue.record_outcomes(outcomes)
    # The circuit breaker (and a running canary) hear of what was really written.
    written = {row_id for row_id, _campaign, _status in moved}
    breaker.observe(
        (
            Sample(message.campaign_id, None if row.status == S.ACCEPTED else row.error_code)
            for (message, _answer), row in zip(answers, outcomes, strict=True)
            if row.id in written and (row.status == S.ACCEPTED or row.error_code is not None)
        ),
        effects,
    )
    return moved, effects


def decide(
    message: ClaimedMessage,
    outcome: SendOutcome,
    *,
    sender_id: int,
    valid_until: datetime | None,
    effects: Effects,
    now: datetime | None = None,
) -> RowOutcome:
    """The row's next state after its send answer; error answers go through policy.judge."""
    attempts = message.attempts
    if outcome.kind == OutcomeKind.ACCEPTED:
        detail = "" if outcome.message_status == "accepted" else outcome.message_status
        return RowOutcome(
            message.id, S.ACCEPTED, attempts, wamid=outcome.wamid, error_detail=detail
        )
    if outcome.kind == OutcomeKind.AMBIGUOUS:
        return RowOutcome(message.id, S.UNKNOWN, attempts, error_detail=outcome.detail)
    # Not sent at all (refused connection): a transient error without a code.
    rule = outcome.rule if outcome.kind != OutcomeKind.NOT_SENT else HTTP_TRANSIENT_RULE
    assert rule is not None
    code = outcome.error_code if outcome.kind != OutcomeKind.NOT_SENT else None
    target = Target(message.campaign_id, sender_id, message.template_id, message.phone)
    verdict = judge(
        rule,
        code=code,
        attempts=attempts,
        valid_until=valid_until,
        target=target,
        effects=effects,
        now=now,
    )
    return RowOutcome(
        message.id,
        verdict.status,
        verdict.attempts,
        verdict.next_attempt_at,
        None,
        code,
        str(rule.category),
        outcome.detail,
    )
