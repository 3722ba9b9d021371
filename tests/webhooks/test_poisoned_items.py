"""One poisoned item never costs the rest of a signed body: every valid item is applied and the
poisoned one is kept, with its reason, for staff."""

import json

import pytest
from django.db import connection
from django.utils import timezone

from messaging.models import OutboundStatus as S
from tests.factories import CampaignFactory, SenderFactory
from tests.webhooks.payloads import accepted_rows, messages_body, post, status, text_message
from webhooks.drain import drain
from webhooks.models import InboundMessage, RawEvent, RejectedWebhookItem, StatusLog

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sql_path")]


def _body(sender, rows):
    ts = int(timezone.now().timestamp())
    body = messages_body(
        [
            text_message("wamid.in.good", "14152000001", "hello", ts),
            text_message("wamid.in.nul", "14152000001", "bad\x00text", ts),
            text_message("wamid.in.surrogate", "14152000001", "bad \ud800 text", ts),
            {"from": "14152000001", "timestamp": str(ts), "type": "text"},  # no id
        ],
        sender.phone_number_id,
    )
    value = body["entry"][0]["changes"][0]["value"]
    value["statuses"] = [
        status(rows[0].wamid, "delivered", ts=ts),
        status(rows[1].wamid, "failed", ts=ts, code=2**31),  # beyond the integer column
        {
            **status(rows[2].wamid, "failed", ts=ts, code=131026),
            "errors": [{"code": 131026, "title": "x\x00"}],
        },
        status(rows[3].wamid, "read", ts=ts),
    ]
    # json.dumps escapes NUL as \u0000 and a lone surrogate as \ud800: valid JSON, signed.
    return json.dumps(body).encode()


def test_a_body_with_poisoned_items_applies_every_valid_item_and_keeps_the_rest(client):
    sender = SenderFactory()
    campaign = CampaignFactory(sender=sender)
    rows = accepted_rows(campaign, 4)
    assert post(client, _body(sender, rows)).status_code == 200
    drain()

    statuses = {r.pk: r.status for r in campaign.messages.all()}
    assert statuses[rows[0].pk] == S.DELIVERED
    assert statuses[rows[3].pk] == S.READ
    assert statuses[rows[1].pk] == statuses[rows[2].pk] == S.ACCEPTED  # not applied
    assert set(InboundMessage.objects.values_list("wamid", flat=True)) == {"wamid.in.good"}
    assert StatusLog.objects.count() == 2

    raw = RawEvent.objects.get()
    assert raw.applied_at is not None
    assert "5 item(s) not applied" in raw.error
    rejected = {r.where: r for r in RejectedWebhookItem.objects.filter(raw_event=raw)}
    where = "entry[0].changes[0].value"
    assert {k: r.reason for k, r in rejected.items()} == {
        f"{where}.messages[1]": "contains a NUL character",
        f"{where}.messages[2]": "contains invalid Unicode (a lone surrogate)",
        f"{where}.messages[3]": "a message needs an 'id'",
        f"{where}.statuses[1]": f"error code {2**31} is beyond a 32-bit integer",
        f"{where}.statuses[2]": "contains a NUL character",
    }
    # The item is readable as escaped JSON although PostgreSQL refuses it raw.
    assert json.loads(rejected[f"{where}.messages[1]"].item)["text"]["body"] == "bad\x00text"


def test_an_item_the_database_refuses_is_kept_and_the_others_applied(client):
    """A failure no parser check foresaw (here a real CHECK constraint) isolates the item."""
    sender = SenderFactory()
    campaign = CampaignFactory(sender=sender)
    rows = accepted_rows(campaign, 1)
    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER TABLE {InboundMessage._meta.db_table} "
            "ADD CONSTRAINT test_refuses_poison CHECK (text <> 'poison')"
        )
    ts = int(timezone.now().timestamp())
    body = messages_body(
        [
            text_message("wamid.ok.1", "14152000001", "fine", ts),
            text_message("wamid.bad", "14152000001", "poison", ts),
            text_message("wamid.ok.2", "14152000001", "also fine", ts),
        ],
        sender.phone_number_id,
    )
    body["entry"][0]["changes"][0]["value"]["statuses"] = [status(rows[0].wamid, "read", ts=ts)]
    assert post(client, body).status_code == 200
    drain()

    assert set(InboundMessage.objects.values_list("wamid", flat=True)) == {
        "wamid.ok.1",
        "wamid.ok.2",
    }
    rows[0].refresh_from_db()
    assert rows[0].status == S.READ
    rejected = RejectedWebhookItem.objects.get()
    assert rejected.where == "message wamid.bad"
    assert "test_refuses_poison" in rejected.reason
    assert RawEvent.objects.get().applied_at is not None


def test_staff_see_rejected_items_in_admin(admin_client, client):
    sender = SenderFactory()
    rows = accepted_rows(CampaignFactory(sender=sender), 4)
    post(client, _body(sender, rows))
    drain()
    response = admin_client.get("/admin/webhooks/rejectedwebhookitem/")
    assert response.status_code == 200
    assert "contains a NUL character" in response.content.decode()


def test_a_send_answer_with_an_error_code_beyond_32_bits_has_no_code():
    """The same limit on the send path: the queue row's error_code column could not hold it."""
    from messaging.graph_api import parse_send_response

    body = json.dumps({"error": {"code": 2**40, "message": "odd"}}).encode()
    assert parse_send_response(400, body).error_code is None
    body = json.dumps({"error": {"code": 131026, "message": "undeliverable"}}).encode()
    assert parse_send_response(400, body).error_code == 131026
