"""The canary and the circuit breaker, end to end: the real sender against the simulator,
webhooks through the live server and the drain, verdicts with an injected clock."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from messaging import services
from messaging.integrations.alerts.conditions import self_paused_campaigns
from messaging.models import OutboundMessage
from messaging.models import OutboundStatus as S
from messaging.policy import breaker, canary
from messaging.policy.actions import Effects
from messaging.policy.breaker import Sample
from messaging.selectors import waiting_reasons
from tests import factories
from tests.policy.helpers import campaign_to, phones, run_until
from webhooks.drain import try_drain_exclusively

pytestmark = pytest.mark.django_db(transaction=True)

SENT = (S.ACCEPTED, S.SENT, S.DELIVERED, S.READ)


@pytest.fixture
def number(sim, settings):
    settings.POLICY_MARKETING_CAP = ""
    return factories.SenderFactory(rate_mps=200)


@pytest.fixture
def template(number):
    return factories.TemplateFactory(account=number.account, category="UTILITY")


def rows(campaign, *statuses):
    return OutboundMessage.objects.filter(campaign=campaign, status__in=statuses)


def held(campaign):
    return OutboundMessage.objects.filter(
        campaign=campaign, status=S.QUEUED, next_attempt_at=canary.HOLD
    )


def status_of(campaign):
    return lambda: Campaign.objects.get(pk=campaign.pk).status


def sends_seen(sim) -> int:
    stats = sim.stats()
    return stats["accepted"] + sum(stats["errors"].values())


def assert_alert_fires(campaign):
    keys = {f.key for f in self_paused_campaigns(timezone.now())}
    assert f"campaign_paused:{campaign.pk}" in keys


def test_a_canary_is_spread_paced_and_holds_the_rest(number, template):
    campaign = campaign_to(
        number,
        template,
        phones("+35191234", 200),
        status="draft",
        canary_percent=2,
        canary_rate=4,
    )
    services.start_campaign(campaign_id=campaign.pk)
    campaign.refresh_from_db()
    assert (campaign.canary_state, campaign.canary_size) == ("running", 4)
    ids = list(OutboundMessage.objects.filter(campaign=campaign).order_by("id"))
    chosen = [m for m in ids if m.next_attempt_at != canary.HOLD]
    # Every 50th row, the first included: spread over the whole list.
    assert [ids.index(m) for m in chosen] == [0, 50, 100, 150]
    # At 4 msg/s: 0.25 s apart.
    gaps = {
        (b.next_attempt_at - a.next_attempt_at).total_seconds()
        for a, b in itertools.pairwise(chosen)
    }
    assert gaps == {0.25}
    assert held(campaign).count() == 196
    assert set(held(campaign).values_list("error_category", flat=True)) == {canary.WAIT_CANARY}
    reasons = {r.key: r for r in waiting_reasons(campaign)}
    assert reasons["wait:canary"].count == 196
    assert reasons["wait:canary"].until is None
    assert "4 canary messages" in reasons["wait:canary"].reason


def test_a_failing_canary_pauses_with_the_figure_and_the_rest_is_never_sent(number, template, sim):
    sim.configure(error_rates={"131026": 0.5})
    campaign = campaign_to(
        number,
        template,
        phones("+35191234", 200),
        status="draft",
        canary_percent=10,
        max_failure_rate=0.1,
    )
    services.start_campaign(campaign_id=campaign.pk)
    run_until(number, lambda: status_of(campaign)() == Campaign.Status.PAUSED)
    campaign.refresh_from_db()
    assert campaign.canary_state == "failed"
    assert re.fullmatch(
        r"Canary: \d+\.\d % of \d+ canary messages failed \(\d+; 131026 ×\d+\), above 10\.0 %",
        campaign.pause_reason,
    ), campaign.pause_reason
    assert campaign.canary_report["verdict"] == campaign.pause_reason
    assert sends_seen(sim) <= 20
    assert held(campaign).count() == 180
    assert rows(campaign, *SENT, S.FAILED).count() <= 20
    assert_alert_fires(campaign)
    # Staff resume: their decision; the rest goes.
    services.resume_campaign(campaign_id=campaign.pk)
    sim.configure(error_rates={})
    run_until(number, lambda: not held(campaign).exists() and sends_seen(sim) >= 200)
    campaign.refresh_from_db()
    assert campaign.canary_state == "passed"


def test_a_healthy_canary_releases_the_rest_once_its_wait_is_over(number, template, sim, settings):
    settings.POLICY_CANARY_WAIT_SECONDS = 600
    campaign = campaign_to(
        number,
        template,
        phones("+35191234", 100),
        status="draft",
        canary_percent=5,
        canary_rate=20,
    )
    services.start_campaign(campaign_id=campaign.pk)
    run_until(number, lambda: rows(campaign, *SENT).count() == 5)
    # No webhook comes (the live server is not wired): the canary waits for its time.
    assert canary.check(campaign.pk) is None
    assert held(campaign).count() == 95
    assert sim.stats()["accepted"] == 5
    later = timezone.now() + timedelta(seconds=601)
    assert canary.check(campaign.pk, now=later) == "passed"
    assert not held(campaign).exists()
    run_until(number, lambda: rows(campaign, *SENT).count() == 100, moment=later)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING or campaign.status == "completed"
    assert campaign.canary_report["verdict"].startswith("canary passed: 5 sent, 0.0 % failed")
    assert sim.stats()["recipients"]["exactly_once"] == 100


def test_a_canary_passes_when_its_statuses_are_in(number, template, sim, live_server, settings):
    settings.WHATSAPP_APP_SECRET = sim.app_secret
    settings.POLICY_CANARY_WAIT_SECONDS = 3600  # the statuses, not the time, end the wait
    sim.configure(
        webhook_url=f"{live_server.url}/webhooks/whatsapp/",
        webhook_delay_ms=20,
        delivered_rate=1.0,
    )
    campaign = campaign_to(
        number, template, phones("+35191234", 100), status="draft", canary_percent=10
    )
    services.start_campaign(campaign_id=campaign.pk)

    def rest_sent():
        try_drain_exclusively(max_seconds=1)
        return rows(campaign, *SENT).count() == 100

    run_until(number, rest_sent, timeout=90)
    campaign.refresh_from_db()
    assert campaign.canary_state == "passed"
    assert "statuses in" in campaign.canary_report["verdict"]


def test_opt_outs_in_the_canary_pause_it(number, template, sim, live_server, settings):
    settings.WHATSAPP_APP_SECRET = sim.app_secret
    # Only a failure can end this canary: it never passes meanwhile.
    settings.POLICY_CANARY_STATUS_SHARE = 1.01
    settings.POLICY_CANARY_WAIT_SECONDS = 3600
    sim.configure(
        webhook_url=f"{live_server.url}/webhooks/whatsapp/",
        webhook_delay_ms=20,
        delivered_rate=1.0,
        read_rate=1.0,
        opt_out_rate=0.5,
    )
    campaign = campaign_to(
        number,
        template,
        phones("+35191234", 200),
        status="draft",
        canary_percent=10,
        max_opt_out_rate=0.05,
    )
    services.start_campaign(campaign_id=campaign.pk)

    def paused():
        try_drain_exclusively(max_seconds=1)
        canary.check(campaign.pk)
        return status_of(campaign)() == Campaign.Status.PAUSED

    run_until(number, paused, timeout=90)
    campaign.refresh_from_db()
    assert re.fullmatch(
        r"Canary: \d+\.\d % of 20 canary messages opted out \(\d+\), above 5\.0 %",
        campaign.pause_reason,
    ), campaign.pause_reason
    assert held(campaign).count() == 180
    assert sim.stats()["accepted"] == 20


@pytest.fixture
def small_window(settings):
    settings.POLICY_BREAKER_WINDOW = 100
    settings.POLICY_BREAKER_MIN_SAMPLE = 50


BREAKER = (
    r"Circuit breaker: \d+\.\d % of the last \d+ outcomes failed for recipient reasons "
    r"\(\d+\), above 20\.0 %; top codes (131026|131049) ×\d+, (131026|131049) ×\d+"
)


def test_the_breaker_pauses_a_running_campaign_on_send_answers(number, template, sim, small_window):
    sim.configure(error_rates={"131026": 0.3, "131049": 0.2, "131000": 0.1})
    campaign = campaign_to(number, template, phones("+35191234", 2000))
    run_until(number, lambda: status_of(campaign)() == Campaign.Status.PAUSED)
    campaign.refresh_from_db()
    assert re.fullmatch(BREAKER, campaign.pause_reason), campaign.pause_reason
    # 131000 (Meta's unknown error) is not the audience's: it never shows.
    assert "131000" not in campaign.pause_reason
    assert rows(campaign, S.QUEUED).exists()  # the rest waits for staff
    assert_alert_fires(campaign)
    # Resumed, the campaign starts a fresh window.
    services.resume_campaign(campaign_id=campaign.pk)
    assert breaker.current(campaign.pk).total == 0


def test_the_breaker_pauses_a_running_campaign_on_failed_status_webhooks(
    number, template, sim, live_server, settings, small_window
):
    settings.WHATSAPP_APP_SECRET = sim.app_secret
    sim.configure(
        webhook_url=f"{live_server.url}/webhooks/whatsapp/",
        webhook_delay_ms=20,
        webhook_error_rates={131026: 0.3, 131049: 0.2},
    )
    campaign = campaign_to(number, template, phones("+35191234", 2000))

    def paused():
        try_drain_exclusively(max_seconds=1)
        return status_of(campaign)() == Campaign.Status.PAUSED

    run_until(number, paused, timeout=90)
    campaign.refresh_from_db()
    assert re.fullmatch(BREAKER, campaign.pause_reason), campaign.pause_reason
    assert sim.stats()["errors"] == {}  # every send answer was an acceptance
    assert rows(campaign, S.QUEUED).exists()
    assert_alert_fires(campaign)


def test_the_window_counts_each_message_once_and_only_recipient_codes(small_window, db):
    campaign = factories.CampaignFactory(status=Campaign.Status.RUNNING)
    effects = Effects()
    # 60 accepted, then webhooks fail 20 of them; transient and payload codes are not counted.
    breaker.observe([Sample(campaign.pk)] * 60, effects)
    breaker.observe([Sample(campaign.pk, 131026, replaces_success=True)] * 20, effects)
    breaker.observe([Sample(campaign.pk, 131000), Sample(campaign.pk, 131008)], effects)
    window = breaker.current(campaign.pk)
    assert (window.total, window.failed, window.by_code) == (60, 20, {131026: 20})
    assert campaign.pk in effects.pause_campaigns  # 33 % > 20 %
    # The window keeps the last 100.
    breaker.observe([Sample(campaign.pk)] * 100, Effects())
    assert breaker.current(campaign.pk).failed == 0
    # A per-campaign threshold.
    other = factories.CampaignFactory(status=Campaign.Status.RUNNING, max_failure_rate=0.5)
    effects = Effects()
    breaker.observe([Sample(other.pk)] * 40 + [Sample(other.pk, 131050)] * 20, effects)
    assert not effects.pause_campaigns


def test_the_breaker_reads_a_campaign_again_only_once_its_state_version_moves(
    small_window, redis_client, django_assert_num_queries
):
    from messaging import state_version

    campaign = factories.CampaignFactory(status=Campaign.Status.RUNNING, max_failure_rate=0.5)
    effects = Effects()
    breaker.observe([Sample(campaign.pk)] * 40 + [Sample(campaign.pk, 131050)] * 20, effects)
    assert not effects.pause_campaigns  # 33 % < 50 %
    with django_assert_num_queries(0):  # the flusher's next batch: nothing changed
        breaker.observe([Sample(campaign.pk, 131050)], effects)
    # Staff pause it: its outcomes no longer pause it (it is not running).
    services.pause_campaign(campaign_id=campaign.pk)
    breaker.observe([Sample(campaign.pk, 131050)] * 10, effects)
    assert not effects.pause_campaigns
    # Running again with a stricter threshold, by a path that bumps the version (every path
    # that changes a campaign's status, canary or thresholds does): judged by the new one.
    Campaign.objects.filter(pk=campaign.pk).update(
        status=Campaign.Status.RUNNING, max_failure_rate=0.2
    )
    state_version.bump_on_commit()
    breaker.observe([Sample(campaign.pk, 131050)], effects)
    assert campaign.pk in effects.pause_campaigns


def test_without_redis_the_breaker_reads_the_campaign_every_batch(
    small_window, settings, django_assert_num_queries
):
    settings.REDIS_URL = ""
    campaign = factories.CampaignFactory(status=Campaign.Status.RUNNING, max_failure_rate=0.5)
    breaker.observe([Sample(campaign.pk)] * 40, Effects())
    Campaign.objects.filter(pk=campaign.pk).update(max_failure_rate=0.2)  # no version to bump
    effects = Effects()
    with django_assert_num_queries(1):
        breaker.observe([Sample(campaign.pk, 131050)] * 20, effects)
    assert campaign.pk in effects.pause_campaigns


def test_create_campaign_takes_the_canary_and_thresholds(number, template, tmp_path):
    from django.core.management import call_command

    path = tmp_path / "people.csv"
    path.write_text("phone,var1,var2\n" + "".join(f"{p},x,y\n" for p in phones("+35191234", 100)))
    call_command(
        "create_campaign",
        "--name",
        "careful",
        "--csv",
        str(path),
        "--sender",
        number.phone_number_id,
        "--template",
        f"{template.name}:{template.language}",
        "--canary",
        "2%",
        "--canary-rate",
        "1",
        "--max-failure-rate",
        "10%",
        "--max-opt-out-rate",
        "0.01",
        "--start",
        "now",
    )
    campaign = Campaign.objects.get(name="careful")
    assert (campaign.canary_percent, campaign.canary_rate) == (2.0, 1.0)
    assert (campaign.max_failure_rate, campaign.max_opt_out_rate) == (0.1, 0.01)
    assert (campaign.canary_state, campaign.canary_size) == ("running", 2)
    assert held(campaign).count() == 98


def test_the_plan_of_a_running_canary_assumes_it_passes(number, template):
    from messaging.policy.plan import plan_campaign

    campaign = campaign_to(
        number, template, phones("+35191234", 100), status="draft", canary_percent=10
    )
    services.start_campaign(campaign_id=campaign.pk)
    campaign.refresh_from_db()
    plan = plan_campaign(campaign)
    assert (plan.audience, plan.to_send, plan.beyond_horizon) == (100, 100, 0)
    assert plan.eta is not None and plan.eta < timezone.now() + timedelta(days=1)
    assert "canary of 10 row(s)" in plan.canary
    assert {w.key: w.count for w in plan.waiting}["wait:canary"] == 90
