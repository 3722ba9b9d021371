"""Exports and the cohort action in Chromium: the filtered recipients CSV downloads, and a
cohort becomes a draft campaign from the campaign page in one action."""

from __future__ import annotations

import csv
import io
import time
from datetime import timedelta
from pathlib import Path

from django.utils import timezone
from selenium.webdriver.support.ui import Select

from campaigns.models import Campaign, CampaignTemplate
from messaging.models import OutboundMessage, OutboundStatus
from tests import factories

WAIT_SECONDS = 30.0


def _finished(sender, template) -> Campaign:
    campaign = factories.CampaignFactory(
        name="Spring sale",
        sender=sender,
        status=Campaign.Status.COMPLETED,
        total=5,
        sent=5,
        failed=2,
    )
    CampaignTemplate.objects.create(campaign=campaign, template=template)
    long_ago = timezone.now() - timedelta(hours=30)
    for i, status in enumerate(
        [OutboundStatus.DELIVERED, OutboundStatus.DELIVERED, OutboundStatus.READ]
        + [OutboundStatus.FAILED] * 2
    ):
        contact = factories.ContactFactory(
            name="=cmd|'/c calc'!A1" if i == 3 else f"Person {i}", attributes={"code": f"C{i}"}
        )
        factories.OutboundMessageFactory(
            campaign=campaign,
            contact=contact,
            template=template,
            status=status,
            accepted_at=long_ago,
            delivered_at=long_ago if status != OutboundStatus.FAILED else None,
            read_at=long_ago if status == OutboundStatus.READ else None,
            error_code=131026 if status == OutboundStatus.FAILED else None,
            error_detail="Message undeliverable" if status == OutboundStatus.FAILED else "",
        )
    return campaign


def _downloaded(directory: Path) -> Path:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        done = [p for p in directory.glob("*.csv")]
        if done and not list(directory.glob("*.crdownload")):
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"no CSV downloaded into {directory}: {list(directory.iterdir())}")


def test_failed_recipients_export_downloads_as_a_safe_csv(
    staff_browser, sender, template, tmp_path
):
    campaign = _finished(sender, template)
    page = staff_browser()
    page.driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
    )
    page.open(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    page.wait_for_text("#campaign-audiences", "Export recipients")
    Select(page.find("#export-outcome")).select_by_value("failed")
    page.find("#recipients-export input[type=submit]").click()
    path = _downloaded(tmp_path)
    assert path.name == f"campaign-{campaign.pk}-recipients-failed.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert rows[0]["name"] == "'=cmd|'/c calc'!A1"  # shown as text, never run
    assert rows[0]["error_code"] == "131026"


def test_a_cohort_becomes_a_draft_from_the_campaign_page(staff_browser, sender, template):
    campaign = _finished(sender, template)
    page = staff_browser()
    page.viewport(1440)
    page.open(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    page.wait_for_text("#campaign-audiences", "New draft to those who")
    Select(page.find("#follow-up select[name=outcome]")).select_by_value("delivered_not_read")
    hours = page.find("#follow-up input[name=hours]")
    hours.clear()
    hours.send_keys("24")
    page.find("#follow-up input[type=submit]").click()
    page.wait_for_text(".messagelist", "created: 2 queued, 0 rejected")
    page.screenshot("cohort-draft-1440")
    draft = Campaign.objects.exclude(pk=campaign.pk).get()
    assert draft.status == Campaign.Status.DRAFT
    assert page.driver.current_url.endswith(f"/admin/campaigns/campaign/{draft.pk}/change/")
    assert OutboundMessage.objects.filter(campaign=draft).count() == 2
