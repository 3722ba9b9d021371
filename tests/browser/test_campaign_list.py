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
