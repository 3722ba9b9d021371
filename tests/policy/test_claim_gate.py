"""The send policy at claim time, end to end: the real sender against the simulator."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from time import monotonic

import pytest
from django.utils import timezone

from campaigns.models import Campaign, Portfolio
from messaging.models import OutboundMessage
from messaging.models import OutboundStatus as S
from messaging.policy.gate import WAIT_BUDGET, WAIT_CAP, WAIT_WINDOW
from messaging.selectors import waiting_reasons
from tests import factories
from tests.policy.helpers import campaign_to, phones, run_until

pytestmark = pytest.mark.django_db(transaction=True)

SENT = (S.ACCEPTED, S.SENT, S.DELIVERED, S.READ)


@pytest.fixture
def number(sim, settings):
    settings.POLICY_MARKETING_CAP = ""
    sender = factories.SenderFactory(rate_mps=200)
    return sender


@pytest.fixture
def marketing(number):
    return factories.TemplateFactory(account=number.account, category="MARKETING")


def noon_utc_ahead() -> datetime:
    """12:00 UTC two days from now: the policy clock runs ahead of the rows' real
    next_attempt_at (so they are due), whatever day the suite runs."""
    day = (timezone.now() + timedelta(days=2)).date()
    return datetime.combine(day, time(12), UTC)


def rows(campaign, *statuses):
    return OutboundMessage.objects.filter(campaign=campaign, status__in=statuses)


def test_an_expired_campaign_sends_nothing_more_and_completes(number, marketing, sim):
    campaign = campaign_to(
        number, marketing, phones("+35191234", 20), valid_until=timezone.now() - timedelta(1)
    )
    run_until(number, lambda: Campaign.objects.get(pk=campaign.pk).status == "completed")
    campaign.refresh_from_db()
    assert sim.stats()["accepted"] == 0
    assert rows(campaign, S.EXPIRED).count() == 20 == campaign.expired
    assert campaign.sent == 0


def test_a_window_closed_in_one_zone_sends_only_the_open_zone_and_resumes_it_later(
    number, marketing, sim
):
    lisbon, tokyo = phones("+35191234", 10), phones("+81901234", 10)
    campaign = campaign_to(
        number, marketing, lisbon + tokyo, window_start=time(9), window_end=time(20)
    )
    # 10:00 in Lisbon, 19:00 in Tokyo... then 21:00 in Tokyo: closed there until 09:00 JST.
    at = noon_utc_ahead()  # Lisbon 12:00 (13:00 in summer), Tokyo 21:00
    run_until(number, lambda: rows(campaign, *SENT).count() == 10, moment=at)
    sent = set(rows(campaign, *SENT).values_list("phone", flat=True))
    assert sent == set(lisbon)
    waiting = rows(campaign, S.QUEUED)
    assert set(waiting.values_list("phone", flat=True)) == set(tokyo)
    opens = at + timedelta(hours=12)  # 09:00 in Tokyo
    assert set(waiting.values_list("next_attempt_at", flat=True)) == {opens}
    assert set(waiting.values_list("error_category", flat=True)) == {WAIT_WINDOW}
    assert "Asia/Tokyo" in waiting.first().error_detail
    # The campaign page says why they wait.
    reasons = {r.key: r for r in waiting_reasons(campaign)}
    assert (reasons["wait:window"].count, reasons["wait:window"].until) == (10, opens)
    # The window opens in Tokyo: the rest go.
    run_until(number, lambda: rows(campaign, *SENT).count() == 20, moment=opens)
    assert sim.stats()["recipients"]["exactly_once"] == 20


def test_the_timezone_attribute_beats_the_number(number, marketing, sim):
    # A Portuguese number whose owner lives in Tokyo (attribute from the CSV).
    phone = "+351912340001"
    campaign = campaign_to(
        number,
        marketing,
        [phone],
        window_start=time(9),
        window_end=time(20),
        attributes={phone: {"timezone": "Asia/Tokyo"}},
    )
    at = noon_utc_ahead()
    run_until(
        number,
        lambda: rows(campaign, S.QUEUED).filter(error_category=WAIT_WINDOW).exists(),
        moment=at,
    )
    assert sim.stats()["accepted"] == 0


def test_the_frequency_cap_holds_across_two_overlapping_campaigns_and_two_workers(
    number, marketing, sim, settings
):
    settings.POLICY_MARKETING_CAP = "1/7d"
    people = phones("+35191234", 40)
    first = campaign_to(number, marketing, people)
    second = campaign_to(number, marketing, people)
    waiting = OutboundMessage.objects.filter(status=S.QUEUED, error_category=WAIT_CAP)
    run_until(
        number,
        lambda: (
            OutboundMessage.objects.filter(status__in=SENT).count() == 40 and waiting.count() == 40
        ),
        workers=2,
    )
    recipients = sim.stats(full=True)["accepted_by_to"]
    assert sorted(recipients.values()) == [1] * 40  # each person once, whichever campaign
    later = waiting.first().next_attempt_at
    assert later >= timezone.now() + timedelta(days=6, hours=23)
    assert rows(first, *SENT).count() + rows(second, *SENT).count() == 40


def test_utility_templates_are_exempt_from_the_cap(number, sim, settings):
    settings.POLICY_MARKETING_CAP = "1/7d"
    utility = factories.TemplateFactory(account=number.account, category="UTILITY")
    people = phones("+35191234", 10)
    first, second = campaign_to(number, utility, people), campaign_to(number, utility, people)
    run_until(number, lambda: OutboundMessage.objects.filter(status__in=SENT).count() == 20)
    assert rows(first, *SENT).count() == rows(second, *SENT).count() == 10


def test_a_portfolio_budget_sends_what_it_allows_and_the_rest_when_the_window_moves(
    number, marketing, sim
):
    portfolio = Portfolio.objects.create(business_id="9001", messaging_tier="TIER_250")
    number.account.portfolio = portfolio
    number.account.save()
    campaign = campaign_to(number, marketing, phones("+35191234", 300))
    now = timezone.now()
    waiting = rows(campaign, S.QUEUED).filter(error_category=WAIT_BUDGET)
    run_until(
        number,
        lambda: rows(campaign, *SENT).count() == 250 and waiting.count() == 50,
        moment=now,
        workers=2,
    )
    assert sim.stats()["recipients"]["distinct"] == 250
    assert not rows(campaign, S.FAILED).exists()
    resume = min(waiting.values_list("next_attempt_at", flat=True))
    assert now + timedelta(hours=23, minutes=59) <= resume <= now + timedelta(hours=24, seconds=5)
    # A day later the first recipients have left the moving window: the rest go.
    later = now + timedelta(hours=24, seconds=10)
    run_until(number, lambda: rows(campaign, *SENT).count() == 300, moment=later, workers=2)
    assert sim.stats()["recipients"] == {**sim.stats()["recipients"], "distinct": 300}
    assert sim.stats()["recipients"]["more_than_once"] == 0


def test_a_retry_waits_its_backoff_on_the_senders_clock(number, marketing, sim):
    """The clock a sender's claims read (injected here: frozen two days ahead) is the clock its
    retry times are written in: a row refused for throughput is tried once and waits, and
    goes once that clock has passed its backoff (real-time retry times were due at once)."""
    campaign = campaign_to(number, marketing, phones("+35191234", 20))
    moment = noon_utc_ahead()
    retrying = rows(campaign, S.RETRY)
    sim.configure(error_rates={"130429": 1.0})
    run_until(number, lambda: retrying.count() == 20, moment=moment)
    assert sim.stats()["send_requests"] == 20
    for at in retrying.values_list("next_attempt_at", flat=True):
        assert moment < at <= moment + timedelta(seconds=2)
    sim.configure(error_rates={})
    later = moment + timedelta(seconds=10)
    run_until(number, lambda: rows(campaign, *SENT).count() == 20, moment=later)
    assert sim.stats()["send_requests"] == 40


def test_a_recipient_with_an_open_service_window_costs_no_budget(number, marketing, sim):
    portfolio = Portfolio.objects.create(business_id="9002", messaging_tier="TIER_250")
    number.account.portfolio = portfolio
    number.account.save()
    people = phones("+35191234", 260)
    campaign = campaign_to(number, marketing, people)
    from campaigns.models import Contact

    Contact.objects.filter(phone__in=people[:20]).update(last_inbound_at=timezone.now())
    run_until(number, lambda: rows(campaign, *SENT).count() == 260)
    assert sim.stats()["recipients"]["distinct"] == 260


@pytest.fixture
def redis_away(settings):
    """REDIS_URL points at a closed port: pacing, the ledger and the state version fall back."""
    import socket

    from messaging.redis_client import get_redis

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        settings.REDIS_URL = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    get_redis.cache_clear()
    yield
    get_redis.cache_clear()


def test_a_portfolio_budget_holds_while_redis_is_away(number, marketing, sim, redis_away):
    from messaging.models import PacingState

    portfolio = Portfolio.objects.create(business_id="9003", messaging_tier="TIER_250")
    number.account.portfolio = portfolio
    number.account.save()
    campaign = campaign_to(number, marketing, phones("+35191234", 300))
    waiting = rows(campaign, S.QUEUED).filter(error_category=WAIT_BUDGET)
    # Two workers judge from PostgreSQL, one at a time: never both the last recipient.
    run_until(
        number,
        lambda: rows(campaign, *SENT).count() == 250 and waiting.count() == 50,
        workers=2,
    )
    assert sim.stats()["recipients"]["distinct"] == 250
    assert PacingState.objects.get(sender=number).mode == PacingState.Mode.POSTGRES


def test_a_pause_is_seen_while_redis_is_away(number, marketing, sim, redis_away):
    from messaging import services

    campaign = campaign_to(number, marketing, phones("+35191234", 3000))
    number.rate_mps = 50
    number.save()
    paused_at: list[tuple[int, float]] = []

    def pause_then_wait() -> bool:
        if not paused_at:
            if rows(campaign, *SENT).count() >= 50:
                services.pause_campaigns(campaigns=[campaign.pk], reason="staff")
                paused_at.append((sim.stats()["accepted"], monotonic()))
            return False
        return monotonic() > paused_at[0][1] + 5  # the loops keep running meanwhile

    run_until(number, pause_then_wait)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.PAUSED
    # Seen by polling the database (no version bump in Redis): what was sent after the pause
    # is a second or so at 45/s, far from the 5 s it ran on.
    assert sim.stats()["accepted"] - paused_at[0][0] <= 120
