"""Campaigns through the API: the admin's import service and report, the state verbs."""

from __future__ import annotations

import pytest

from campaigns.models import Campaign
from messaging.models import OutboundMessage, OutboundStatus
from tests import factories

pytestmark = pytest.mark.django_db


def campaign_body(sender, template, recipients, **extra):
    return {
        "name": "Spring sale",
        "sender": sender.phone_number_id,
        "templates": [{"name": template.name, "language": template.language}],
        "recipients": recipients,
        **extra,
    }


def test_json_recipients_go_through_the_import_and_its_report(api, sender, template):
    factories.SuppressionFactory(phone="+14155550103")
    recipients = [
        {"phone": "+14155550101", "variables": {"1": "Ana", "2": "A1"}},
        {"phone": "+14155550101", "variables": {"1": "Ana", "2": "A1"}},
        {"phone": "not a phone", "variables": {"1": "Bo", "2": "B1"}},
        {"phone": "+14155550103", "variables": {"1": "Cy", "2": "C1"}},
        {"phone": "+14155550104", "variables": {"1": "Di", "2": "D1"}},
    ]
    response = api.post("/campaigns", campaign_body(sender, template, recipients))
    assert response.status_code == 201, response.json()
    report = response.json()
    assert (report["queued"], report["duplicates"], report["suppressed"]) == (2, 1, 1)
    assert report["rejected"] == 1
    assert report["rejections"][0]["row_number"] == 4  # the header is row 1
    assert report["campaign"]["status"] == "draft"
    campaign_id = report["campaign"]["id"]
    rows = OutboundMessage.objects.filter(campaign_id=campaign_id).order_by("id")
    assert rows[0].parameters[0]["parameters"][0]["text"] == "Ana"


def test_a_file_that_cannot_be_imported_writes_nothing_and_says_why(api, sender, template):
    recipients = [{"phone": "+14155550101", "variables": {"1": "Ana"}}]  # {{2}} missing
    response = api.post("/campaigns", campaign_body(sender, template, recipients))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "import_refused"
    assert "{{2}}" in response.json()["error"]["message"]
    assert not Campaign.objects.exists()


def test_a_csv_upload_uses_the_same_import(api, sender, template):
    csv = b"phone,first,code\n+14155550101,Ana,A1\n+14155550102,Bo,B1\n"
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = api.client.post(
        "/api/v1/campaigns/upload",
        {
            "file": SimpleUploadedFile("c.csv", csv, content_type="text/csv"),
            "name": "Upload",
            "sender": sender.display_number,
            "template": f"{template.name}:{template.language}",
            "start_now": "true",
        },
        headers=api.headers(),
    )
    assert response.status_code == 201, response.json()
    assert response.json()["queued"] == 2
    assert response.json()["campaign"]["status"] == "running"


def test_state_verbs_and_listing_by_status(api, sender, template):
    recipients = [{"phone": f"+1415555010{i}", "variables": {"1": "x", "2": "y"}} for i in range(3)]
    campaign_id = api.post("/campaigns", campaign_body(sender, template, recipients)).json()[
        "campaign"
    ]["id"]
    assert api.post(f"/campaigns/{campaign_id}/start").json()["status"] == "running"
    paused = api.post(f"/campaigns/{campaign_id}/pause", {"reason": "CRM said so"}).json()
    assert (paused["status"], paused["pause_reason"]) == (
        "paused",
        "Paused through the API: CRM said so",
    )
    assert api.post(f"/campaigns/{campaign_id}/resume").json()["status"] == "running"
    first = OutboundMessage.objects.filter(campaign_id=campaign_id).order_by("id").first()
    OutboundMessage.objects.filter(pk=first.pk).update(status=OutboundStatus.FAILED)
    assert api.post(f"/campaigns/{campaign_id}/cancel").json()["status"] == "cancelled"

    again = api.post(f"/campaigns/{campaign_id}/resume")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_transition"
    failed = api.get(f"/campaigns/{campaign_id}/messages", status="failed").json()
    assert [m["id"] for m in failed["items"]] == [first.pk]
    page = api.get(f"/campaigns/{campaign_id}/messages", limit=2).json()
    assert len(page["items"]) == 2 and page["next_after"] == page["items"][1]["id"]
    rest = api.get(f"/campaigns/{campaign_id}/messages", after=page["next_after"]).json()
    assert len(rest["items"]) == 1 and rest["next_after"] is None
    bad = api.get(f"/campaigns/{campaign_id}/messages", status="bogus")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "status"
