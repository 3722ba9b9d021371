"""Template status/quality and phone-number quality webhooks: record them, pause what they hit."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import Q

from campaigns.models import MessageTemplate, SenderNumber
from integrations.events.payloads import publish_number_change, publish_template_change
from messaging.services import pause_active_campaigns
from webhooks.payload import AccountEvent

logger = logging.getLogger(__name__)

# Template statuses that still send; every other one (PAUSED, DISABLED, REJECTED…) pauses.
SENDABLE_TEMPLATE_STATUSES = {"APPROVED", "REINSTATED"}
# Number events that mean worse quality or a lower limit.
BAD_NUMBER_EVENTS = {"DOWNGRADE", "FLAGGED"}


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
    for template in _templates(event):
        MessageTemplate.objects.filter(pk=template.pk).update(status=status)
        publish_template_change(
            template, kind="status", status=status, reason=str(event.value.get("reason") or "")
        )
        if status not in SENDABLE_TEMPLATE_STATUSES:
            why = event.value.get("reason") or ""
            reason = f"Template {template} is {status}" + (f" ({why})" if why else "")
            _pause_template_users(template, reason[:255])


def _template_quality(event: AccountEvent) -> None:
    score = str(event.value.get("new_quality_score") or "").upper()
    templates = _templates(event)
    for template in templates:
        publish_template_change(template, kind="quality", quality=score)
    if score != "RED":
        return
    for template in templates:
        _pause_template_users(template, f"Template {template} quality is RED")


def _number_quality(event: AccountEvent) -> None:
    value: dict[str, Any] = event.value
    digits = "".join(ch for ch in str(value.get("display_phone_number") or "") if ch.isdigit())
    kind = str(value.get("event") or "").upper()
    rating = str(value.get("quality_rating") or value.get("current_quality_rating") or "").upper()
    if not digits:
        return
    numbers = SenderNumber.objects.filter(
        display_number="+" + digits, account__waba_id=event.waba_id
    )
    changes: dict[str, str] = {}
    if rating in SenderNumber.Quality.values:
        changes["quality_rating"] = rating
    if kind == "FLAGGED":
        changes["status"] = SenderNumber.Status.FLAGGED
        changes.setdefault("quality_rating", SenderNumber.Quality.RED)
    elif kind == "UNFLAGGED":
        changes["status"] = SenderNumber.Status.CONNECTED
    if isinstance(value.get("current_limit"), str):
        changes["messaging_tier"] = value["current_limit"][:32]
    for number in numbers:
        if changes:
            SenderNumber.objects.filter(pk=number.pk).update(**changes)
        publish_number_change(number, event=kind, changes=changes)
        if kind in BAD_NUMBER_EVENTS or rating == "RED":
            reason = f"Number {number.display_number}: quality {kind or rating}"
            logger.warning("sender %s: %s", number.pk, reason)
            pause_active_campaigns(reason=reason[:255], sender_id=number.pk)


HANDLERS = {
    "message_template_status_update": _template_status,
    "message_template_quality_update": _template_quality,
    "phone_number_quality_update": _number_quality,
}


@transaction.atomic
def record_account_events(*, events: Sequence[AccountEvent]) -> None:
    """Update templates and numbers from their webhooks; pause the campaigns they affect."""
    for event in events:
        HANDLERS[event.field](event)
