"""The campaign list as staff see it in Chromium: key columns visible at desktop and phone
widths, without scrolling sideways."""

from __future__ import annotations

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignTemplate
from tests import factories

LIST = "/admin/campaigns/campaign/"
KEY_COLUMNS = ["name", "status", "progress", "delivered", "read", "failed"]


@pytest.fixture
def campaigns(sender, template):
    made = []
    for n, status in enumerate(
        [Campaign.Status.RUNNING, Campaign.Status.COMPLETED, Campaign.Status.SCHEDULED]
    ):
        campaign = factories.CampaignFactory(
            name=f"Spring sale with a rather long descriptive name {n}",
            sender=sender,
            status=status,
            total=12_000,
            sent=9_000 - n,
            delivered=8_000,
            read=5_000,
            failed=300,
            start_at=timezone.now(),
        )
        CampaignTemplate.objects.create(campaign=campaign, template=template)
        made.append(campaign)
    return made


def _header_cells(page):
    cells = {}
    for th in page.find_all("#result_list thead th"):
        for css_class in (th.get_attribute("class") or "").split():
            if css_class.startswith("column-"):
                cells[css_class.removeprefix("column-")] = th
    return cells


@pytest.mark.parametrize("width", [1440, 390])
def test_key_columns_are_on_screen(staff_browser, campaigns, width):
    page = staff_browser()
    page.viewport(width)
    page.open(LIST)
    page.wait_for_text("#result_list", campaigns[0].name)
    page.screenshot(f"campaign-list-{width}")
    headers = _header_cells(page)
    shown = [key for key in KEY_COLUMNS if any(key in name for name in headers)]
    assert shown == KEY_COLUMNS, headers.keys()
    for name, th in headers.items():
        if any(key in name for key in KEY_COLUMNS):
            assert page.is_in_viewport(th), f"column {name} is off-screen at {width} px"


def test_queue_list_keeps_the_error_on_screen_at_1440(staff_browser, campaigns, template):
    factories.OutboundMessageFactory(
        campaign=campaigns[0],
        template=template,
        status=20,
        error_code=131026,
        error_category="recipient",
        error_detail="Message undeliverable: the recipient is not a WhatsApp user " * 3,
    )
    page = staff_browser()
    page.viewport(1440)
    page.open("/admin/messaging/outboundmessage/")
    page.wait_for_text("#result_list", "131026")
    page.screenshot("queue-list-1440")
    for css in ("th.column-error_column", "th.column-when_column", "td.field-error_column"):
        assert page.is_in_viewport(page.find(css)), f"{css} is off-screen"
