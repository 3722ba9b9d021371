"""The started campaign's page in Chromium: it updates itself while running, keeps the
details (per template, failures by code) and the chart on screen, and its live ETA follows the
plan (the portfolio budget's waves)."""

from __future__ import annotations

from django.core.cache import cache
from django.db.models import F
from django.utils import timezone

from campaigns.models import Campaign, CampaignTemplate, Portfolio
from messaging.models import OutboundStatus
from tests import factories
from tests.policy.helpers import campaign_to, phones


def _campaign(sender, template):
    campaign = factories.CampaignFactory(
        name="Spring sale",
        sender=sender,
        status=Campaign.Status.RUNNING,
        started_at=timezone.now() - timezone.timedelta(minutes=5),
        total=2000,
        sent=1200,
        delivered=1000,
        read=400,
        failed=30,
    )
    CampaignTemplate.objects.create(campaign=campaign, template=template)
    at = campaign.started_at
    for minute in range(5):
        when = at + timezone.timedelta(minutes=minute, seconds=5)
        factories.OutboundMessageFactory.create_batch(
            3 + minute,
            campaign=campaign,
            template=template,
            status=OutboundStatus.READ,
            accepted_at=when,
            delivered_at=when,
            read_at=when,
        )
    factories.OutboundMessageFactory.create_batch(
        2,
        campaign=campaign,
        template=template,
        status=OutboundStatus.FAILED,
        error_code=131026,
        error_detail="Message undeliverable",
        failed_at=at,
    )
    factories.OutboundMessageFactory.create_batch(
        3,
        campaign=campaign,
        template=template,
        status=OutboundStatus.RETRY,
        error_code=131049,
        next_attempt_at=timezone.now() + timezone.timedelta(hours=24),
    )
    return campaign


def test_running_campaign_page_updates_without_reload(staff_browser, sender, template):
    campaign = _campaign(sender, template)
    page = staff_browser()
    page.viewport(1440, 1400)
    page.open(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    page.wait_for_text("#funnel-accepted", "1,200")
    page.wait_for_text("#campaign-failures", "Not a WhatsApp user")
    page.wait_for_text("#campaign-waiting", "3 waiting to retry after error 131049")
    page.driver.execute_script("document.body.dataset.marker = 'same-page'")

    Campaign.objects.filter(pk=campaign.pk).update(
        sent=F("sent") + 300, delivered=F("delivered") + 250
    )

    page.wait_for_text("#funnel-accepted", "1,500")
    page.wait_for_text("#funnel-delivered", "1,250")
    assert page.driver.execute_script("return document.body.dataset.marker") == "same-page"
    assert "Save" not in page.text("#content-main")
    path = page.screenshot("campaign-page")
    assert path.stat().st_size > 10_000


def test_view_only_staff_see_figures_without_buttons(staff_browser, sender, template):
    campaign = _campaign(sender, template)
    page = staff_browser(permissions=["campaigns.view_campaign"])
    page.open(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    page.wait_for_text("#funnel-accepted", "1,200")
    buttons = [b.get_attribute("value") for b in page.find_all("#campaign-actions input")]
    assert buttons == []
    assert "Cancel" not in page.text("#campaign-actions")


def test_the_live_eta_shows_the_budget_waves_of_the_plan(staff_browser, account):
    cache.clear()  # a plan kept from an earlier run under the same campaign id
    account.portfolio = Portfolio.objects.create(business_id="bm-page", messaging_tier="TIER_250")
    account.save()
    sender = factories.SenderFactory(account=account)
    template = factories.TemplateFactory(account=account, category="UTILITY")
    campaign = campaign_to(sender, template, phones("+35191900", 300), status="running")
    Campaign.objects.filter(pk=campaign.pk).update(started_at=timezone.now())
    page = staff_browser()
    page.viewport(1440, 1400)
    page.open(f"/admin/campaigns/campaign/{campaign.pk}/change/")

    page.wait_for_text("#plan-budget", "250 left now")
    page.wait_for_text("#campaign-eta", "2 waves, the next (50) from")
    assert "the messaging limit leaves 250 of 250 now" in page.text("#campaign-eta")
    page.screenshot("campaign-page-budget-eta")
