"""Send one message or a batch; read a message's status and timeline."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Status

from messaging.integrations.api import lookups
from messaging.integrations.api.auth import require
from messaging.integrations.api.errors import ApiError
from messaging.integrations.api.idempotency import run_once
from messaging.integrations.api.schemas import (
    BatchIn,
    BatchOut,
    ErrorOut,
    MessageDetailOut,
    MessageIn,
    MessageOut,
    SendIn,
)
from messaging.integrations.models import ApiKey
from messaging.integrations.transactional import MessageSpec, SendRefused, send_batch
from messaging.models import OutboundMessage, OutboundStatus
from messaging.selectors import message_timeline

router = Router(tags=["messages"])
ERRORS: dict[int, Any] = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut}


def message_out(row: OutboundMessage) -> dict[str, Any]:
    return {
        "id": row.pk,
        "status": OutboundStatus(row.status).label,
        "campaign_id": row.campaign_id,
        "to": row.phone,
        "wamid": row.wamid,
        # A string: the answer is also stored as JSON for Idempotency-Key replays.
        "valid_until": row.valid_until.isoformat() if row.valid_until else None,
    }


def _spec(item: MessageIn, default_ttl: int | None = None) -> MessageSpec:
    template = item.template
    ttl = item.ttl_seconds
    if ttl is None and item.valid_until is None:
        ttl = default_ttl
    return MessageSpec(
        to=item.to,
        template=template.name if template else None,
        language=template.language if template else None,
        variables=template.variables if template else {},
        components=template.components if template else None,
        text=item.text,
        preview_url=item.preview_url,
        valid_until=item.valid_until,
        ttl_seconds=ttl,
    )


@router.post(
    "/messages",
    response={202: MessageOut, **ERRORS, 409: ErrorOut, 422: ErrorOut, 429: ErrorOut},
    summary="Queue one template or text message",
)
def send(request: HttpRequest, payload: SendIn) -> Status:
    """Queued in the sender number's transactional stream, ahead of its campaigns.

    Send an `Idempotency-Key` header to make retries safe: a repeat of the key returns the
    first answer and never queues a second message (keys are kept for at least 24 hours).
    """
    api_key: ApiKey = require(request, ApiKey.Scope.MESSAGES_SEND)
    sender = lookups.sender_named(payload.sender, cached=True)

    def work() -> tuple[int, Any]:
        (result,) = send_batch(sender=sender, messages=[_spec(payload)])
        if isinstance(result, SendRefused):
            conflict = ("window_closed", "recipient_opted_out", "not_on_whatsapp", "stream_paused")
            status = 409 if result.code in conflict else 400
            raise ApiError(status, result.code, result.message, result.field)
        return 202, message_out(result)

    return Status(*run_once(request, api_key, work))


@router.post(
    "/messages/batch",
    response={200: BatchOut, **ERRORS, 422: ErrorOut, 429: ErrorOut},
    summary="Queue up to 1,000 messages in one transaction",
)
def send_many(request: HttpRequest, payload: BatchIn) -> Status:
    """Each message is accepted or refused on its own; `results` follow the request's order."""
    api_key: ApiKey = require(request, ApiKey.Scope.MESSAGES_SEND)
    sender = lookups.sender_named(payload.sender, cached=True)

    def work() -> tuple[int, Any]:
        results = send_batch(
            sender=sender, messages=[_spec(m, payload.ttl_seconds) for m in payload.messages]
        )
        items: list[dict[str, Any]] = []
        for index, result in enumerate(results):
            if isinstance(result, SendRefused):
                error = result.as_dict()
                error["field"] = f"messages[{index}].{result.field}" if result.field else None
                items.append({"index": index, "error": error})
            else:
                items.append({"index": index, "message": message_out(result)})
        refused = sum(1 for i in items if "error" in i)
        return 200, {"queued": len(items) - refused, "refused": refused, "results": items}

    return Status(*run_once(request, api_key, work))


@router.get("/messages/{message_id}", response={200: MessageDetailOut, **ERRORS, 429: ErrorOut})
def message_detail(request: HttpRequest, message_id: int) -> Status:
    """The message's current status and every status WhatsApp reported for it, in order; a
    message that could not go before its deadline ends with `expired`."""
    require(request, ApiKey.Scope.MESSAGES_READ)
    row = lookups.message(message_id)
    timeline = message_timeline(row)
    return Status(
        200,
        {
            **message_out(row),
            "attempts": row.attempts,
            "error_code": row.error_code,
            "error_category": row.error_category,
            "error_detail": row.error_detail,
            "timeline": timeline,
        },
    )
