import json

import pytest
from django.utils import timezone

from campaigns.models import Contact, Suppression
from messaging.models import OutboundStatus as S
from tests.factories import (
    ContactFactory,
    OutboundMessageFactory,
    SenderFactory,
    SuppressionFactory,
)
from tests.webhooks.payloads import envelope, messages_body, post, text_message
from webhooks.drain import drain

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sql_path")]


def _deliver(client, body):
    assert post(client, json.dumps(body).encode()).status_code == 200
    drain()


def _queued(contact):
    return OutboundMessageFactory(contact=contact, status=S.QUEUED)


@pytest.mark.parametrize("text", ["STOP", "  stop ", "Parar", "stop   promotions", "BAJA"])
def test_opt_out_keywords_suppress_and_cancel_queued_messages(client, text):
    sender = SenderFactory()
    contact = ContactFactory()
    queued, retry = _queued(contact), OutboundMessageFactory(contact=contact, status=S.RETRY)
    sent = OutboundMessageFactory(contact=contact, status=S.DELIVERED)
    ts = int(timezone.now().timestamp())
    message = text_message("wamid.S", contact.phone.lstrip("+"), text, ts)
    _deliver(client, messages_body([message], sender.phone_number_id))
    assert Suppression.objects.get(phone=contact.phone).source == "keyword"
    statuses = {m.pk: m.status for m in type(queued).objects.all()}
    assert statuses == {queued.pk: S.CANCELLED, retry.pk: S.CANCELLED, sent.pk: S.DELIVERED}


@pytest.mark.parametrize("text", ["please stop sending", "stopp", "STOP!"])
def test_a_keyword_inside_a_longer_message_is_not_an_opt_out(client, text):
    sender = SenderFactory()
    contact = ContactFactory()
    queued = _queued(contact)
    ts = int(timezone.now().timestamp())
    _deliver(
        client,
        messages_body(
            [text_message("w", contact.phone.lstrip("+"), text, ts)], sender.phone_number_id
        ),
    )
    assert not Suppression.objects.exists()
    queued.refresh_from_db()
    assert queued.status == S.QUEUED


def test_the_opt_out_button_payload_suppresses(client):
    sender = SenderFactory()
    contact = ContactFactory()
    queued = _queued(contact)
    message = {
        "from": contact.phone.lstrip("+"),
        "id": "wamid.BTN",
        "timestamp": str(int(timezone.now().timestamp())),
        "type": "button",
        "context": {"from": "15550783881", "id": "wamid.AAA"},
        "button": {"payload": "OPTOUT|camp:812", "text": "Parar promoções"},
    }
    _deliver(client, messages_body([message], sender.phone_number_id))
    assert Suppression.objects.filter(phone=contact.phone).exists()
    queued.refresh_from_db()
    assert queued.status == S.CANCELLED


def test_an_opt_out_from_a_different_wa_id_suppresses_both_forms(client):
    sender = SenderFactory()
    contact = ContactFactory(phone="+5511987654321", wa_id="551187654321")
    queued = _queued(contact)
    ts = int(timezone.now().timestamp())
    _deliver(
        client,
        messages_body([text_message("w", "551187654321", "SAIR", ts)], sender.phone_number_id),
    )
    assert set(Suppression.objects.values_list("phone", flat=True)) == {
        "+5511987654321",
        "+551187654321",
    }
    queued.refresh_from_db()
    assert queued.status == S.CANCELLED


def _preferences(sender, wa_id, value):
    return envelope(
        "user_preferences",
        {
            "messaging_product": "whatsapp",
            "metadata": {"phone_number_id": sender.phone_number_id},
            "contacts": [{"wa_id": wa_id}],
            "user_preferences": [
                {
                    "wa_id": wa_id,
                    "detail": "User requested to stop marketing messages",
                    "category": "marketing_messages",
                    "value": value,
                    "timestamp": 1750031000,
                }
            ],
        },
    )


def test_user_preferences_stop_suppresses_and_cancels_and_resume_lifts_it(client):
    sender = SenderFactory()
    contact = ContactFactory()
    queued = _queued(contact)
    wa_id = contact.phone.lstrip("+")
    _deliver(client, _preferences(sender, wa_id, "stop"))
    assert Suppression.objects.get(phone=contact.phone).source == "user_preferences"
    queued.refresh_from_db()
    assert queued.status == S.CANCELLED
    _deliver(client, _preferences(sender, wa_id, "resume"))
    assert not Suppression.objects.filter(phone=contact.phone).exists()
    assert Contact.objects.get(pk=contact.pk).opted_out_at is None


def test_resume_never_lifts_a_suppression_from_another_source(client):
    sender = SenderFactory()
    SuppressionFactory(phone="+14152000099", source="staff")
    _deliver(client, _preferences(sender, "14152000099", "resume"))
    assert Suppression.objects.filter(phone="+14152000099").exists()
