"""Template status/quality, phone-number quality and business-capability webhooks: record
them (numbers through messaging.numbers), pause what they hit."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import Q

from campaigns.models import MessageTemplate, SenderNumber, TierSource
from messaging.integrations.events.payloads import publish_template_change
from messaging.numbers import NumberReport, record_business_limit, record_number_state
from messaging.policy import budget
from messaging.services import pause_active_campaigns
from messaging.templates import record_template_status
from webhooks.payload import AccountEvent

logger = logging.getLogger(__name__)


def _templates(event: AccountEvent) -> list[MessageTemplate]:
    value = event.value
    graph_id = str(value.get("message_template_id") or "")
    name = str(value.get("message_template_name") or "")
    language = str(value.get("message_template_language") or "")
    match = Q(graph_id=graph_id) if graph_id else Q(pk__in=[])
    if name and language:
        match |= Q(name=name, language=language)
    return list(MessageTemplate.objects.filter(match, account__waba_id=event.waba_id))


def _pause_template_users(template: MessageTemplate, reason: str) -> None:
    logger.warning("template %s: %s", template.pk, reason)
    pause_active_campaigns(reason=reason, templates=template.pk)


def _template_status(event: AccountEvent) -> None:
    status = str(event.value.get("event") or "").upper()[:32]
    if not status:
        return
    reason = str(event.value.get("reason") or "")
    for template in _templates(event):
        record_template_status(template=template, status=status, reason=reason)


def _template_quality(event: AccountEvent) -> None:
    score = str(event.value.get("new_quality_score") or "").upper()
    templates = _templates(event)
    for template in templates:
        publish_template_change(template, kind="quality", quality=score)
    if score != "RED":
        return
    for template in templates:
        _pause_template_users(template, f"Template {template} quality is RED")


def _number_report(value: dict[str, Any]) -> NumberReport:
    """phone_number_quality_update as a report. The limit is the portfolio's
    (`max_daily_conversations_per_business`, else the deprecated `current_limit`), except
    in THROUGHPUT_UPGRADE, where `current_limit` names the throughput, not the limit."""
    kind = str(value.get("event") or "").upper()
    rating = str(value.get("quality_rating") or value.get("current_quality_rating") or "").upper()
    quality = rating if rating in SenderNumber.Quality.values else None
    status = None
    if kind == "FLAGGED":
        status = SenderNumber.Status.FLAGGED
        quality = quality or SenderNumber.Quality.RED
    elif kind == "UNFLAGGED":
        status = SenderNumber.Status.CONNECTED
    tier = budget.tier_from_graph(value.get("max_daily_conversations_per_business"))
    if not tier and kind != "THROUGHPUT_UPGRADE":
        tier = budget.tier_from_graph(value.get("current_limit"))
    return NumberReport(tier=tier or None, quality=quality, status=status, event=kind[:40])


def _number_quality(event: AccountEvent) -> None:
    value: dict[str, Any] = event.value
    digits = "".join(ch for ch in str(value.get("display_phone_number") or "") if ch.isdigit())
    if not digits:
        return
    report = _number_report(value)
    numbers = SenderNumber.objects.filter(
        display_number="+" + digits, account__waba_id=event.waba_id
    ).values_list("pk", flat=True)
    for sender_id in numbers:
        record_number_state(sender_id=sender_id, report=report, source=TierSource.WEBHOOK)


def _business_capability(event: AccountEvent) -> None:
    """The portfolio's messaging limit changed (-1 = unlimited)."""
    value = event.value
    limit = value.get("max_daily_conversations_per_business")
    if limit is None:
        limit = value.get("max_daily_conversation_per_phone")  # removed in 2026
    tier = budget.tier_from_graph(limit)
    if tier:
        record_business_limit(waba_id=event.waba_id, tier=tier, source=TierSource.WEBHOOK)


HANDLERS = {
    "message_template_status_update": _template_status,
    "message_template_quality_update": _template_quality,
    "phone_number_quality_update": _number_quality,
    "business_capability_update": _business_capability,
}


@transaction.atomic
def record_account_events(*, events: Sequence[AccountEvent]) -> None:
    """Update templates and numbers from their webhooks; pause the campaigns they affect."""
    for event in events:
        HANDLERS[event.field](event)
