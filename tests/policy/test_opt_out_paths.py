"""Every way a number opts out suppresses it and cancels its queued messages everywhere."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.utils import timezone

from campaigns.models import Campaign, Contact, Suppression
from messaging.models import OutboundMessage
from messaging.models import OutboundStatus as S
from messaging.services import duplicate_campaign, requeue_failed
from tests import factories
from tests.webhooks.conftest import SECRET
from tests.webhooks.payloads import (
    envelope,
    messages_body,
    post,
    status,
    statuses_body,
    text_message,
)
from webhooks.drain import drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    """One person with a queued row in two running campaigns, a retry row and a sent row."""
    contact = factories.ContactFactory()
    sender = factories.SenderFactory()
    rows = {
        name: factories.OutboundMessageFactory(
            contact=contact,
            sender=sender,
            campaign=factories.CampaignFactory(sender=sender, status=Campaign.Status.RUNNING),
            status=state,
        )
        for name, state in (
            ("queued", S.QUEUED),
            ("retry", S.RETRY),
            ("other_queued", S.QUEUED),
            ("delivered", S.DELIVERED),
        )
    }
    return contact, sender, rows


def _webhook(client, settings, body):
    settings.WHATSAPP_APP_SECRET = SECRET
    settings.WEBHOOK_KICK_SECONDS = 0
    settings.AUTO_REPLY_ENABLED = False
    assert post(client, json.dumps(body).encode()).status_code == 200
    drain()


def by_contact_admin(admin_client, contact, sender, rows, **_):
    admin_client.post(
        "/admin/campaigns/contact/",
        {"action": "opt_out", "_selected_action": [contact.pk]},
    )


def by_suppression_admin(admin_client, contact, **_):
    response = admin_client.post(
        "/admin/campaigns/suppression/add/",
        {"phone": contact.phone, "source": "staff", "reason": "asked by phone"},
    )
    assert response.status_code == 302, response.content[:2000]


def by_command(contact, **_):
    call_command("suppress", contact.phone, "--reason", "asked by e-mail")


def by_keyword(client, settings, contact, sender, **_):
    message = text_message(
        "wamid.STOP", contact.phone.lstrip("+"), "STOP", int(timezone.now().timestamp())
    )
    _webhook(client, settings, messages_body([message], sender.phone_number_id))


def by_user_preferences(client, settings, contact, sender, **_):
    wa_id = contact.phone.lstrip("+")
    body = envelope(
        "user_preferences",
        {
            "messaging_product": "whatsapp",
            "metadata": {"phone_number_id": sender.phone_number_id},
            "contacts": [{"wa_id": wa_id}],
            "user_preferences": [
                {
                    "wa_id": wa_id,
                    "detail": "stop",
                    "category": "marketing_messages",
                    "value": "stop",
                    "timestamp": 1750031000,
                }
            ],
        },
    )
    _webhook(client, settings, body)


def by_stopped_marketing_answer(client, settings, contact, rows, **_):
    sent = rows["delivered"]
    OutboundMessage.objects.filter(pk=sent.pk).update(status=S.ACCEPTED, wamid="wamid.X1")
    body = statuses_body([status("wamid.X1", "failed", code=131050)])
    _webhook(client, settings, body)
    rows["delivered"].refresh_from_db()
    assert rows["delivered"].status == S.FAILED
    rows.pop("delivered")


@pytest.mark.parametrize(
    "path",
    [
        by_contact_admin,
        by_suppression_admin,
        by_command,
        by_keyword,
        by_user_preferences,
        by_stopped_marketing_answer,
    ],
    ids=lambda f: f.__name__,
)
def test_every_opt_out_path_suppresses_and_cancels_queued_messages(
    path, world, admin_client, client, settings
):
    contact, sender, rows = world
    path(
        admin_client=admin_client,
        client=client,
        settings=settings,
        contact=contact,
        sender=sender,
        rows=rows,
    )
    assert Suppression.objects.filter(phone=contact.phone).exists()
    assert Contact.objects.get(pk=contact.pk).opted_out_at is not None
    states = {name: OutboundMessage.objects.get(pk=row.pk).status for name, row in rows.items()}
    expected = {"queued": S.CANCELLED, "retry": S.CANCELLED, "other_queued": S.CANCELLED}
    if "delivered" in rows:
        expected["delivered"] = S.DELIVERED  # what went before the opt-out stays as it was
    assert states == expected


def test_the_suppress_command_lifts_with_remove_and_refuses_bad_numbers(world, capsys):
    contact, _sender, _rows = world
    call_command("suppress", contact.phone)
    call_command("suppress", contact.phone, "--remove")
    assert not Suppression.objects.filter(phone=contact.phone).exists()
    assert Contact.objects.get(pk=contact.pk).opted_out_at is None
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="'12ab'"):
        call_command("suppress", "12ab")


def test_duplicate_leaves_out_numbers_that_opted_out_since():
    campaign = factories.CampaignFactory()
    rows = factories.OutboundMessageFactory.create_batch(
        5, campaign=campaign, sender=campaign.sender, status=S.DELIVERED
    )
    factories.SuppressionFactory(phone=rows[0].phone)
    copy = duplicate_campaign(campaign_id=campaign.pk)
    phones = set(OutboundMessage.objects.filter(campaign=copy).values_list("phone", flat=True))
    assert phones == {r.phone for r in rows[1:]}
    assert (copy.total, copy.suppressed_count) == (4, 1)


def test_requeue_never_requeues_a_number_that_opted_out():
    campaign = factories.CampaignFactory(status=Campaign.Status.COMPLETED, failed=2)
    stopped, transient = factories.OutboundMessageFactory.create_batch(
        2, campaign=campaign, sender=campaign.sender, status=S.FAILED
    )
    factories.SuppressionFactory(phone=stopped.phone, source="api_error", reason="131050")
    assert requeue_failed(campaign_id=campaign.pk) == 1
    stopped.refresh_from_db()
    transient.refresh_from_db()
    assert (stopped.status, transient.status) == (S.FAILED, S.RETRY)
    campaign.refresh_from_db()
    assert campaign.failed == 1


def test_the_requeue_confirmation_warns_about_opted_out_numbers(admin_client):
    campaign = factories.CampaignFactory(status=Campaign.Status.COMPLETED)
    rows = factories.OutboundMessageFactory.create_batch(
        3, campaign=campaign, sender=campaign.sender, status=S.FAILED
    )
    factories.SuppressionFactory(phone=rows[0].phone)
    response = admin_client.post(
        "/admin/messaging/outboundmessage/",
        {"action": "requeue_selected", "_selected_action": [r.pk for r in rows]},
    )
    assert b"1 of them are to numbers that have opted out" in response.content
