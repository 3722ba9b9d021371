"""Staff answer a conversation from the inbox: free text inside the customer service window,
an approved template (rendered from the contact's attributes) outside it. The reply row is
written before the HTTP call, so what was tried is never lost; sending goes through the
shared Graph API client (messaging/graph_api.py)."""

from __future__ import annotations

import logging
from typing import Any

from campaigns.csv_import.errors import CsvImportError, TemplateVariableError
from campaigns.csv_import.rendering import message_text, render_components
from campaigns.models import Contact, MessageTemplate, SenderNumber
from messaging.graph_api import OutcomeKind, send_once, template_payload, text_payload
from webhooks.inbox import window_is_open
from webhooks.models import StaffReply

logger = logging.getLogger(__name__)
MAX_TEXT = 4096


class ReplyRefused(Exception):
    """The reply cannot go (window closed, no text, a template that does not fit…)."""


def reply_templates(sender: SenderNumber) -> list[MessageTemplate]:
    """What staff may pick outside the window: the account's sendable templates."""
    return list(
        MessageTemplate.objects.sendable()
        .filter(account_id=sender.account_id)
        .order_by("name", "language")
    )


def send_staff_reply(
    *,
    sender: SenderNumber,
    user_phone: str,
    user: Any,
    text: str = "",
    template: MessageTemplate | None = None,
) -> StaffReply:
    """Send one reply; raises ReplyRefused before anything is sent when it may not go."""
    if not user_phone.startswith("+"):
        raise ReplyRefused("this user has no phone number to answer")
    if template is None:
        text = text.strip()
        if not text:
            raise ReplyRefused("write a message first")
        if len(text) > MAX_TEXT:
            raise ReplyRefused(f"a message has at most {MAX_TEXT} characters")
        if not window_is_open(sender_id=sender.pk, user_phone=user_phone):
            raise ReplyRefused(
                "the 24 h customer service window is closed: only a template can be sent"
            )
        payload = text_payload(to=user_phone, body=text)
    else:
        if template.account_id != sender.account_id or not template.is_sendable:
            raise ReplyRefused(f"template {template} cannot be sent from this number")
        contact = Contact.objects.filter(phone=user_phone).first()
        try:
            components = render_components(template, contact.attributes if contact else {})
        except (CsvImportError, TemplateVariableError) as exc:
            raise ReplyRefused(f"template {template} does not fit this contact: {exc}") from exc
        text = message_text(template, components)
        payload = template_payload(
            to=user_phone.lstrip("+"),
            template_name=template.name,
            language=template.language,
            components=components,
            callback_data="",
        )
    reply = StaffReply.objects.create(
        sender=sender, user_phone=user_phone, text=text, template=template, created_by=user
    )
    outcome = send_once(
        phone_number_id=sender.phone_number_id, waba_id=sender.account.waba_id, payload=payload
    )
    if outcome.kind == OutcomeKind.ACCEPTED:
        reply.wamid = outcome.wamid
    else:
        reply.error = f"{outcome.kind}: code {outcome.error_code}, {outcome.detail}"[:500]
        logger.warning("staff reply %s to %s failed: %s", reply.pk, user_phone, reply.error)
    reply.save(update_fields=["wamid", "error"])
    return reply
