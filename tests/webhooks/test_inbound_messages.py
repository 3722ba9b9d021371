import json
from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import OutboundStatus as S
from tests.factories import CampaignFactory, ContactFactory, OutboundMessageFactory, SenderFactory
from tests.webhooks.payloads import messages_body, post, text_message
from webhooks.drain import drain
from webhooks.models import InboundMessage, RawEvent

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sql_path")]


def _now_ts(delta=timedelta()):
    return int((timezone.now() + delta).timestamp())


def _deliver(client, body):
    assert post(client, json.dumps(body).encode()).status_code == 200
    drain()


def test_text_button_interactive_and_media_are_stored_once(client):
    sender = SenderFactory()
    ts = _now_ts()
    messages = [
        text_message("wamid.T1", "14152000001", "Hello there", ts),
        {
            "from": "14152000001",
            "id": "wamid.B1",
            "timestamp": str(ts),
            "type": "button",
            "button": {"payload": "MORE_INFO", "text": "Tell me more"},
        },
        {
            "from": "14152000001",
            "id": "wamid.I1",
            "timestamp": str(ts),
            "type": "interactive",
            "interactive": {"type": "list_reply", "list_reply": {"id": "opt_2", "title": "Two"}},
        },
        {
            "from": "14152000001",
            "id": "wamid.M1",
            "timestamp": str(ts),
            "type": "image",
            "image": {"id": "1037543291543636", "mime_type": "image/jpeg", "caption": "look"},
        },
        {"from": "14152000001", "id": "wamid.L1", "timestamp": str(ts), "type": "location"},
    ]
    contacts = [{"profile": {"name": "Ana"}, "wa_id": "14152000001", "user_id": "US.1349"}]
    body = messages_body(messages, sender.phone_number_id, contacts)
    _deliver(client, body)
    _deliver(client, body)  # a redelivery stores nothing new
    stored = {m.wamid: m for m in InboundMessage.objects.all()}
    assert len(stored) == 5
    assert stored["wamid.T1"].text == "Hello there"
    assert stored["wamid.B1"].text == "Tell me more"
    assert stored["wamid.I1"].text == "Two"
    assert stored["wamid.M1"].payload["message"]["image"]["id"] == "1037543291543636"
    assert stored["wamid.L1"].type == "location"
    assert stored["wamid.T1"].user_phone == "+14152000001"
    assert stored["wamid.T1"].user_name == "Ana"
    assert stored["wamid.T1"].payload["user_id"] == "US.1349"


def test_a_message_without_from_is_stored_under_the_users_bsuid(client):
    sender = SenderFactory()
    message = {
        "id": "wamid.U1",
        "timestamp": str(_now_ts()),
        "type": "text",
        "text": {"body": "hi"},
    }
    contacts = [{"profile": {"name": "Neo"}, "user_id": "US.13491208655302741918"}]
    _deliver(client, messages_body([message], sender.phone_number_id, contacts))
    stored = InboundMessage.objects.get()
    assert stored.user_phone == "US.13491208655302741918"
    assert RawEvent.objects.get().error == ""


def test_a_reply_is_attributed_to_the_campaign_of_the_quoted_message(client):
    sender = SenderFactory()
    quoted = OutboundMessageFactory(
        campaign=CampaignFactory(sender=sender), status=S.DELIVERED, wamid="wamid.Q"
    )
    later = OutboundMessageFactory(
        campaign=CampaignFactory(sender=sender),
        contact=quoted.contact,
        status=S.DELIVERED,
        wamid="wamid.LATER",
        accepted_at=timezone.now(),
    )
    wa_id = quoted.phone.lstrip("+")
    message = text_message("wamid.R", wa_id, "yes", _now_ts(), context="wamid.Q")
    _deliver(client, messages_body([message], sender.phone_number_id))
    assert InboundMessage.objects.get().campaign_id == quoted.campaign_id != later.campaign_id


def test_a_reply_without_context_goes_to_the_latest_campaign_within_the_window(client, settings):
    settings.REPLY_ATTRIBUTION_WINDOW_HOURS = 72
    sender = SenderFactory()
    contact = ContactFactory()
    old = OutboundMessageFactory(
        campaign=CampaignFactory(sender=sender),
        contact=contact,
        status=S.READ,
        accepted_at=timezone.now() - timedelta(hours=80),
    )
    recent = OutboundMessageFactory(
        campaign=CampaignFactory(sender=sender),
        contact=contact,
        status=S.SENT,
        accepted_at=timezone.now() - timedelta(hours=2),
    )
    OutboundMessageFactory(
        campaign=CampaignFactory(sender=sender), contact=contact, status=S.QUEUED
    )  # never reached the user: not a candidate
    wa_id = contact.phone.lstrip("+")
    _deliver(
        client, messages_body([text_message("w1", wa_id, "hi", _now_ts())], sender.phone_number_id)
    )
    assert InboundMessage.objects.get().campaign_id == recent.campaign_id != old.campaign_id


def test_a_reply_outside_the_window_is_not_attributed(client, settings):
    settings.REPLY_ATTRIBUTION_WINDOW_HOURS = 1
    sender = SenderFactory()
    row = OutboundMessageFactory(
        campaign=CampaignFactory(sender=sender),
        status=S.READ,
        accepted_at=timezone.now() - timedelta(hours=3),
    )
    wa_id = row.phone.lstrip("+")
    _deliver(
        client, messages_body([text_message("w1", wa_id, "hi", _now_ts())], sender.phone_number_id)
    )
    assert InboundMessage.objects.get().campaign_id is None


def test_a_different_wa_id_is_mapped_to_the_contacts_e164(client):
    sender = SenderFactory()
    contact = ContactFactory(phone="+5511987654321", wa_id="551187654321")
    _deliver(
        client,
        messages_body(
            [text_message("w1", "551187654321", "oi", _now_ts())], sender.phone_number_id
        ),
    )
    assert InboundMessage.objects.get().user_phone == contact.phone


def test_messages_for_an_unknown_number_are_skipped_and_logged(client, caplog):
    _deliver(client, messages_body([text_message("w1", "1415", "hi", _now_ts())], "999"))
    assert not InboundMessage.objects.exists()
    assert "unknown phone-number-id 999" in caplog.text
