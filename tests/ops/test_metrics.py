import re

import pytest

from campaigns.models import Campaign
from messaging.models import OutboundStatus
from tests import factories

pytestmark = pytest.mark.django_db


def _samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_show_campaigns_queue_counters_and_pending_raw_events(admin_client):
    from webhooks.models import RawEvent

    running = factories.CampaignFactory(
        status=Campaign.Status.RUNNING, total=3, sent=2, delivered=1, read=1, failed=1
    )
    factories.CampaignFactory(status=Campaign.Status.DRAFT, total=5)
    factories.OutboundMessageFactory(campaign=running, status=OutboundStatus.QUEUED)
    factories.OutboundMessageFactory(campaign=running, status=OutboundStatus.READ)
    factories.OutboundMessageFactory(campaign=running, status=OutboundStatus.FAILED)
    RawEvent.objects.create(body=b"{}")
    RawEvent.objects.create(body=b"{}", applied_at="2025-01-01T00:00:00Z")

    response = admin_client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = _samples(response.content.decode())
    assert samples['wac_campaigns{status="running"}'] == 1
    assert samples['wac_campaigns{status="draft"}'] == 1
    assert samples['wac_campaigns{status="completed"}'] == 0
    assert samples['wac_queue_messages{status="queued"}'] == 1
    assert samples['wac_queue_messages{status="sending"}'] == 0
    # Final rows are reported by the counters, not by counting the queue.
    assert 'wac_queue_messages{status="read"}' not in samples
    assert samples['wac_campaign_messages{counter="total"}'] == 8
    assert samples['wac_campaign_messages{counter="sent"}'] == 2
    assert samples['wac_campaign_messages{counter="failed"}'] == 1
    assert samples["wac_webhook_raw_events_pending"] == 1


def test_metrics_count_unfinished_rows_of_every_campaign_but_completed_ones(admin_client):
    paused = factories.CampaignFactory(status=Campaign.Status.PAUSED)
    cancelled = factories.CampaignFactory(status=Campaign.Status.CANCELLED)
    completed = factories.CampaignFactory(status=Campaign.Status.COMPLETED)
    factories.OutboundMessageFactory.create_batch(2, campaign=paused, status=OutboundStatus.RETRY)
    factories.OutboundMessageFactory(campaign=paused, status=OutboundStatus.HELD)
    factories.OutboundMessageFactory(campaign=cancelled, status=OutboundStatus.UNKNOWN)
    factories.OutboundMessageFactory(campaign=completed, status=OutboundStatus.SENT)

    samples = _samples(admin_client.get("/metrics").content.decode())

    assert samples['wac_queue_messages{status="retry"}'] == 2
    assert samples['wac_queue_messages{status="held"}'] == 1
    assert samples['wac_queue_messages{status="unknown"}'] == 1
    assert samples['wac_queue_messages{status="queued"}'] == 0


def test_metrics_lines_are_valid_prometheus_text(admin_client):
    factories.CampaignFactory()
    text = admin_client.get("/metrics").content.decode()
    sample = re.compile(r'^[a-z_]+(\{[a-z_]+="[A-Za-z0-9_.]+"\})? \d+(\.\d+)?$')
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line


def test_metrics_do_not_show_campaign_names(admin_client):
    factories.CampaignFactory(name="Secret launch of product X")
    assert b"Secret launch" not in admin_client.get("/metrics").content


