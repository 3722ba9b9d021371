"""Test sends: a campaign's rendered message to staff phones before launch.

Sent with the Graph client's one-off send, never through the queue, so no campaign counter
moves; recorded as PreviewSend rows; the callback data "test:<id>" marks the message so a status
webhook for it matches no queue row (webhooks/statuses/matching.py only matches "out:<id>").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User

from campaigns.csv_import import normalise_phone
from campaigns.models import SENDABLE_TEMPLATE_LABEL, MessageTemplate, SenderNumber
from messaging.graph_api import OutcomeKind, send_once, template_payload
from messaging.models import PreviewSend

logger = logging.getLogger(__name__)
MAX_TEST_NUMBERS = 10
TEST_CALLBACK_PREFIX = "test:"


def staff_numbers(sender: SenderNumber) -> list[str]:
    """The phones a test may go to: the TEST_SEND_NUMBERS setting and the sender's own list,
    normalised to E.164 (entries that are not phone numbers are left out, and logged)."""
    raw = [*settings.TEST_SEND_NUMBERS, *sender.test_numbers.split(",")]
    numbers: list[str] = []
    for entry in raw:
        entry = entry.strip()
        if not entry:
            continue
        phone, reason = normalise_phone(entry, settings.WHATSAPP_DEFAULT_REGION)
        if phone is None:
            logger.warning("test-send number %r ignored: %s", entry, reason)
        elif phone not in numbers:
            numbers.append(phone)
    return numbers


def send_test(
    *,
    sender: SenderNumber,
    template: MessageTemplate,
    components: list[dict[str, Any]],
    to: Sequence[str],
    requested_by: User | None = None,
) -> list[PreviewSend]:
    """Send the rendered template to each of `to` (staff numbers of this sender only)."""
    allowed = set(staff_numbers(sender))
    if not to:
        raise ValueError("choose at least one staff number")
    if len(to) > MAX_TEST_NUMBERS:
        raise ValueError(f"at most {MAX_TEST_NUMBERS} numbers per test")
    strangers = [n for n in to if n not in allowed]
    if strangers:
        raise ValueError(
            f"{', '.join(strangers)}: not a staff number (TEST_SEND_NUMBERS or the sender's "
            "test numbers)"
        )
    if not template.is_sendable:
        raise ValueError(
            f"template {template} is {template.status}, only {SENDABLE_TEMPLATE_LABEL} can be sent"
        )
    sends = []
    for number in to:
        test = PreviewSend.objects.create(
            sender=sender,
            template=template,
            to=number,
            parameters=components,
            requested_by=requested_by,
        )
        outcome = send_once(
            phone_number_id=sender.phone_number_id,
            waba_id=sender.account.waba_id,
            payload=template_payload(
                to=number.lstrip("+"),
                template_name=template.name,
                language=template.language,
                components=components,
                callback_data=f"{TEST_CALLBACK_PREFIX}{test.pk}",
            ),
        )
        if outcome.kind == OutcomeKind.ACCEPTED:
            test.wamid = outcome.wamid
        else:
            test.error = f"{outcome.error_code or outcome.http_status or ''} {outcome.detail}"[
                :500
            ].strip()
        test.save(update_fields=["wamid", "error"])
        logger.info("test send of %s to %s: %s", template, number, test.wamid or test.error)
        sends.append(test)
    return sends
