"""Meta-shaped webhook bodies (made-up ids) and a signed POST helper."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from tests.webhooks.conftest import SECRET
from webhooks.signature import sign

URL = "/webhooks/whatsapp/"
WABA = "102290129340398"


def status(
    wamid: str,
    name: str,
    *,
    ts: int = 1750030073,
    recipient: str = "14152000001",
    callback: str | None = None,
    code: int | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": wamid,
        "status": name,
        "timestamp": str(ts),
        "recipient_id": recipient,
    }
    if callback is not None:
        item["biz_opaque_callback_data"] = callback
    if code is not None:
        item["errors"] = [{"code": code, "title": f"error {code}", "message": "m"}]
    return item


def envelope(field: str, value: dict[str, Any], waba: str = WABA) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba, "changes": [{"field": field, "value": value}]}],
    }


def statuses_body(items: list[dict[str, Any]], phone_number_id: str = "106540352242922") -> dict:
    return envelope(
        "messages",
        {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
            "statuses": items,
        },
    )


def messages_body(
    messages: list[dict[str, Any]],
    phone_number_id: str,
    contacts: list[dict[str, Any]] | None = None,
) -> dict:
    return envelope(
        "messages",
        {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
            "contacts": contacts or [],
            "messages": messages,
        },
    )


def text_message(wamid: str, wa_id: str, body: str, ts: int, context: str | None = None) -> dict:
    message: dict[str, Any] = {
        "from": wa_id,
        "id": wamid,
        "timestamp": str(ts),
        "type": "text",
        "text": {"body": body},
    }
    if context:
        message["context"] = {"from": "15550783881", "id": context}
    return message


def post(client: Client, body: bytes | dict, *, secret: str = SECRET, signature: str | None = None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    header = signature if signature is not None else sign(raw, secret)
    return client.post(
        URL, data=raw, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=header
    )


def accepted_rows(campaign, n: int, *, prefix: str = "wamid.T"):
    """n queue rows the API accepted (wamid known), counted in campaign.sent like the sender."""
    from django.db.models import F
    from django.utils import timezone

    from campaigns.models import Campaign
    from messaging.models import OutboundStatus
    from tests.factories import OutboundMessageFactory

    rows = [
        OutboundMessageFactory(
            campaign=campaign,
            status=OutboundStatus.ACCEPTED,
            wamid=f"{prefix}{campaign.pk}.{i}",
            accepted_at=timezone.now(),
        )
        for i in range(n)
    ]
    Campaign.objects.filter(pk=campaign.pk).update(total=F("total") + n, sent=F("sent") + n)
    return rows


def recount(campaign) -> dict[str, int]:
    """The counters as the queue rows say they should be."""
    from messaging.models import OutboundStatus as S

    rows = list(campaign.messages.values_list("status", "accepted_at"))
    return {
        "sent": sum(1 for s, a in rows if S.ACCEPTED <= s <= S.READ or (s == S.FAILED and a)),
        "delivered": sum(1 for s, _ in rows if s in (S.DELIVERED, S.READ)),
        "read": sum(1 for s, _ in rows if s == S.READ),
        "failed": sum(1 for s, _ in rows if s == S.FAILED),
    }


def counters(campaign) -> dict[str, int]:
    campaign.refresh_from_db()
    return {k: getattr(campaign, k) for k in ("sent", "delivered", "read", "failed")}
