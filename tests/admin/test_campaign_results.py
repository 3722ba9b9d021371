"""The started campaign's page: live JSON, waiting reasons, failures by code, per-template
comparison and the re-split action, chart, and what view-only staff see."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CampaignTemplate, Portfolio
from campaigns.results import insight, live
from messaging.models import OutboundMessage, OutboundStatus
from messaging.policy import canary
from messaging.policy.plan import plan_campaign
from tests import factories
from tests.policy.helpers import campaign_to, phones
from webhooks.models import InboundMessage

pytestmark = pytest.mark.django_db
S = OutboundStatus


@pytest.fixture(autouse=True)
def _no_plan_from_an_earlier_run():
    # The page's plan is kept in the cache (Redis) by campaign id, and a database made again
    # for a new run hands out the same ids.
    cache.clear()


def _url(name, campaign):
    return reverse(f"admin:campaigns_campaign_{name}", args=[campaign.pk])


@pytest.fixture
def running(sender, template):
    campaign = factories.CampaignFactory(
        sender=sender,
        status=Campaign.Status.RUNNING,
        started_at=timezone.now() - timezone.timedelta(minutes=3),
        total=10,
        sent=5,
        delivered=4,
        read=2,
        failed=1,
    )
    CampaignTemplate.objects.create(campaign=campaign, template=template)
    return campaign


def _rows(campaign, template, status, n=1, **fields):
    return factories.OutboundMessageFactory.create_batch(
        n, campaign=campaign, template=template, status=status, **fields
    )


def test_live_json_costs_a_constant_number_of_queries(admin_client, running, template):
    admin_client.get(_url("live", running))  # session, content types
    with CaptureQueriesContext(connection) as small:
        assert admin_client.get(_url("live", running)).status_code == 200
    now = timezone.now()
    for status in (S.QUEUED, S.RETRY, S.SENT, S.DELIVERED, S.READ, S.FAILED, S.HELD):
        _rows(running, template, status, 5, error_code=131049 if status == S.RETRY else None)
    InboundMessage.objects.create(
        sender=running.sender,
        user_phone="+14155550009",
        wamid="wamid.in.1",
        type="text",
        campaign=running,
        timestamp=now,
    )
    with CaptureQueriesContext(connection) as big:
        data = admin_client.get(_url("live", running)).json()
    assert len(big.captured_queries) == len(small.captured_queries) <= 10
    assert data["status"] == "running" and data["final"] is False
    funnel = {step["key"]: step["count"] for step in data["funnel"]}
    assert funnel["accepted"] == 5 and funnel["sent"] == 4 + 5 and funnel["replied"] == 1
    assert data["display"]["funnel.read.of_previous"] == "50.0%"
    texts = [w["text"] for w in data["waiting"]]
    assert any("5 waiting to retry after error 131049" in t for t in texts), texts
    assert any("5 held" in t for t in texts), texts


def test_retry_rows_keep_the_page_below_full_and_push_the_eta(admin_client, sender, template):
    campaign = factories.CampaignFactory(
        sender=sender,
        status=Campaign.Status.RUNNING,
        started_at=timezone.now(),
        total=10,
        sent=10,
        failed=7,
    )
    tomorrow = timezone.now() + timezone.timedelta(hours=24)
    _rows(campaign, template, S.RETRY, 7, error_code=131049, next_attempt_at=tomorrow)
    # The ETA is the plan's, which the page's plan block makes after the page is shown.
    assert admin_client.get(_url("live", campaign)).json()["display"]["eta"] == (
        "working out the plan…"
    )
    assert admin_client.get(_url("plan", campaign)).status_code == 200
    display = admin_client.get(_url("live", campaign)).json()["display"]
    assert display["progress"] == "3 of 10 finished (30%)"
    assert "about 1.0 days" in display["eta"] or "about 24.0 h" in display["eta"]


def test_current_rate_comes_from_counter_samples(running, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert live.current_rate(running, now=1000.0) is None
    running.sent = 55
    assert live.current_rate(running, now=1010.0) == pytest.approx(5.0)


def test_failures_by_code_explain_what_to_do(admin_client, running, template):
    _rows(running, template, S.FAILED, 3, error_code=131026, error_detail="Message undeliverable")
    _rows(running, template, S.FAILED, 1, error_code=132015, error_detail="Template paused")
    page = admin_client.get(_url("details", running)).content.decode()
    assert "131026" in page and "Not a WhatsApp user, or cannot receive" in page
    assert "Template paused" in page and "paused or disabled by Meta" in page
    groups = insight.failures_by_code(running)
    assert [(g.code, g.count) for g in groups] == [(131026, 3), (132015, 1)]


def test_two_proportion_test_in_words(running, account):
    other = factories.TemplateFactory(account=account, name="variant_b")
    CampaignTemplate.objects.create(campaign=running, template=other, position=1)
    now = timezone.now()
    first = running.template_links.get(position=0).template
    for template, reads in ((first, 300), (other, 150)):
        _rows(running, template, S.READ, reads, accepted_at=now, delivered_at=now, read_at=now)
        _rows(running, template, S.DELIVERED, 500 - reads, accepted_at=now, delivered_at=now)
    results = insight.by_template(running)
    comparison = insight.compare(results, "read rate")
    assert comparison.better.template == first
    assert "higher for" in comparison.sentence and "95% confidence" in comparison.sentence
    # Same rates: no difference claimed.
    assert insight.two_proportion_p(50, 100, 50, 100) == pytest.approx(1.0)
    assert insight.compare(results[:1]) is None


def test_resplit_moves_unsent_rows_and_records_who_decided(admin_client, running, account):
    first = running.template_links.get(position=0).template
    better = factories.TemplateFactory(
        account=account, name="better", components=[{"type": "BODY", "text": "Hey {{1}}!"}]
    )
    CampaignTemplate.objects.create(campaign=running, template=better, position=1)
    queued = []
    for n in range(4):
        contact = factories.ContactFactory(attributes={"city": f"Ana{n}"})
        queued += _rows(running, first, S.QUEUED, contact=contact)
    sent = _rows(running, first, S.DELIVERED)[0]

    response = admin_client.post(
        _url("promote", running), {"template": better.pk, "reason": "read rate higher"}
    )

    assert response.status_code == 302
    moved = OutboundMessage.objects.filter(pk__in=[r.pk for r in queued])
    assert {r.template_id for r in moved} == {better.pk}
    assert moved.get(pk=queued[0].pk).parameters == [
        {"type": "body", "parameters": [{"type": "text", "text": "Ana0"}]}
    ]
    sent.refresh_from_db()
    assert sent.template_id == first.pk
    entry = LogEntry.objects.get(object_id=str(running.pk))
    assert entry.user.username == "admin"
    assert "Sent the rest with better:en_US (4 queued messages moved): read rate higher" in (
        entry.get_change_message()
    )


def test_view_only_staff_see_no_actions_and_cannot_act(client, running, template):
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client.force_login(user)
    page = client.get(_url("change", running)).content.decode()
    assert reverse("admin:campaigns_campaign_transition", args=[running.pk, "pause"]) not in page
    assert "Cancel…" not in page
    assert client.get(_url("live", running)).status_code == 200
    assert client.post(_url("promote", running), {"template": template.pk}).status_code == 403


def test_chart_draws_each_series_per_minute(admin_client, running, template):
    at = running.started_at + timezone.timedelta(seconds=70)
    _rows(running, template, S.READ, 3, accepted_at=at, delivered_at=at, read_at=at)
    _rows(running, template, S.FAILED, 2, failed_at=at)
    # Rows written straight to the table: their minutes come from a recount.
    from messaging import minutes

    minutes.rebuild(running.pk)
    response = admin_client.get(_url("chart", running))
    assert response["Content-Type"] == "image/svg+xml"
    svg = response.content.decode()
    assert svg.count("<polyline") == 5
    from campaigns.results import chart

    data = chart.chart(running)
    assert data.bucket_seconds == 60
    assert chart.totals(data) == {
        "accepted": 3,
        "delivered": 3,
        "read": 3,
        "replies": 0,
        "failures": 2,
    }
    minute = int((at - running.started_at.replace(second=0, microsecond=0)).total_seconds() // 60)
    assert data.series["accepted"][minute] == 3


def test_retry_codes_come_from_the_soonest_rows_and_the_rest_is_one_line(
    running, template, monkeypatch
):
    from messaging import selectors

    monkeypatch.setattr(selectors, "RETRY_CODE_SAMPLE", 2)
    soon = timezone.now() + timezone.timedelta(minutes=1)
    _rows(running, template, S.RETRY, 2, error_code=131026, next_attempt_at=soon)
    later = timezone.now() + timezone.timedelta(hours=24)
    _rows(running, template, S.RETRY, 3, error_code=131049, next_attempt_at=later)
    reasons = selectors.waiting_reasons(running)
    assert [(r.key, r.count) for r in reasons] == [("retry:131026", 2), ("retry:later", 3)]


def test_the_live_eta_waits_for_the_portfolio_budget_in_waves(admin_client, account):
    """300 rows left on a TIER_250 portfolio: the ETA is a day away, in two waves, as the
    plan says (not 300 rows at the number's rate)."""
    account.portfolio = Portfolio.objects.create(business_id="bm-live", messaging_tier="TIER_250")
    account.save()
    sender = factories.SenderFactory(account=account, rate_mps=80)
    template = factories.TemplateFactory(account=account, category="UTILITY")
    campaign = campaign_to(sender, template, phones("+35191700", 300), status="running")
    Campaign.objects.filter(pk=campaign.pk).update(started_at=timezone.now())

    plan_page = admin_client.get(_url("plan", campaign)).content.decode()
    eta = admin_client.get(_url("live", campaign)).json()["display"]["eta"]

    assert "250 left now" in plan_page
    assert "about 24.0 h" in eta or "about 1.0 days" in eta, eta
    assert "2 waves, the next (50) from" in eta, eta
    assert "the messaging limit leaves 250 of 250 now, for 300 new recipients" in eta, eta


def test_the_canary_held_rows_show_its_verdict_time(admin_client, sender, template, settings):
    settings.POLICY_CANARY_WAIT_SECONDS = 900
    campaign = campaign_to(
        sender, template, phones("+35191800", 50), status="running", canary_percent=10
    )
    canary.begin(campaign, now=timezone.now())
    Campaign.objects.filter(pk=campaign.pk).update(started_at=timezone.now())
    before = admin_client.get(_url("live", campaign)).json()["waiting"]
    assert [(w["key"], w["until"]) for w in before] == [("wait:canary", None)]

    admin_client.get(_url("plan", campaign))
    waiting = admin_client.get(_url("live", campaign)).json()["waiting"]

    campaign.refresh_from_db()
    verdict_by = plan_campaign(campaign).canary_line.verdict_by
    (held,) = waiting
    assert held["key"] == "wait:canary" and held["count"] == 45
    assert abs(datetime.fromisoformat(held["until"]) - verdict_by) < timedelta(seconds=5)
    assert "its verdict by" in held["text"] and "at the latest" in held["text"], held
