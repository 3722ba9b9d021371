"""The campaign wizard in Chromium: upload a CSV, read the rendered preview, send a test to a
staff number through the simulator, confirm; the campaign is created with the file's rows and
the test is in no campaign's queue or counters."""

from __future__ import annotations

from selenium.webdriver.support.ui import Select

from campaigns.models import Campaign
from messaging.models import OutboundMessage, PreviewSend
from tests import factories

STAFF = "+14155550101"
CSV = "phone,name\n+14152000001,Alice\n+14152000002,Bob\n+14152000003,Carol\n"


def test_upload_preview_test_send_and_confirm(
    staff_browser, fresh_simulator, settings, tmp_path, sender, account
):
    settings.WHATSAPP_API_BASE_URL = fresh_simulator.base_url
    settings.WHATSAPP_ACCESS_TOKEN = fresh_simulator.token
    settings.TEST_SEND_NUMBERS = [STAFF]
    settings.MEDIA_ROOT = str(tmp_path / "media")
    template = factories.TemplateFactory(
        account=account, name="spring", components=[{"type": "BODY", "text": "Hi {{1}}, 15% off"}]
    )
    csv_path = tmp_path / "spring.csv"
    csv_path.write_text(CSV)

    page = staff_browser()
    page.viewport(1440, 900)
    page.open("/admin/campaigns/campaign/add/")
    page.find("#id_name").send_keys("Spring in the browser")
    page.find("#id_csv_file").send_keys(str(csv_path))
    Select(page.find("#id_sender")).select_by_value(str(sender.pk))
    Select(page.find("#id_template_1")).select_by_value(str(template.pk))
    page.find("#campaign_upload_form [type=submit]").click()

    # The preview shows the message as the person will read it, not the raw variables.
    page.wait_for_text("#preview-messages", "Hi Alice, 15% off")
    assert page.text("#count-queued") == "3"
    Select(page.find("#test-send-row")).select_by_index(1)
    page.find("#test-send-submit").click()
    page.wait_for_text(".messagelist", "Test of row 2")
    test = PreviewSend.objects.get()
    assert test.to == STAFF and test.wamid and not test.error
    assert fresh_simulator.stats()["accepted"] == 1
    page.screenshot("campaign-wizard-preview")

    page.find("#campaign_confirm_form [name=create]").click()
    page.wait_until(
        lambda: Campaign.objects.filter(name="Spring in the browser").exists(),
        "the campaign was not created",
    )
    campaign = Campaign.objects.get(name="Spring in the browser")
    assert campaign.total == 3 and campaign.sent == 0
    phones = set(OutboundMessage.objects.filter(campaign=campaign).values_list("phone", flat=True))
    assert phones == {"+14152000001", "+14152000002", "+14152000003"}
    assert STAFF not in phones
