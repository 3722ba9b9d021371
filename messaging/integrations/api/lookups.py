"""Objects named in a request (a sender, a message, a campaign), or a 404 that says which."""

from __future__ import annotations

from django.db.models import Q

from campaigns.models import Campaign, SenderNumber
from messaging.integrations import lookup_cache
from messaging.integrations.api.errors import ApiError
from messaging.models import OutboundMessage, OutboundStatus


def sender_named(value: str, *, cached: bool = False) -> SenderNumber:
    """A sender number by its phone-number-id or its E.164; `cached`: from the lookup cache
    (the send paths, which read only its ids and number; callers that hand it on read it)."""
    cache_key = ("sender", value)
    sender = lookup_cache.get(cache_key) if cached else None
    if sender is None:
        sender = (
            SenderNumber.objects.select_related("account")
            .filter(Q(phone_number_id=value) | Q(display_number=value))
            .first()
        )
        if sender is None:
            raise ApiError(404, "unknown_sender", f"no sender number {value!r}", "sender")
        lookup_cache.put(cache_key, sender)
    return sender


def campaign(campaign_id: int) -> Campaign:
    found = Campaign.objects.select_related("sender").filter(pk=campaign_id).first()
    if found is None:
        raise ApiError(404, "not_found", f"no campaign {campaign_id}", "campaign_id")
    return found


def message(message_id: int) -> OutboundMessage:
    found = OutboundMessage.objects.filter(pk=message_id).first()
    if found is None:
        raise ApiError(404, "not_found", f"no message {message_id}", "message_id")
    return found


def status_value(label: str) -> int:
    for status in OutboundStatus:
        if status.label == label:
            return int(status)
    names = ", ".join(s.label for s in OutboundStatus)
    raise ApiError(400, "invalid_status", f"unknown status {label!r}; one of {names}", "status")
