"""Templates synced from the Graph API (the simulator's template list, with paging); a status
change the sync finds does what the status webhook does; the cluster syncs every hour."""

from __future__ import annotations

import socket

import pytest
from django.core.management import CommandError, call_command
from django_q.models import Schedule

from campaigns.models import Campaign, CampaignTemplate, MessageTemplate
from messaging import templates as template_sync
from messaging.simulator.templates import DEMO_TEMPLATES
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(fresh_simulator, settings):
    settings.WHATSAPP_API_BASE_URL = fresh_simulator.base_url
    settings.WHATSAPP_ACCESS_TOKEN = fresh_simulator.token
    return fresh_simulator


def test_every_page_of_templates_is_synced_and_marked_synced(api, capsys):
    call_command("sync_templates", "--waba-id", api.waba_id)

    synced = MessageTemplate.objects.filter(account__waba_id=api.waba_id)
    served = {(t["name"], t["language"]) for t in DEMO_TEMPLATES}
    assert set(synced.values_list("name", "language")) == served
    assert not synced.filter(synced_at__isnull=True).exists()
    paused = synced.get(name="winter_sale", language="en_US")
    assert paused.status == "PAUSED" and not paused.is_sendable
    assert "created" in capsys.readouterr().out

    call_command("sync_templates", "--waba-id", api.waba_id)  # idempotent
    assert MessageTemplate.objects.filter(account__waba_id=api.waba_id).count() == synced.count()


def test_fetch_follows_every_page(api):
    from messaging.graph_api import fetch_templates

    templates = fetch_templates(waba_id=api.waba_id, page_size=2)

    assert len(templates) == len(DEMO_TEMPLATES) > 2
    assert [t["id"] for t in templates] == [t["id"] for t in DEMO_TEMPLATES]


def test_an_unreachable_api_is_a_clear_error(settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.WHATSAPP_API_BASE_URL = f"http://127.0.0.1:{port}"

    with pytest.raises(CommandError, match="could not fetch templates of WABA 42"):
        call_command("sync_templates", "--waba-id", "42")
    assert MessageTemplate.objects.count() == 0


def test_a_pause_whose_webhook_never_came_is_caught_by_the_sync(api, capsys):
    # Meta's webhook goes nowhere (a port nothing listens on): only the sync can notice.
    api.configure(webhook_url="http://127.0.0.1:9/webhooks/whatsapp/")
    call_command("sync_templates", "--waba-id", api.waba_id)
    approved = next(t for t in DEMO_TEMPLATES if t["status"] == "APPROVED")
    template = MessageTemplate.objects.get(name=approved["name"], language=approved["language"])
    sender = factories.SenderFactory(account=template.account)
    campaign = factories.CampaignFactory(sender=sender, status=Campaign.Status.RUNNING)
    CampaignTemplate.objects.create(campaign=campaign, template=template)
    other = factories.CampaignFactory(sender=sender, status=Campaign.Status.RUNNING)
    CampaignTemplate.objects.create(
        campaign=other, template=MessageTemplate.objects.exclude(pk=template.pk).first()
    )

    api.template_event(name=template.name, language=template.language, status="PAUSED")
    assert template_sync.sync_all_templates() == "1 of 1 account(s) synced"

    template.refresh_from_db()
    campaign.refresh_from_db()
    assert template.status == "PAUSED"
    assert campaign.status == Campaign.Status.PAUSED
    assert campaign.pause_reason == f"Template {template} is PAUSED"
    assert Campaign.objects.get(pk=other.pk).status == Campaign.Status.RUNNING

    # Staff resume while it lasts: the next sync finds no change and pauses nothing again.
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.RUNNING)
    capsys.readouterr()
    call_command("sync_templates", "--waba-id", api.waba_id)
    assert "status changed" not in capsys.readouterr().out
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.RUNNING

    # Approved again on Meta's side: the sync says so and the template can be chosen again.
    api.template_event(name=template.name, language=template.language, status="APPROVED")
    call_command("sync_templates", "--waba-id", api.waba_id)
    assert f"{template.name}:{template.language} PAUSED -> APPROVED" in capsys.readouterr().out
    template.refresh_from_db()
    assert template.is_sendable


def test_the_cluster_syncs_templates_every_hour_within_its_time(api, monkeypatch, settings):
    schedule = Schedule.objects.get(func="messaging.templates.sync_all_templates")
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == ("I", 60, -1)
    # An hourly schedule is too rare to tell whether the cluster is alive (the alert's
    # horizon is a few minutes).
    assert schedule.minutes > settings.ALERT_CLUSTER_MINUTES
    factories.AccountFactory(waba_id=api.waba_id)

    # Out of time before the first account: nothing is fetched, and the run says what is left.
    monkeypatch.setattr(template_sync, "SCHEDULED_SYNC_SECONDS", -1.0)
    requests_before = api.stats()["requests"]
    assert template_sync.sync_all_templates() == "0 of 0 account(s) synced, 1 left for the next run"
    assert api.stats()["requests"] == requests_before
    assert not MessageTemplate.objects.exists()
