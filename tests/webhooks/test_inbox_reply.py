"""The inbox conversation: our messages with their text, who it is, the 24 h window, the
opt-out, and replies from staff (free text inside the window, a template outside), sent to the
real simulator."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from campaigns.models import Suppression
from messaging.models import OutboundStatus
from tests import factories
from webhooks.inbox import window_is_open
from webhooks.models import InboundMessage, StaffReply

pytestmark = pytest.mark.django_db


@pytest.fixture
def graph(fresh_simulator, settings):
    settings.WHATSAPP_API_BASE_URL = fresh_simulator.base_url
    settings.WHATSAPP_ACCESS_TOKEN = fresh_simulator.token
    return fresh_simulator


@pytest.fixture
def conversation(account):
    sender = factories.SenderFactory(account=account)
    contact = factories.ContactFactory(
        name="Goro Tanaka", attributes={"var1": "Goro", "var2": "15%"}
    )
    template = factories.TemplateFactory(
        account=account,
        name="spring_promo",
        components=[{"type": "BODY", "text": "Hi {{1}}, everything is {{2}} off this week!"}],
    )
    factories.OutboundMessageFactory(
        campaign=factories.CampaignFactory(sender=sender),
        contact=contact,
        template=template,
        status=OutboundStatus.READ,
        accepted_at=timezone.now() - timedelta(hours=2),
        parameters=[
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Goro"}, {"type": "text", "text": "15%"}],
            }
        ],
    )
    return sender, contact, template


def _wrote(sender, contact, hours_ago):
    InboundMessage.objects.create(
        sender=sender,
        user_phone=contact.phone,
        user_name="goro-profile",
        wamid=f"wamid.in.{hours_ago}",
        type="text",
        text="is it still on?",
        timestamp=timezone.now() - timedelta(hours=hours_ago),
    )


def _url(sender, contact):
    return f"/admin/webhooks/inboundmessage/inbox/{sender.pk}/{contact.phone}/"


def test_thread_shows_our_message_text_the_person_and_the_window(admin_client, conversation):
    sender, contact, _ = conversation
    _wrote(sender, contact, hours_ago=1)
    Suppression.objects.create(phone=contact.phone, source="keyword")
    page = admin_client.get(_url(sender, contact)).content.decode()
    assert "Hi Goro, everything is 15% off this week!" in page
    assert "Goro Tanaka" in page
    assert "window <strong>open</strong>" in page
    assert "<strong>Opted out</strong>" in page
    assert 'name="text"' in page  # free text inside the window


def test_free_text_reply_inside_the_window_goes_through_the_graph_api(
    admin_client, conversation, graph
):
    sender, contact, _ = conversation
    _wrote(sender, contact, hours_ago=1)
    response = admin_client.post(_url(sender, contact), {"text": "Yes, until Sunday."})
    assert response.status_code == 302
    reply = StaffReply.objects.get()
    assert reply.wamid and not reply.error
    assert reply.created_by.username == "admin"
    assert graph.stats()["accepted"] >= 1
    page = admin_client.get(_url(sender, contact)).content.decode()
    assert "Yes, until Sunday." in page and "by admin" in page


def test_outside_the_window_only_a_template_can_be_sent(admin_client, conversation, graph):
    sender, contact, template = conversation
    _wrote(sender, contact, hours_ago=30)
    assert not window_is_open(sender_id=sender.pk, user_phone=contact.phone)
    page = admin_client.get(_url(sender, contact)).content.decode()
    assert "window <strong>closed</strong>" in page and 'name="text"' not in page
    admin_client.post(_url(sender, contact), {"text": "free text"})
    assert not StaffReply.objects.exists()  # refused before anything was sent
    admin_client.post(_url(sender, contact), {"template": template.pk})
    reply = StaffReply.objects.get()
    assert reply.template == template and reply.wamid, reply.error
    assert reply.text == "Hi Goro, everything is 15% off this week!"


def test_replying_needs_the_change_permission(client, conversation):
    sender, contact, _ = conversation
    _wrote(sender, contact, hours_ago=1)
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_inboundmessage"))
    client.force_login(user)
    page = client.get(_url(sender, contact)).content.decode()
    assert 'name="text"' not in page
    assert client.post(_url(sender, contact), {"text": "hi"}).status_code == 403
    assert not StaffReply.objects.exists()
