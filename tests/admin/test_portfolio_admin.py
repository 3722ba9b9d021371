"""Staff set a portfolio's messaging limit by hand; the admin shows who set it and what is
left of the budget; a number's quality edited in admin goes through the same service."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, Portfolio, SenderNumber, TierSource
from messaging.models import NumberChange, OutboundStatus
from messaging.policy import budget
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def portfolio(redis_client):
    portfolio = Portfolio.objects.create(business_id="4242", name="Acme")
    account = factories.AccountFactory(portfolio=portfolio)
    factories.SenderFactory(account=account)
    return portfolio


def _form(portfolio, tier):
    return {"business_id": portfolio.business_id, "name": portfolio.name, "messaging_tier": tier}


def test_staff_set_the_tier_and_the_source_and_budget_show(admin_client, portfolio):
    url = reverse("admin:campaigns_portfolio_change", args=[portfolio.pk])
    assert admin_client.post(url, _form(portfolio, "TIER_10K")).status_code == 302

    portfolio.refresh_from_db()
    assert (portfolio.messaging_tier, portfolio.tier_source) == ("TIER_10K", TierSource.STAFF)
    assert portfolio.tier_updated_at is not None
    number = SenderNumber.objects.get(account__portfolio=portfolio)
    assert budget.ledger_for(number.pk).limit == 10_000
    page = admin_client.get(url).content.decode()
    assert "staff (admin)" in page and "10,000 of 10,000" in page

    # Set again to the same: nothing to record. Staff's later change is one more row.
    admin_client.post(url, _form(portfolio, "TIER_10K"))
    admin_client.post(url, _form(portfolio, "TIER_2K"))
    changes = list(NumberChange.objects.order_by("pk").values_list("old", "new", "source"))
    assert changes == [("TIER_10K", "TIER_2K", "staff")]  # the first was the default guess
    assert "set by admin" in NumberChange.objects.get().detail


def test_the_changelist_shows_budget_left_without_a_query_per_row(
    admin_client, portfolio, django_assert_max_num_queries
):
    number = SenderNumber.objects.get(account__portfolio=portfolio)
    campaign = factories.CampaignFactory(sender=number, status=Campaign.Status.RUNNING)
    factories.OutboundMessageFactory.create_batch(
        3, campaign=campaign, status=OutboundStatus.SENT, accepted_at=timezone.now()
    )
    url = reverse("admin:campaigns_portfolio_changelist")
    page = admin_client.get(url).content.decode()
    assert "247 of 250" in page and "default (never synced)" in page

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        admin_client.get(url)
    for n in range(5):
        other = Portfolio.objects.create(business_id=f"p{n}")
        factories.SenderFactory(account=factories.AccountFactory(portfolio=other))
    with django_assert_max_num_queries(len(one)):
        admin_client.get(url)


def test_a_quality_edited_in_admin_is_recorded_as_staffs(admin_client, sender):
    campaign = factories.CampaignFactory(sender=sender, status=Campaign.Status.RUNNING)
    url = reverse("admin:campaigns_sendernumber_change", args=[sender.pk])
    form = {
        "account": sender.account_id,
        "phone_number_id": sender.phone_number_id,
        "display_number": sender.display_number,
        "rate_mps": sender.rate_mps,
        "messaging_tier": "TIER_2K",
        "quality_rating": "RED",
        "status": "CONNECTED",
        "test_numbers": "",
    }
    assert admin_client.post(url, form).status_code == 302
    sender.refresh_from_db()
    campaign.refresh_from_db()
    assert (sender.quality_rating, sender.messaging_tier) == ("RED", "TIER_2K")
    assert sender.tier_source == TierSource.STAFF
    assert campaign.status == Campaign.Status.PAUSED  # the same rule as Meta's RED


def test_a_numbers_tier_is_read_only_when_its_portfolio_has_the_limit(admin_client, portfolio):
    number = SenderNumber.objects.get(account__portfolio=portfolio)
    page = admin_client.get(reverse("admin:campaigns_sendernumber_change", args=[number.pk]))
    assert 'name="messaging_tier"' not in page.content.decode()
    assert admin_client.get(reverse("admin:messaging_numberchange_changelist")).status_code == 200
