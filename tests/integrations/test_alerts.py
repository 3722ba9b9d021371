"""Alerts: each condition fires once (mail + chat webhook), shows in admin, and resolves."""

from __future__ import annotations

import json
import socket
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from django_q.models import Schedule

from campaigns.models import Campaign, Portfolio, SenderNumber, TierSource, WhatsAppAccount
from messaging import services
from messaging.evidence import HELD_FOR_EVIDENCE
from messaging.integrations.alerts.service import evaluate
from messaging.integrations.models import Alert
from messaging.models import OutboundMessage, OutboundStatus, PacingState
from messaging.numbers import NumberReport, record_number_state, set_portfolio_tier
from tests import factories
from tests.integrations.receiver import Receiver
from webhooks.models import RawEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(settings):
    receiver = Receiver()
    settings.ALERT_CHAT_WEBHOOK_URL = receiver.url
    settings.ALERT_EMAILS = ["ops@example.com"]
    yield receiver
    receiver.close()


@pytest.fixture(autouse=True)
def _cluster_alive():
    """The cluster ran its schedules just now (each test breaks one thing at a time)."""
    # Far ahead, so tests that move the clock forward do not see a dead cluster.
    Schedule.objects.update(next_run=timezone.now() + timedelta(days=1))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def break_token(account, **_):
    WhatsAppAccount.objects.filter(pk=account.pk).update(auth_failed_at=timezone.now())
    return lambda: WhatsAppAccount.objects.filter(pk=account.pk).update(auth_failed_at=None)


def self_pause(account, **_):
    campaign = factories.CampaignFactory(sender=factories.SenderFactory(account=account))
    services.start_campaign(campaign_id=campaign.pk)
    services.pause_campaigns(campaigns=[campaign.pk], reason="WhatsApp error 131048 (spam)")
    return lambda: services.resume_campaign(campaign_id=campaign.pk)


def red_number(account, **_):
    number = factories.SenderFactory(account=account, quality_rating="RED")
    return lambda: SenderNumber.objects.filter(pk=number.pk).update(quality_rating="GREEN")


def restricted_number(account, **_):
    number = factories.SenderFactory(account=account)
    report = NumberReport(status="RESTRICTED")
    record_number_state(sender_id=number.pk, report=report, source=TierSource.GRAPH)
    return lambda: SenderNumber.objects.filter(pk=number.pk).update(status="CONNECTED")


def webhook_backlog(account, settings, **_):
    settings.ALERT_WEBHOOK_BACKLOG = 2
    RawEvent.objects.bulk_create(RawEvent(body=b"{}") for _ in range(3))
    return lambda: RawEvent.objects.update(applied_at=timezone.now())


def webhook_silence(account, **_):
    campaign = factories.CampaignFactory(status=Campaign.Status.RUNNING)
    factories.OutboundMessageFactory(
        campaign=campaign,
        status=OutboundStatus.ACCEPTED,
        wamid="wamid.S1",
        accepted_at=timezone.now() - timedelta(minutes=30),
    )
    return lambda: Campaign.objects.filter(pk=campaign.pk).update(status="completed")


def webhooks_missing(account, **_):
    """In-doubt rows the evidence policy holds: no statuses came for the number's messages."""
    campaign = factories.CampaignFactory(status=Campaign.Status.RUNNING)
    row = factories.OutboundMessageFactory(
        campaign=campaign,
        status=OutboundStatus.UNKNOWN,
        claimed_at=timezone.now() - timedelta(minutes=20),
        error_category=HELD_FOR_EVIDENCE,
    )
    return lambda: OutboundMessage.objects.filter(pk=row.pk).update(
        status=OutboundStatus.RETRY, error_category=""
    )


def redis_down(account, settings, **_):
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    real = settings.CACHES

    def restore():
        settings.REDIS_URL = real["default"].get("LOCATION", "")

    return restore


def pacing_on_postgres(account, **_):
    number = factories.SenderFactory(account=account)
    PacingState.objects.create(sender=number, mode=PacingState.Mode.POSTGRES)
    return lambda: PacingState.objects.filter(sender=number).update(mode="redis")


def cluster_down(account, **_):
    Schedule.objects.update(next_run=timezone.now() - timedelta(hours=1))
    return lambda: Schedule.objects.update(next_run=timezone.now() + timedelta(minutes=1))


@pytest.mark.parametrize(
    ("condition", "make"),
    [
        ("token_failed", break_token),
        ("campaign_paused", self_pause),
        ("number_quality", red_number),
        ("number_quality", restricted_number),
        ("webhook_backlog", webhook_backlog),
        ("webhook_silent", webhook_silence),
        ("webhooks_missing", webhooks_missing),
        ("redis_down", redis_down),
        ("pacing_degraded", pacing_on_postgres),
        ("cluster_down", cluster_down),
    ],
)
def test_each_alert_fires_once_shows_in_admin_and_resolves(
    condition, make, chat, account, settings, admin_client, django_capture_on_commit_callbacks
):
    assert not [a for a in Alert.objects.all()]
    clear = make(account, settings=settings)
    with django_capture_on_commit_callbacks(execute=True):
        assert evaluate()["raised"] == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert evaluate() == {"raised": 0, "reminded": 0, "resolved": 0}  # once per interval
    assert Alert.objects.get(active=True).condition == condition
    assert len(mail.outbox) == 1 and mail.outbox[0].subject.startswith("[wacampaigns] ALERT")
    assert mail.outbox[0].to == ["ops@example.com"]
    assert json.loads(chat.requests[0]["body"])["text"].startswith("ALERT")
    page = admin_client.get("/admin/")
    assert b'id="alert-banner"' in page.content
    health = admin_client.get("/health/").json()
    assert health["alerts"][condition] == {"firing": 1}

    clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert evaluate()["resolved"] == 1
    assert mail.outbox[-1].subject.startswith("[wacampaigns] RESOLVED")
    assert len(chat.requests) == 2
    assert b'id="alert-banner"' not in admin_client.get("/admin/").content


