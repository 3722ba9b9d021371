"""The launch plan in Chromium: the wizard's preview shows it and the wizard saves the policy
fields (valid_until, window, days, cap); the running campaign's page shows the plan of what is
left, with what waits and why."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.utils import timezone

from campaigns.models import Campaign, Portfolio, TemplatePrice
from messaging.models import OutboundStatus
from messaging.policy.gate import WAIT_BUDGET
from tests import factories
from tests.policy.helpers import campaign_to, phones

CSV = (
    "phone,name\n"
    "+351912400001,Ana\n"
    "+351912400002,Rui\n"
    "+351912400001,Ana again\n"
    "+14155552671,US\n"
    "+4915112345678,Jonas\n"
    "nope,Bad\n"
)


def _select(page, name: str, value: object) -> None:
    from selenium.webdriver.support.ui import Select

    Select(page.find(f"select[name={name}]")).select_by_value(str(value))


def _type(page, name: str, text: str) -> None:
    field = page.find(f"input[name={name}]")
    field.clear()
    field.send_keys(text)


def test_the_wizard_previews_the_plan_and_saves_the_policy_fields(staff_browser, sender, tmp_path):
    marketing = factories.TemplateFactory(
        account=sender.account, name="spring", category="MARKETING", components=[]
    )
    TemplatePrice.objects.create(
        country="PT", category="MARKETING", price=Decimal("0.05"), currency="EUR"
    )
    path = tmp_path / "contacts.csv"
    path.write_text(CSV)
    page = staff_browser()
    page.open("/admin/campaigns/campaign/add/")
    _type(page, "name", "Spring sale")
    page.find("input[name=csv_file]").send_keys(str(path))
    _select(page, "sender", sender.pk)
    _select(page, "template_1", marketing.pk)
    _type(page, "window", "25:00-20:00")
    _type(page, "frequency_cap", "lots")
    page.find("#campaign_upload_form input[type=submit]").click()

    # Clear errors on the fields themselves; the file is kept.
    page.wait_for_text(".field-window .errorlist", "hours 00-23")
    assert "expected messages/days" in page.text(".field-frequency_cap .errorlist")
    assert "contacts.csv" in page.text(".field-csv_file .help")

    _type(page, "window", "09:00-20:00")
    _type(page, "window_days", "mon-fri")
    _type(page, "frequency_cap", "1/7d")
    page.driver.execute_script(
        "arguments[0].value = '2099-01-01T12:00'", page.find("input[name=valid_until]")
    )
    page.find("#campaign_upload_form input[type=submit]").click()

    page.wait_for_text("#launch-plan", "Plan")
    assert page.text("#plan-to-send") == "3 of 3"
    assert page.text("#plan-skipped-duplicate").endswith("1")
    assert page.text("#plan-skipped-invalid").endswith("1")
    assert "Meta does not deliver marketing templates to US numbers" in page.text(
        "#plan-skipped-us_marketing"
    )
    assert page.text("#plan-window") == "09:00-20:00 mon,tue,wed,thu,fri"
    assert page.text("#plan-cap").startswith("1/7d")
    zones = page.text("#plan-zones")
    assert "Atlantic/Azores/Europe/Lisbon" in zones and "Europe/Berlin" in zones
    assert "0.10000 EUR" in page.text("#plan-cost")
    assert "1 not priced" in page.text("#plan-cost")
    assert "DE" in page.text("#plan-unpriced")
    assert page.text("#plan-valid-until").startswith("2099-01-01 12:00")
    page.screenshot("wizard-plan-1440")

    page.find("input[name=create]").click()
    page.wait_until(lambda: Campaign.objects.filter(name="Spring sale").exists())
    campaign = Campaign.objects.get(name="Spring sale")
    assert campaign.valid_until == datetime(2099, 1, 1, 12, 0, tzinfo=UTC)
    assert (campaign.window_start, campaign.window_end) == (time(9), time(20))
    assert (campaign.window_days, campaign.frequency_cap) == ("mon-fri", "1/7d")
    assert campaign.total == 3


def test_the_running_campaign_page_shows_the_plan_and_what_waits(staff_browser, account):
    portfolio = Portfolio.objects.create(business_id="bm-page", messaging_tier="TIER_250")
    account.portfolio = portfolio
    account.save()
    sender = factories.SenderFactory(account=account)
    template = factories.TemplateFactory(account=account, category="UTILITY")
    campaign = campaign_to(
        sender,
        template,
        phones("+35191250", 300),
        started_at=timezone.now() - timedelta(minutes=5),
    )
    # The gate held 20 rows back for the budget until tomorrow.
    later = timezone.now() + timedelta(hours=20)
    held = list(campaign.messages.order_by("-id").values_list("pk", flat=True)[:20])
    campaign.messages.filter(pk__in=held).update(
        next_attempt_at=later, error_category=WAIT_BUDGET, status=OutboundStatus.QUEUED
    )
    page = staff_browser()
    page.open(f"/admin/campaigns/campaign/{campaign.pk}/change/")

    page.wait_for_text("#launch-plan", "Plan of what is left")
    assert "20 waiting for the portfolio's messaging limit" in page.text("#campaign-waiting")
    assert "250 recipients per 24 h" in page.text("#plan-budget")
    waves = page.find_all("#plan-waves tbody tr")
    assert [row.text.split()[-1] for row in waves] == ["250", "50"]
    page.screenshot("campaign-plan-1440")


def test_a_draft_campaign_page_shows_its_plan(staff_browser, sender, template):
    campaign = campaign_to(
        sender, template, phones("+35191260", 5), status="draft", window_start=time(9)
    )
    campaign.window_end = time(20)
    campaign.save()
    page = staff_browser()
    page.open(f"/admin/campaigns/campaign/{campaign.pk}/change/")

    page.wait_for_text("#launch-plan h2", "Plan")
    assert page.text("#plan-to-send") == "5 of 5"
    assert page.text("#plan-window").startswith("09:00-20:00")
