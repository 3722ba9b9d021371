"""A template Meta pauses and then REINSTATES can be chosen and sent again, by every path that
picks or checks a template (the wizard, the API, staff replies, test sends), because all of
them go by the one rule (campaigns.models.SENDABLE_TEMPLATE_STATUSES); the webhooks are the
simulator's own payloads, delivered to our endpoint."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from campaigns.forms import CampaignUploadForm, check_templates
from campaigns.models import Campaign, CampaignTemplate, MessageTemplate
from messaging.integrations.keys import create_api_key
from messaging.integrations.models import ApiKey
from messaging.test_send import send_test
from tests import factories
from tests.integrations.conftest import Api
from tests.webhooks.payloads import envelope, post
from webhooks.drain import drain
from webhooks.staff_reply import reply_templates

pytestmark = pytest.mark.django_db

STAFF_PHONE = "+447911123456"  # not +1: Meta sends no marketing to US numbers


@pytest.fixture
def sim(fresh_simulator, settings, redis_client):
    settings.WHATSAPP_API_BASE_URL = fresh_simulator.base_url
    settings.WHATSAPP_ACCESS_TOKEN = fresh_simulator.token
    # The simulator refuses a send of a template it does not list as APPROVED (132001), and
    # posts its webhooks nowhere: the test delivers each one itself, once.
    fresh_simulator.configure(strict_templates=True, webhook_url="http://127.0.0.1:9/")
    return fresh_simulator


def _meta_says(client, sim, template: MessageTemplate, status: str) -> None:
    event = sim.template_event(name=template.name, language=template.language, status=status)
    body = envelope(event["field"], event["value"], waba=sim.waba_id)
    assert post(client, body).status_code == 200
    drain()
    template.refresh_from_db()


def _offered(template: MessageTemplate, sender) -> dict[str, bool]:
    choices = CampaignUploadForm().fields["template_1"].queryset
    return {
        "sendable": template.is_sendable,
        "wizard": choices.filter(pk=template.pk).exists(),
        "confirm": not check_templates(sender=sender, templates=[template]),
        "reply": template in reply_templates(sender),
    }


@pytest.fixture
def api(db) -> Api:
    return Api(create_api_key(name="crm", scopes=list(ApiKey.Scope.values)).secret)


def _campaign_through_the_api(api: Api, sender, template) -> tuple[int, str]:
    body = {
        "name": "After the pause",
        "sender": sender.phone_number_id,
        "templates": [{"name": template.name, "language": template.language}],
        "recipients": [{"phone": "+447911123457", "variables": {"1": "Ana", "2": "20%"}}],
    }
    response = api.post("/campaigns", body)
    return response.status_code, response.json().get("error", {}).get("message", "")


def test_a_reinstated_template_is_offered_accepted_and_sent_again(sim, api, client, capsys):
    call_command("sync_templates", "--waba-id", sim.waba_id)
    template = MessageTemplate.objects.get(name="spring_promo", language="en_US")
    sender = factories.SenderFactory(account=template.account, test_numbers=STAFF_PHONE)
    campaign = factories.CampaignFactory(sender=sender, status=Campaign.Status.RUNNING)
    CampaignTemplate.objects.create(campaign=campaign, template=template)
    components = [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}] * 2}]

    _meta_says(client, sim, template, "PAUSED")
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.PAUSED
    assert _offered(template, sender) == dict.fromkeys(
        ["sendable", "wizard", "confirm", "reply"], False
    )
    status, message = _campaign_through_the_api(api, sender, template)
    assert status == 400 and "is PAUSED, only APPROVED or REINSTATED" in message
    with pytest.raises(ValueError, match="is PAUSED, only APPROVED or REINSTATED"):
        send_test(sender=sender, template=template, components=components, to=[STAFF_PHONE])

    _meta_says(client, sim, template, "REINSTATED")
    assert template.status == "REINSTATED"
    assert MessageTemplate.objects.sendable().filter(pk=template.pk).exists()
    assert _offered(template, sender) == dict.fromkeys(
        ["sendable", "wizard", "confirm", "reply"], True
    )
    assert _campaign_through_the_api(api, sender, template) == (201, "")
    (test,) = send_test(sender=sender, template=template, components=components, to=[STAFF_PHONE])
    assert test.wamid and not test.error  # the simulator lists it APPROVED again
    # A reinstatement pauses nothing; the campaign it paused waits for staff.
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.PAUSED

    # The Graph API lists it APPROVED: stored, but no change to report or act on.
    capsys.readouterr()
    call_command("sync_templates", "--waba-id", sim.waba_id)
    assert "status changed" not in capsys.readouterr().out
    template.refresh_from_db()
    assert template.status == "APPROVED" and template.is_sendable
