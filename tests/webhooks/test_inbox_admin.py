from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from messaging.models import OutboundMessage, to_numbers
from messaging.models import OutboundStatus as S
from tests.factories import CampaignFactory, ContactFactory, OutboundMessageFactory, SenderFactory
from webhooks.inbox import thread
from webhooks.models import InboundMessage, RawEvent, StatusLog

pytestmark = pytest.mark.django_db


def _conversation(n):
    sender = SenderFactory()
    contact = ContactFactory()
    campaign = CampaignFactory(sender=sender)
    start = timezone.now() - timedelta(hours=1)
    for i in range(n):
        OutboundMessageFactory(
            campaign=CampaignFactory(sender=sender) if i else campaign,
            contact=contact,
            status=S.READ,
            accepted_at=start + timedelta(minutes=2 * i),
        )
        InboundMessage.objects.create(
            sender=sender,
            user_phone=contact.phone,
            wamid=f"in.{contact.pk}.{i}",
            type="text",
            text=f"reply {i}",
            timestamp=start + timedelta(minutes=2 * i + 1),
        )
    return sender, contact


def _thread_url(sender, contact):
    return f"/admin/webhooks/inboundmessage/inbox/{sender.pk}/{contact.phone}/"


def test_a_thread_interleaves_outbound_and_inbound_by_time():
    sender, contact = _conversation(3)
    items = thread(sender_id=sender.pk, user_phone=contact.phone)
    assert [i.direction for i in items] == ["out", "in"] * 3
    assert [i.text for i in items if i.direction == "in"] == ["reply 0", "reply 1", "reply 2"]
    assert all(i.status == "read" for i in items if i.direction == "out")


@pytest.mark.parametrize("n", [2, 20])
def test_opening_a_conversation_costs_the_same_queries_for_2_or_20_messages(
    admin_client, django_assert_num_queries, n
):
    sender, contact = _conversation(n)
    admin_client.get(_thread_url(sender, contact))  # warm the session and content types
    # session, user, sender; the person (contact, latest message, suppression); then one query
    # per source: inbound, outbound (+campaign, template), auto-replies, staff replies
    with django_assert_num_queries(10):
        response = admin_client.get(_thread_url(sender, contact))
    assert response.status_code == 200
    assert response.content.decode().count("<td>reply ") == n


def test_the_thread_queries_use_the_compound_indexes():
    sender, contact = _conversation(2)
    # Other people's messages, and the statistics of them: on a table of two rows any plan
    # costs the same, and the planner's pick says nothing about the indexes.
    others = ContactFactory._meta.model.objects.bulk_create(
        ContactFactory.build(phone=f"+1415300{n:04d}") for n in range(3000)
    )
    campaign = CampaignFactory(sender=sender)
    OutboundMessage.objects.bulk_create(
        OutboundMessageFactory.build(campaign=campaign, contact=other, template=None)
        for other in others
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE campaigns_contact, messaging_outboundmessage")
        cursor.execute("SET LOCAL enable_seqscan = off")
    inbound = InboundMessage.objects.filter(sender_id=sender.pk, user_phone=contact.phone)
    outbound = OutboundMessage.objects.filter(to_numbers([contact.phone]), sender_id=sender.pk)
    assert "inbound_conversation" in inbound.order_by("-timestamp")[:100].explain()
    assert "outbound_contact" in outbound.order_by("-id")[:100].explain()


def test_the_inbox_lists_conversations_newest_first(admin_client):
    _old_sender, old_contact = _conversation(1)
    _new_sender, new_contact = _conversation(2)
    InboundMessage.objects.filter(user_phone=old_contact.phone).update(
        timestamp=timezone.now() - timedelta(days=3)
    )
    response = admin_client.get("/admin/webhooks/inboundmessage/inbox/")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.index(new_contact.phone) < html.index(old_contact.phone)


def test_event_admins_are_read_only_and_list_cheaply(admin_client):
    RawEvent.objects.create(body=b'{"object": "x"}')
    StatusLog.objects.create(wamid="w", status="sent", timestamp=timezone.now())
    for url in (
        "/admin/webhooks/rawevent/",
        "/admin/webhooks/statuslog/",
        "/admin/webhooks/inboundmessage/",
    ):
        assert admin_client.get(url).status_code == 200
    assert admin_client.get("/admin/webhooks/rawevent/add/").status_code == 403
    assert admin_client.get("/admin/webhooks/statuslog/add/").status_code == 403
    html = admin_client.get("/admin/webhooks/rawevent/").content.decode()
    assert ">15<" in html  # the body's size, not the body
