"""The events of each kind of change: what other systems are told, and in one shape each.

Every function here is one call at the place the change is written, inside its transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from messaging.integrations.events.publish import publish
from messaging.integrations.models import EventType

CAMPAIGN_EVENTS = {
    "draft": EventType.CAMPAIGN_DRAFT,
    "scheduled": EventType.CAMPAIGN_SCHEDULED,
    "running": EventType.CAMPAIGN_STARTED,
    "paused": EventType.CAMPAIGN_PAUSED,
    "completed": EventType.CAMPAIGN_COMPLETED,
    "cancelled": EventType.CAMPAIGN_CANCELLED,
    "expired": EventType.CAMPAIGN_EXPIRED,
}


def publish_campaign_state(campaign: Any, *, state: str | None = None) -> None:
    """The campaign's status as an event; `state` names one that is not a status of its own
    ("expired": past valid_until, its unsent rows expired; it then completes)."""
    state = state or str(campaign.status)
    event_type = CAMPAIGN_EVENTS.get(state)
    if event_type is None:
        return
    publish(
        event_type,
        [
            {
                "campaign_id": campaign.pk,
                "name": campaign.name,
                "kind": campaign.kind,
                "status": state,
                "pause_reason": campaign.pause_reason,
                "sender_id": campaign.sender_id,
            }
        ],
    )


def publish_inbound(messages: Iterable[dict[str, Any]]) -> None:
    """New inbound messages: id, from, sender, type, text, wamid, campaign_id, timestamp."""
    publish(EventType.MESSAGE_RECEIVED, list(messages))


def publish_opt_outs(*, phones: Iterable[str], source: str, reason: str) -> None:
    publish(
        EventType.CONTACT_OPTED_OUT,
        [{"phone": p, "source": source, "reason": reason} for p in sorted(set(phones))],
    )


def publish_opt_ins(*, phones: Iterable[str]) -> None:
    publish(EventType.CONTACT_OPTED_IN, [{"phone": p} for p in sorted(set(phones))])


def publish_template_change(
    template: Any, *, kind: str, status: str = "", quality: str = "", reason: str = ""
) -> None:
    event_type = EventType.TEMPLATE_QUALITY if kind == "quality" else EventType.TEMPLATE_STATUS
    publish(
        event_type,
        [
            {
                "template_id": template.pk,
                "name": template.name,
                "language": template.language,
                "status": status,
                "quality": quality,
                "reason": reason,
            }
        ],
    )


def publish_number_change(number: Any, *, event: str, changes: dict[str, str]) -> None:
    publish(
        EventType.NUMBER_QUALITY,
        [
            {
                "sender_id": number.pk,
                "phone_number_id": number.phone_number_id,
                "display_number": number.display_number,
                "event": event,
                **changes,
            }
        ],
    )