def test_a_staff_pause_is_no_alert(account, chat, django_capture_on_commit_callbacks):
    campaign = factories.CampaignFactory()
    services.start_campaign(campaign_id=campaign.pk)
    services.pause_campaign(campaign_id=campaign.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert evaluate()["raised"] == 0


def test_a_lasting_alert_is_repeated_after_the_interval(
    account, chat, settings, django_capture_on_commit_callbacks
):
    break_token(account)
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        evaluate(now)
        evaluate(now + timedelta(minutes=settings.ALERT_REPEAT_MINUTES - 1))
        assert evaluate(now + timedelta(minutes=settings.ALERT_REPEAT_MINUTES))["reminded"] == 1
    assert [m.subject.split()[1] for m in mail.outbox] == ["ALERT:", "STILL:"]


def test_a_running_campaign_without_progress_is_stalled(
    account, chat, settings, django_capture_on_commit_callbacks
):
    campaign = factories.CampaignFactory(status=Campaign.Status.RUNNING)
    factories.OutboundMessageFactory(campaign=campaign)  # queued and due
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        assert evaluate(now)["raised"] == 0  # first look: progress noted
        later = now + timedelta(minutes=settings.ALERT_STALLED_MINUTES + 1)
        assert evaluate(later)["raised"] == 1
        Campaign.objects.filter(pk=campaign.pk).update(sent=1)
        assert evaluate(later + timedelta(minutes=1))["resolved"] == 1


def test_a_tier_drop_is_told_once_and_leaves_the_banner_quietly(
    account, chat, settings, admin_client, django_capture_on_commit_callbacks
):
    portfolio = Portfolio.objects.create(business_id="9", name="Acme", tier_source="graph")
    Portfolio.objects.filter(pk=portfolio.pk).update(messaging_tier="TIER_10K")
    WhatsAppAccount.objects.filter(pk=account.pk).update(portfolio=portfolio)
    number = factories.SenderFactory(account=account)
    now = timezone.now()
    for _ in range(2):  # the webhook and then sync_numbers report the same drop
        record_number_state(
            sender_id=number.pk,
            report=NumberReport(tier="TIER_2K", event="DOWNGRADE"),
            source=TierSource.WEBHOOK,
            now=now,
        )
    with django_capture_on_commit_callbacks(execute=True):
        assert evaluate(now)["raised"] == 1
        for minutes in (1, settings.ALERT_REPEAT_MINUTES, 3 * settings.ALERT_REPEAT_MINUTES):
            assert evaluate(now + timedelta(minutes=minutes)) == {
                "raised": 0,
                "reminded": 0,
                "resolved": 0,
            }
    assert [m.subject for m in mail.outbox] == [
        "[wacampaigns] ALERT: Portfolio Acme: messaging limit went down, TIER_10K → TIER_2K "
        "(from Meta webhook, DOWNGRADE)"
    ]
    assert len(chat.requests) == 1
    assert "went down" in admin_client.get("/admin/").content.decode()
    health = admin_client.get("/health/").json()
    assert health["alerts"]["messaging_limit_changed"] == {"firing": 1}

    after = now + timedelta(hours=settings.ALERT_LIMIT_CHANGE_HOURS, minutes=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert evaluate(after)["resolved"] == 1
    assert len(mail.outbox) == 1 and len(chat.requests) == 1  # no "resolved" for an event
    assert b'id="alert-banner"' not in admin_client.get("/admin/").content


def test_each_change_is_its_own_alert_up_and_down(
    account, chat, django_capture_on_commit_callbacks
):
    portfolio = Portfolio.objects.create(business_id="10", name="Beta", tier_source="staff")
    factories.SenderFactory(account=account)
    WhatsAppAccount.objects.filter(pk=account.pk).update(portfolio=portfolio)
    set_portfolio_tier(portfolio_id=portfolio.pk, tier="TIER_2K", source=TierSource.STAFF)
    with django_capture_on_commit_callbacks(execute=True):
        evaluate()
    set_portfolio_tier(portfolio_id=portfolio.pk, tier="TIER_250", source=TierSource.GRAPH)
    with django_capture_on_commit_callbacks(execute=True):
        assert evaluate()["raised"] == 1
    assert ["went up" in m.subject for m in mail.outbox] == [True, False]
    assert "went down" in mail.outbox[1].subject


def test_a_quality_that_worsens_while_alerting_is_told(
    account, chat, django_capture_on_commit_callbacks
):
    number = factories.SenderFactory(account=account)
    for quality in ("YELLOW", "RED"):
        record_number_state(
            sender_id=number.pk, report=NumberReport(quality=quality), source=TierSource.WEBHOOK
        )
        with django_capture_on_commit_callbacks(execute=True):
            assert evaluate()["raised"] == 1
    assert "quality YELLOW" in mail.outbox[0].subject  # number_quality raised
    assert "quality rating went down, YELLOW → RED" in mail.outbox[1].subject
