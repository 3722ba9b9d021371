"""The launch plan (messaging.policy.plan): counts per reason, waves on a small budget, zones
at a frozen moment, cost with and without prices, and bounded queries."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import Portfolio, TemplatePrice
from messaging.campaign_import import service
from messaging.campaign_import.batch import _BatchImport
from messaging.models import OutboundStatus
from messaging.policy import budget
from messaging.policy.plan import plan_campaign, plan_import
from tests import factories
from tests.policy.helpers import campaign_to, phones

pytestmark = pytest.mark.django_db

# A Wednesday after the rows' own next_attempt_at; 10:00 UTC is 10:00 in Lisbon (09:00 in the
# Azores), 19:00 in Tokyo, 05:00 in New York.
NOW = datetime(2027, 1, 6, 10, 0, tzinfo=UTC)
# Portuguese mobiles map to both zones; the gate reads the strictest.
LISBON = "Atlantic/Azores/Europe/Lisbon"

CRAFTED = (
    "phone,name\n"
    "+351912000001,Ok one\n"  # row 2: sent
    "+351912000002,Ok two\n"  # row 3: sent
    "12,Too short\n"  # row 4: invalid
    "not a number,Words\n"  # row 5: invalid
    "+351912000001,Again\n"  # row 6: duplicate of row 2
    "+351912000003,Opted out\n"  # row 7: suppressed
    "+351912000004,Gone\n"  # row 8: not on WhatsApp
    "+14155552671,US\n"  # row 9: +1 marketing
    "+351912000005,Capped\n"  # row 10: two marketing messages yesterday: capped for 6 days
    "+351912000006,Capped early\n"  # row 11: capped until tomorrow, before valid_until
)


@pytest.fixture(params=["postgres", "batch"])
def backend(request, monkeypatch):
    if request.param == "batch":
        monkeypatch.setattr(service, "_backend", _BatchImport)
    return request.param


def _marketing(sender):
    return factories.TemplateFactory(
        account=sender.account, category="MARKETING", components=[{"type": "BODY", "text": "Hi"}]
    )


def _accepted(sender, template, phone, at):
    """A marketing message another campaign had accepted at `at`."""
    contact, _ = factories.Contact.objects.get_or_create(phone=phone)
    factories.OutboundMessageFactory(
        campaign=factories.CampaignFactory(sender=sender, status="completed"),
        contact=contact,
        template=template,
        phone=phone,
        status=OutboundStatus.ACCEPTED,
        accepted_at=at,
    )


def test_the_plan_counts_every_reason_on_a_crafted_csv(sender, tmp_path, backend):
    template = _marketing(sender)
    factories.SuppressionFactory(phone="+351912000003")
    factories.ContactFactory(
        phone="+351912000004", undeliverable_at=timezone.now(), undeliverable_code=131026
    )
    now = timezone.now()
    for _ in range(2):  # POLICY_MARKETING_CAP is 2/7d
        _accepted(sender, template, "+351912000005", now - timedelta(days=1))
    _accepted(sender, template, "+351912000006", now - timedelta(days=6, hours=12))
    _accepted(sender, template, "+351912000006", now - timedelta(days=6, hours=12))
    path = tmp_path / "crafted.csv"
    path.write_text(CRAFTED)

    plan, preview = plan_import(
        csv_file=str(path),
        sender=sender,
        templates=[(template, 1)],
        policy={"valid_until": now + timedelta(days=3)},
        now=now,
    )

    assert preview.queued == 4
    skipped = {key: n for key, n in plan.skipped.items() if n}
    assert skipped == {
        "invalid": 2,
        "duplicate": 1,
        "suppressed": 1,
        "not_on_whatsapp": 1,
        "us_marketing": 1,
        "frequency_cap": 1,
    }
    assert (plan.audience, plan.to_send, plan.cap_waiting) == (4, 3, 1)
    assert plan.cap == "2/7d"
    # The early-capped person goes when the older messages leave the 7 days.
    capped_zone = next(z for z in plan.zones if z.zone == LISBON)
    assert capped_zone.last_send >= now + timedelta(hours=12)
    assert plan.as_json()["skipped"]["us_marketing"] == 1


def test_300_recipients_on_a_250_budget_go_in_two_waves_a_day_apart(account):
    portfolio = Portfolio.objects.create(business_id="bm-1", messaging_tier="TIER_250")
    account.portfolio = portfolio
    account.save()
    sender = factories.SenderFactory(account=account, rate_mps=80)
    template = factories.TemplateFactory(account=account, category="UTILITY")
    numbers = phones("+35191300", 300)
    # One of them wrote to us an hour ago: its service window is open, it costs no budget.
    campaign = campaign_to(sender, template, numbers, status="running")
    factories.Contact.objects.filter(phone=numbers[-1]).update(
        last_inbound_at=NOW - timedelta(hours=1)
    )

    plan = plan_campaign(campaign, now=NOW)

    assert (plan.budget.limit, plan.budget.used, plan.budget.left) == (250, 0, 250)
    assert (plan.budget.charged, plan.budget.free) == (299, 1)
    assert [w.count for w in plan.waves] == [251, 49]
    first, second = plan.waves
    assert first.starts == NOW
    # 72 msg/s (80 less the 10 % headroom): the first wave takes seconds.
    assert first.ends < NOW + timedelta(seconds=10)
    # The first slot frees 24 h after the first send.
    assert NOW + timedelta(hours=24) <= second.starts < NOW + timedelta(hours=24, seconds=10)
    assert plan.eta == second.ends
    assert plan.to_send == 300


def test_the_budget_already_spent_today_moves_the_first_wave(account):
    portfolio = Portfolio.objects.create(business_id="bm-2", messaging_tier="TIER_250")
    account.portfolio = portfolio
    account.save()
    sender = factories.SenderFactory(account=account)
    template = factories.TemplateFactory(account=account, category="UTILITY")
    earlier = NOW - timedelta(hours=20)
    for phone in phones("+35191400", 200):
        _accepted(sender, template, phone, earlier)
    campaign = campaign_to(sender, template, phones("+35191500", 100))

    plan = plan_campaign(campaign, now=NOW)

    assert (plan.budget.used, plan.budget.left) == (200, 50)
    assert [w.count for w in plan.waves] == [50, 50]
    assert plan.waves[1].starts == earlier + timedelta(hours=24)


def test_the_budget_used_and_left_are_the_engines_own_count(account, redis_client):
    """The plan's "used" and "left" come from budget.counted_now / budget.left, the count the
    engine admits against (the Redis ledger), not from a sum of its own."""
    portfolio = Portfolio.objects.create(business_id="bm-3", messaging_tier="TIER_250")
    account.portfolio = portfolio
    account.save()
    sender = factories.SenderFactory(account=account)
    template = factories.TemplateFactory(account=account, category="UTILITY")
    ledger = budget.ledger_for(sender.pk)
    now = timezone.now()
    # Admitted by a worker whose rows are not committed yet: only the Redis ledger has them.
    admitted = budget.ledgers().admit(ledger, phones("+35191450", 30), now, judging=[])
    assert len(admitted.admitted) == 30
    campaign = campaign_to(sender, template, phones("+35191550", 10))

    plan = plan_campaign(campaign, now=now)

    assert (plan.budget.used, plan.budget.left) == (30, 220)
    assert plan.budget.left == budget.left([ledger], now)[ledger.key]


def test_zones_with_their_window_at_a_frozen_moment(sender, template):
    lisbon, tokyo = "+351912100001", "+819012345678"
    new_york = "+351912100002"  # a Portuguese number whose contact lives in New York
    campaign = campaign_to(
        sender,
        template,
        [lisbon, tokyo, new_york],
        attributes={new_york: {"timezone": "America/New_York"}},
        window_start=time(9),
        window_end=time(20),
        window_days="mon-fri",
    )

    plan = plan_campaign(campaign, now=NOW)

    zones = {z.zone: z for z in plan.zones}
    assert set(zones) == {LISBON, "Asia/Tokyo", "America/New_York"}
    assert zones[LISBON].opens == NOW and zones[LISBON].open_at(NOW)
    assert zones["Asia/Tokyo"].opens == NOW
    assert zones["America/New_York"].opens == datetime(2027, 1, 6, 14, 0, tzinfo=UTC)
    assert not zones["America/New_York"].open_at(NOW)
    assert zones["America/New_York"].first_send == datetime(2027, 1, 6, 14, 0, tzinfo=UTC)
    assert plan.window == "09:00-20:00 mon,tue,wed,thu,fri"
    assert [w.count for w in plan.waves] == [2, 1]
    assert plan.eta == datetime(2027, 1, 6, 14, 0, tzinfo=UTC)


def test_a_window_that_opens_after_valid_until_skips_the_row(sender, template):
    campaign = campaign_to(
        sender,
        template,
        ["+351912200001", "+819012345679"],
        window_start=time(9),
        window_end=time(20),
        valid_until=NOW + timedelta(hours=3),
    )
    later = NOW + timedelta(hours=1, minutes=30)  # 20:30 in Tokyo: closed until 00:00 UTC

    plan = plan_campaign(campaign, now=later)

    assert plan.to_send == 1
    assert plan.skipped["window"] == 1


def test_cost_with_and_without_prices(sender, template):
    TemplatePrice.objects.create(
        country="PT", category="UTILITY", price=Decimal("0.0200"), currency="EUR"
    )
    TemplatePrice.objects.create(
        country="PT", category="MARKETING", price=Decimal("0.9"), currency="EUR"
    )
    campaign = campaign_to(
        sender,
        template,
        [*phones("+35191600", 3), "+4915112345678", "+4915112345679"],
    )

    plan = plan_campaign(campaign, now=NOW)

    cost = plan.cost
    assert cost.totals == {"EUR": Decimal("0.06")}
    assert cost.priced == 3
    assert [(line.country, line.category, line.count) for line in cost.unpriced] == [
        ("DE", "UTILITY", 2)
    ]
    assert plan.as_json()["cost"]["unpriced"] == 2

    TemplatePrice.objects.all().delete()
    cost = plan_campaign(campaign, now=NOW).cost
    assert cost.totals == {} and cost.priced == 0
    assert sum(line.count for line in cost.unpriced) == 5


def test_the_plan_of_a_campaign_costs_a_fixed_number_of_queries(sender, template, settings):
    settings.POLICY_MARKETING_CAP = "2/7d"
    marketing = _marketing(sender)
    small = campaign_to(sender, marketing, phones("+35191700", 10))
    large = campaign_to(sender, marketing, phones("+35191800", 400))
    counts = []
    for campaign in (small, large):
        with CaptureQueriesContext(connection) as queries:
            plan_campaign(campaign, now=NOW)
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_what_the_budget_cannot_send_before_valid_until_is_skipped(account):
    portfolio = Portfolio.objects.create(business_id="bm-3", messaging_tier="TIER_250")
    account.portfolio = portfolio
    account.save()
    sender = factories.SenderFactory(account=account)
    template = factories.TemplateFactory(account=account, category="UTILITY")
    campaign = campaign_to(
        sender, template, phones("+35191900", 300), valid_until=NOW + timedelta(hours=12)
    )

    plan = plan_campaign(campaign, now=NOW)

    assert plan.to_send == 250
    assert plan.skipped["budget"] == 50
    assert [w.count for w in plan.waves] == [250]
    assert plan.beyond_horizon == 0


def test_a_row_of_its_own_validity_is_judged_by_the_earlier_deadline(sender, template):
    tokyo = "+819012345670"
    campaign = campaign_to(
        sender, template, ["+351912200002", tokyo], window_start=time(9), window_end=time(20)
    )
    # An API send's ttl: three hours; at 11:30 UTC Tokyo's window is closed until 00:00.
    campaign.messages.filter(phone=tokyo).update(valid_until=NOW + timedelta(hours=3))

    plan = plan_campaign(campaign, now=NOW + timedelta(hours=1, minutes=30))

    assert plan.to_send == 1
    assert plan.skipped["window"] == 1
    assert plan.valid_until is None and plan.beyond_horizon == 0
