"""Contact erasure: no trace of the number anywhere but the hashed suppression."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, Contact, ImportRejection, Suppression
from campaigns.suppression import phone_hash
from messaging.campaign_import import create_campaign_from_csv
from messaging.models import OutboundMessage, OutboundStatus
from messaging.services import start_campaign
from tests.factories import TemplateFactory
from tests.webhooks.conftest import SECRET
from webhooks.drain import drain, store_raw_event
from webhooks.models import InboundMessage, RawEvent, StatusLog

pytestmark = pytest.mark.django_db

PHONE, OTHER = "+14152000042", "+14152000043"
DIGITS = PHONE.lstrip("+")
NATIONAL = DIGITS[1:]  # what a spreadsheet cell would hold


def _statuses(pairs, phone_number_id):
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": phone_number_id},
                            "statuses": [
                                {
                                    "id": wamid,
                                    "status": "delivered",
                                    "timestamp": str(int(timezone.now().timestamp())),
                                    "recipient_id": recipient,
                                }
                                for wamid, recipient in pairs
                            ],
                        },
                    }
                ],
            }
        ],
    }


def _inbound(wa_id, text, phone_number_id, wamid):
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": phone_number_id},
                            "contacts": [{"profile": {"name": "Ann Smith"}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": wamid,
                                    "timestamp": str(int(timezone.now().timestamp())),
                                    "type": "text",
                                    "text": {"body": "my address is 1 Main St"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


@pytest.fixture
def history(settings, sender, write_csv):
    """A contact imported, sent to, delivered, who wrote back; one body still pending."""
    settings.WHATSAPP_APP_SECRET = SECRET
    settings.WEBHOOK_KICK_SECONDS = 0
    template = TemplateFactory(account=sender.account)
    csv = f"phone,name,code\n{PHONE},Ann,A1\n{OTHER},Bob,B2\n{NATIONAL}x,Bad,C3\n"
    result = create_campaign_from_csv(
        name="Spring", csv_file=write_csv(csv), sender=sender, templates=[(template, 1)]
    )
    campaign = result.campaign
    start_campaign(campaign_id=campaign.pk)
    now = timezone.now()
    for row in OutboundMessage.objects.filter(campaign=campaign):
        OutboundMessage.objects.filter(pk=row.pk).update(
            status=OutboundStatus.ACCEPTED, wamid=f"wamid.{row.pk}", accepted_at=now
        )
    Campaign.objects.filter(pk=campaign.pk).update(sent=2)
    rows = {r.phone: r for r in OutboundMessage.objects.filter(campaign=campaign)}
    pid = sender.phone_number_id
    pairs = [(rows[p].wamid, p.lstrip("+")) for p in (PHONE, OTHER)]
    store_raw_event(json.dumps(_statuses(pairs, pid)).encode())
    store_raw_event(json.dumps(_inbound(DIGITS, "hello", pid, "wamid.in1")).encode())
    drain()
    # A second message, stored but not applied yet when the erasure runs.
    store_raw_event(json.dumps(_inbound(DIGITS, "again", pid, "wamid.in2")).encode())
    # A contact with the same last digits elsewhere stays untouched.
    ImportRejection.objects.create(
        campaign=campaign, row_number=9, value="+44 20 7946 0958", reason="x"
    )
    return campaign


def _tables_mentioning(needle: str) -> dict[str, int]:
    """Every table of the database, every row as JSON text (bytea shows as hex there: the
    webhook bodies are read separately by _bodies_text)."""
    found = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        for (table,) in cursor.fetchall():
            cursor.execute(
                f'SELECT count(*) FROM "{table}" t WHERE position(%s in row_to_json(t)::text) > 0',
                [needle],
            )
            count = cursor.fetchone()[0]
            if count:
                found[table] = count
    return found


def _bodies_text() -> str:
    return " ".join(bytes(b).decode() for b in RawEvent.objects.values_list("body", flat=True))


def test_forget_contact_leaves_only_the_hashed_suppression(history, sender, write_csv):
    campaign = history
    before = Campaign.objects.values("total", "sent", "delivered", "failed").get(pk=campaign.pk)
    assert _tables_mentioning(NATIONAL)  # the number is everywhere before
    assert NATIONAL in _bodies_text()

    out = StringIO()
    call_command("forget_contact", "(415) 200-0042", stdout=out)
    assert f"{PHONE} erased" in out.getvalue()

    assert _tables_mentioning(NATIONAL) == {}
    assert NATIONAL not in _bodies_text() and "Ann" not in _bodies_text()
    entry = Suppression.objects.get()
    assert (entry.phone, entry.phone_hash, entry.source) == (None, phone_hash(PHONE), "erasure")
    # Counters still equal what happened; the other contact is untouched.
    after = Campaign.objects.values("total", "sent", "delivered", "failed").get(pk=campaign.pk)
    assert after == before
    assert OutboundMessage.objects.filter(campaign=campaign).count() == 2
    assert OutboundMessage.objects.filter(phone=OTHER).exclude(parameters=[]).exists()
    assert StatusLog.objects.filter(recipient_id=OTHER.lstrip("+")).count() == 1
    assert Contact.objects.filter(phone=OTHER, name="Bob").exists()
    assert ImportRejection.objects.filter(value="+44 20 7946 0958").exists()
    # The pending body still applies (without the number), and nobody is recreated.
    drain()
    assert not RawEvent.objects.filter(applied_at__isnull=True).exists()
    assert _tables_mentioning(NATIONAL) == {}
    assert InboundMessage.objects.filter(user_phone=PHONE).count() == 0

    # Imported again later: refused as suppressed.
    template = TemplateFactory(account=sender.account)
    again = create_campaign_from_csv(
        name="Autumn",
        csv_file=write_csv(f"phone,name,code\n{PHONE},Ann,A\n{OTHER},Bob,B\n"),
        sender=sender,
        templates=[(template, 1)],
    )
    assert (again.queued, again.suppressed) == (1, 1)
    assert _tables_mentioning(NATIONAL) == {}
    # Running it again finds nothing left to do and stays consistent.
    call_command("forget_contact", PHONE, stdout=StringIO())
    assert Suppression.objects.count() == 1


def test_forget_contact_refuses_what_is_not_a_number():
    with pytest.raises(CommandError, match="PHONE '12ab'"):
        call_command("forget_contact", "12ab")
    with pytest.raises(CommandError, match="--region"):
        call_command("forget_contact", PHONE, "--region", "XX")


def test_admin_action_erases_after_confirmation(admin_client, history):
    contact = Contact.objects.get(phone=PHONE)
    url = reverse("admin:campaigns_contact_changelist")
    form = {"action": "forget", "_selected_action": [contact.pk]}
    page = admin_client.post(url, form)
    assert page.status_code == 200 and b"cannot be undone" in page.content
    assert Contact.objects.filter(phone=PHONE).exists()
    admin_client.post(url, {**form, "post": "yes"})
    assert not Contact.objects.filter(phone=PHONE).exists()
    assert Suppression.objects.get(phone_hash=phone_hash(PHONE)).phone is None
