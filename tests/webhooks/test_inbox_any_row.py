"""The inbox and the Inbound messages list survive any stored inbound row."""

import json

import pytest
from django.utils import timezone

from tests.factories import SenderFactory
from tests.webhooks.payloads import messages_body, post
from webhooks.drain import drain
from webhooks.models import InboundMessage

pytestmark = pytest.mark.django_db

ODD_USERS = ["", "not-a-number", "line\nbreak", "a/../b?c#d", "%2F", " "]


def test_every_odd_stored_user_lists_and_opens(admin_client):
    sender = SenderFactory()
    for i, user in enumerate(ODD_USERS):
        InboundMessage.objects.create(
            sender=sender,
            user_phone=user,
            wamid=f"wamid.odd.{i}",
            type="text",
            text=f"odd {i}",
            timestamp=timezone.now(),
        )
    for url in ("/admin/webhooks/inboundmessage/inbox/", "/admin/webhooks/inboundmessage/"):
        page = admin_client.get(url)
        assert page.status_code == 200, url
    links = page.context["cl"].result_list
    assert len(links) == len(ODD_USERS)
    inbox = admin_client.get("/admin/webhooks/inboundmessage/inbox/")
    for row in inbox.context["page"]:
        thread = admin_client.get(row["url"])
        assert thread.status_code == 200, row
        assert any(item.text.startswith("odd") for item in thread.context["items"]), row


def test_a_signed_message_without_from_or_user_id_is_stored_and_the_inbox_still_answers(
    client, admin_client
):
    sender = SenderFactory()
    ts = str(int(timezone.now().timestamp()))
    messages = [
        {"id": "wamid.nofrom", "timestamp": ts, "type": "text", "text": {"body": "who am I"}},
        {
            "id": "wamid.letters",
            "from": "abc",
            "timestamp": ts,
            "type": "text",
            "text": {"body": "letters"},
        },
    ]
    body = messages_body(messages, sender.phone_number_id, contacts=[{"profile": {}}, {}])
    assert post(client, json.dumps(body).encode()).status_code == 200
    drain()
    assert InboundMessage.objects.count() == 2
    for url in ("/admin/webhooks/inboundmessage/inbox/", "/admin/webhooks/inboundmessage/"):
        assert admin_client.get(url).status_code == 200
