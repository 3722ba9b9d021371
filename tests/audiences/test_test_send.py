"""Test send from the wizard's preview: to staff numbers only, outside any campaign."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns.models import Campaign
from messaging.models import OutboundMessage, PreviewSend
from messaging.test_send import send_test, staff_numbers

pytestmark = pytest.mark.django_db

CSV = b"phone,name,code\n+14152000001,Alice,A1\n+14152000002,Bob,B2\n"
STAFF = "+14155550101"


@pytest.fixture
def sim(fresh_simulator, settings, tmp_path):
    settings.WHATSAPP_API_BASE_URL = fresh_simulator.base_url
    settings.WHATSAPP_ACCESS_TOKEN = fresh_simulator.token
    settings.TEST_SEND_NUMBERS = [STAFF, "not a phone"]
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return fresh_simulator


def test_staff_numbers_come_from_the_setting_and_the_sender(sim, sender):
    sender.test_numbers = "(415) 555-0102, +14155550101"
    assert staff_numbers(sender) == [STAFF, "+14155550102"]


def test_the_wizard_sends_a_chosen_row_to_a_staff_number_and_counts_nothing(
    sim, admin_client, sender, template
):
    upload = admin_client.post(
        reverse("admin:campaigns_campaign_add"),
        {
            "name": "Spring",
            "csv_file": SimpleUploadedFile("c.csv", CSV, content_type="text/csv"),
            "sender": sender.pk,
            "template_1": template.pk,
            "weight_1": 1,
            "default_region": "US",
            "priority": 0,
        },
    )
    confirm_url = upload["Location"]
    page = admin_client.get(confirm_url).content.decode()
    assert 'id="test-send"' in page and STAFF in page
    token = confirm_url.rstrip("/").rsplit("/", 1)[-1]
    test_url = reverse("admin:campaigns_campaign_add_test_send", args=[token])

    response = admin_client.post(test_url, {"row": "1", "numbers": [STAFF]}, follow=True)
    assert "Test of row 2" in response.content.decode()
    test = PreviewSend.objects.get()
    assert (test.to, test.template, test.sender) == (STAFF, template, sender)
    assert test.wamid and not test.error
    # Row 2's variables (Bob, B2), rendered as the campaign would send them.
    assert [p["text"] for p in test.parameters[0]["parameters"]] == ["Bob", "B2"]
    stats = sim.stats(full=True)
    assert stats["accepted_by_to"] == {STAFF.lstrip("+"): 1}
    assert list(stats["accepted_by_callback"]) == [f"test:{test.pk}"]
    assert Campaign.objects.count() == 0 and OutboundMessage.objects.count() == 0

    # A number nobody listed is refused, and the upload is still there to confirm.
    refused = admin_client.post(test_url, {"row": "0", "numbers": ["+14155559999"]}, follow=True)
    assert "not a staff number" in refused.content.decode()
    assert PreviewSend.objects.count() == 1
    assert admin_client.get(confirm_url).status_code == 200


def test_send_test_refuses_an_empty_choice_and_a_paused_template(sim, sender, template):
    with pytest.raises(ValueError, match="at least one"):
        send_test(sender=sender, template=template, components=[], to=[])
    template.status = "PAUSED"
    with pytest.raises(ValueError, match="PAUSED"):
        send_test(sender=sender, template=template, components=[], to=[STAFF])