def test_metrics_query_count_does_not_grow_with_data(admin_client, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    factories.CampaignFactory()
    with CaptureQueriesContext(connection) as first:
        admin_client.get("/metrics")
    # The session and user, the campaign/queue/raw-event queries, the integrations gauges
    # (the send rates among them).
    assert len(first) <= 13
    for status in (Campaign.Status.RUNNING, Campaign.Status.PAUSED, Campaign.Status.COMPLETED):
        campaign = factories.CampaignFactory(status=status)
        for queue_status in (OutboundStatus.QUEUED, OutboundStatus.SENT, OutboundStatus.FAILED):
            factories.OutboundMessageFactory(campaign=campaign, status=queue_status)
    with django_assert_num_queries(len(first)):
        admin_client.get("/metrics")


def test_metrics_and_memory_refuse_anonymous_access(client, settings):
    settings.METRICS_TOKEN = "scrape-me"
    for url in ("/metrics", "/health/memory/"):
        assert client.get(url).status_code == 403
        assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert client.get(url, headers={"Authorization": "Bearer scrape-me"}).status_code == 200


def test_metrics_show_the_engine_events_and_alert_gauges(admin_client):
    text = admin_client.get("/metrics").content.decode()
    for name in (
        "wac_sender_rate_learned",
        "wac_sender_in_flight",
        "wac_sender_send_rate",
        "wac_webhook_lag_seconds",
        "wac_outbound_events",
        "wac_alerts_active",
        "wac_failed_messages_by_code",
    ):
        assert f"# TYPE {name} gauge" in text


def test_metrics_show_the_budget_left_per_portfolio(admin_client, redis_client):
    from datetime import timedelta

    from django.utils import timezone

    from campaigns.models import Portfolio
    from messaging.policy import budget

    portfolio = Portfolio.objects.create(business_id="1", messaging_tier="TIER_2K")
    numbers = factories.SenderFactory.create_batch(
        2, account=factories.AccountFactory(portfolio=portfolio)
    )
    alone = factories.SenderFactory(messaging_tier="TIER_250")
    factories.SenderFactory(messaging_tier="TIER_UNLIMITED")
    # Three recipients from PostgreSQL (no Redis ledger yet): one an hour ago, one a day ago
    # (out of the window), one on the other number of the portfolio.
    now = timezone.now()
    for number, at in ((numbers[0], now - timedelta(hours=1)), (numbers[1], now)):
        campaign = factories.CampaignFactory(sender=number)
        factories.OutboundMessageFactory(
            campaign=campaign, status=OutboundStatus.SENT, accepted_at=at
        )
    factories.OutboundMessageFactory(
        campaign=factories.CampaignFactory(sender=numbers[0]),
        status=OutboundStatus.READ,
        accepted_at=now - timedelta(hours=25),
    )

    samples = _samples(admin_client.get("/metrics").content.decode())

    key = f'wac_portfolio_budget_left{{portfolio="{portfolio.pk}"}}'
    assert samples[key] == 1998
    assert samples[f'wac_portfolio_budget_limit{{portfolio="{portfolio.pk}"}}'] == 2000
    assert samples[f'wac_portfolio_budget_left{{portfolio="account_{alone.account_id}"}}'] == 250
    assert not [name for name in samples if "budget" in name and "unlimited" in name]
    assert len([name for name in samples if name.startswith("wac_portfolio_budget_left")]) == 2

    # Once the engine's ledger exists in Redis, the gauge reads it.
    ledger = budget.ledger_for(numbers[0].pk)
    budget.ledgers().admit(ledger, ["+351910000001"], now, judging=[])
    samples = _samples(admin_client.get("/metrics").content.decode())
    assert samples[key] == 1997


def test_metrics_show_each_numbers_send_rate_over_the_last_minute(admin_client):
    from datetime import UTC, datetime, timedelta

    from messaging import minutes
    from messaging.models import CampaignMinute

    busy, idle = factories.SenderFactory.create_batch(2)
    running = factories.CampaignFactory(sender=busy, status=Campaign.Status.RUNNING)
    stream = factories.CampaignFactory(
        sender=busy, status=Campaign.Status.RUNNING, kind=Campaign.Kind.TRANSACTIONAL
    )
    old = factories.CampaignFactory(sender=idle, status=Campaign.Status.COMPLETED)
    Campaign.objects.filter(pk=old.pk).update(updated_at=datetime(2025, 1, 1, tzinfo=UTC))
    now = datetime(2026, 3, 1, 12, 0, 15, tzinfo=UTC)  # a quarter into the minute
    current, previous = now.replace(second=0), now.replace(second=0) - timedelta(minutes=1)
    for campaign, minute, accepted in (
        (running, previous, 600),
        (running, current, 240),
        (stream, current, 60),
        (running, previous - timedelta(minutes=1), 5000),  # before the last 60 s
        (old, previous, 900),  # finished long ago: not read (it sent nothing since)
    ):
        CampaignMinute.objects.create(campaign=campaign, minute=minute, accepted=accepted)

    # 240 + 60 this minute, and the last three quarters of the 600 of the minute before.
    assert minutes.send_rates(now=now) == {busy.pk: pytest.approx((300 + 450) / 60)}

    samples = _samples(admin_client.get("/metrics").content.decode())
    assert samples[f'wac_sender_send_rate{{sender="{idle.pk}"}}'] == 0
    assert f'wac_sender_send_rate{{sender="{busy.pk}"}}' in samples
