from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from campaigns.admin_wizard import SESSION_PREFIX, UPLOAD_SUBDIR
from campaigns.models import Campaign, ImportRejection
from messaging.models import OutboundMessage
from tests import factories

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:campaigns_campaign_add")
GOOD_CSV = (
    b"phone,name,code\n"
    b"+14152000001,Alice,A1\n"
    b"+14152000002,Bob,B2\n"
    b"not-a-number,Carol,C3\n"
    b"+14152000001,Alice again,A9\n"
)


def _upload(client, sender, template, content=GOOD_CSV, **extra):
    data = {
        "name": "Spring sale",
        "csv_file": SimpleUploadedFile("contacts.csv", content, content_type="text/csv"),
        "sender": sender.pk,
        "template_1": template.pk,
        "weight_1": 1,
        "default_region": "US",
        "priority": 0,
        **extra,
    }
    return client.post(ADD_URL, data)


def _uploads() -> list[Path]:
    directory = Path(settings.MEDIA_ROOT) / UPLOAD_SUBDIR
    return sorted(directory.glob("*")) if directory.exists() else []


def test_add_page_is_the_upload_form(admin_client):
    response = admin_client.get(ADD_URL)
    assert response.status_code == 200
    assert b'enctype="multipart/form-data"' in response.content
    assert b'name="csv_file"' in response.content


def test_upload_preview_confirm_creates_a_running_campaign_with_its_queue(
    admin_client, sender, template
):
    upload = _upload(admin_client, sender, template)
    assert upload.status_code == 302
    confirm_url = upload["Location"]
    assert len(_uploads()) == 1  # the file waits under MEDIA_ROOT between the steps
    assert Campaign.objects.count() == 0  # the preview writes nothing

    preview = admin_client.get(confirm_url)
    page = preview.content.decode()
    assert preview.status_code == 200
    # The message as the person reads it, not its raw parameters.
    assert "+14152000001" in page and "Hi Alice, your code is A1" in page
    assert "+14152000002" in page and "Hi Bob, your code is B2" in page
    assert '<td id="count-queued">2</td>' in page
    assert '<td id="count-rejected">1</td>' in page
    assert '<td id="count-duplicates">1</td>' in page
    assert "not-a-number" in page  # the rejected row, with its reason, before confirming

    created = admin_client.post(confirm_url, {"when": "start_now"})

    campaign = Campaign.objects.get()
    assert created.status_code == 302
    assert created["Location"] == reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    assert campaign.name == "Spring sale" and campaign.status == Campaign.Status.RUNNING
    assert campaign.total == 2 and campaign.rejected_count == 1
    assert OutboundMessage.objects.filter(campaign=campaign).count() == 2
    assert ImportRejection.objects.filter(campaign=campaign).count() == 1
    assert _uploads() == []  # cleaned up
    assert not any(k.startswith(SESSION_PREFIX) for k, _ in admin_client.session.items())
    # The token is spent: coming back does not create a second campaign.
    again = admin_client.post(confirm_url, {"when": "start_now"})
    assert again.status_code == 302 and again["Location"] == ADD_URL
    assert Campaign.objects.count() == 1


def test_confirm_can_schedule_or_save_as_draft(admin_client, sender, template):
    later = timezone.localtime() + timedelta(days=1)
    confirm_url = _upload(admin_client, sender, template)["Location"]
    admin_client.post(
        confirm_url, {"when": "schedule", "start_at": later.strftime("%Y-%m-%dT%H:%M")}
    )
    scheduled = Campaign.objects.get()
    assert scheduled.status == Campaign.Status.SCHEDULED
    assert abs((scheduled.start_at - later).total_seconds()) < 60

    confirm_url = _upload(admin_client, sender, template, name="Draft one")["Location"]
    admin_client.post(confirm_url, {"when": "draft"})
    assert Campaign.objects.get(name="Draft one").status == Campaign.Status.DRAFT


def test_schedule_without_a_time_is_refused_and_keeps_the_upload(admin_client, sender, template):
    confirm_url = _upload(admin_client, sender, template)["Location"]
    response = admin_client.post(confirm_url, {"when": "schedule"})
    assert response.status_code == 200
    assert "Give the start time" in response.content.decode()
    assert Campaign.objects.count() == 0
    assert len(_uploads()) == 1


def test_discard_deletes_the_upload_and_creates_nothing(admin_client, sender, template):
    confirm_url = _upload(admin_client, sender, template)["Location"]
    response = admin_client.post(confirm_url, {"discard": "1"})
    assert response.status_code == 302
    assert _uploads() == [] and Campaign.objects.count() == 0


def test_csv_without_a_phone_column_is_an_error_on_the_form(admin_client, sender, template):
    response = _upload(admin_client, sender, template, content=b"name,code\nAlice,A1\n")
    assert response.status_code == 200
    assert "no phone column" in response.content.decode()
    assert Campaign.objects.count() == 0
    assert OutboundMessage.objects.count() == 0
    assert len(_uploads()) == 1  # kept, so fixing another field needs no new upload
    assert "Kept from your last try: contacts.csv" in response.content.decode()


def test_after_an_error_the_uploaded_file_is_kept(admin_client, sender, template, account):
    other = factories.TemplateFactory(name="foreign_promo")
    first = _upload(admin_client, sender, other)
    assert "belongs to account" in first.content.decode()
    data = {
        "name": "Spring sale",
        "sender": sender.pk,
        "template_1": template.pk,
        "weight_1": 1,
        "default_region": "US",
        "priority": 0,
    }
    second = admin_client.post(ADD_URL, data)  # no file chosen this time
    assert second.status_code == 302
    assert "Hi Alice, your code is A1" in admin_client.get(second["Location"]).content.decode()
    assert len(_uploads()) == 1


def test_a_new_file_replaces_the_kept_one(admin_client, sender, template):
    _upload(admin_client, sender, template, content=b"name,code\nAlice,A1\n")
    response = _upload(admin_client, sender, template)
    assert response.status_code == 302
    assert len(_uploads()) == 1


def test_without_any_file_the_form_asks_for_one(admin_client, sender, template):
    response = admin_client.post(
        ADD_URL, {"name": "x", "sender": sender.pk, "template_1": template.pk, "priority": 0}
    )
    assert response.status_code == 200
    assert "Choose the CSV file to send to." in response.content.decode()


def test_template_of_another_account_is_refused(admin_client, sender):
    foreign = factories.TemplateFactory(name="foreign_promo")
    response = _upload(admin_client, sender, foreign)
    assert response.status_code == 200
    assert "belongs to account" in response.content.decode()
    assert "foreign_promo" in response.content.decode()
    assert Campaign.objects.count() == 0


def test_unapproved_template_is_refused(admin_client, sender, account):
    pending = factories.TemplateFactory(account=account, name="new_promo", status="PENDING")
    assert "new_promo" not in admin_client.get(ADD_URL).content.decode()  # not offered
    response = _upload(admin_client, sender, pending)
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert Campaign.objects.count() == 0


def test_template_paused_between_the_steps_is_refused_at_confirm(admin_client, sender, template):
    confirm_url = _upload(admin_client, sender, template)["Location"]
    template.status = "PAUSED"
    template.save()
    response = admin_client.post(confirm_url, {"when": "start_now"})
    assert response.status_code == 200
    assert "is PAUSED, not APPROVED" in response.content.decode()
    assert Campaign.objects.count() == 0


def test_file_with_nothing_to_send_is_refused_at_confirm(admin_client, sender, template):
    content = b"phone,name,code\nnot-a-number,Carol,C3\n"
    confirm_url = _upload(admin_client, sender, template, content=content)["Location"]
    assert "No row of the file can be sent" in admin_client.get(confirm_url).content.decode()
    response = admin_client.post(confirm_url, {"when": "start_now"})
    assert response.status_code == 200
    assert "no number left to send to" in response.content.decode()
    assert Campaign.objects.count() == 0


def test_weights_and_second_template_reach_the_campaign(admin_client, sender, account, template):
    other = factories.TemplateFactory(account=account)
    confirm_url = _upload(
        admin_client, sender, template, template_2=other.pk, weight_1=3, weight_2=1
    )["Location"]
    admin_client.post(confirm_url, {"when": "draft"})
    campaign = Campaign.objects.get()
    assert list(campaign.template_links.values_list("template_id", "weight")) == [
        (template.pk, 3),
        (other.pk, 1),
    ]


def test_unknown_token_redirects_to_upload(admin_client):
    response = admin_client.get(reverse("admin:campaigns_campaign_add_confirm", args=["x" * 32]))
    assert response.status_code == 302 and response["Location"] == ADD_URL


def test_step_one_sets_the_canary_and_thresholds_and_the_plan_times_it(
    admin_client, sender, template
):
    refused = _upload(admin_client, sender, template, canary_rate="1")
    assert refused.status_code == 200
    assert "A canary rate needs a canary share." in refused.content.decode()
    assert Campaign.objects.count() == 0
    confirm_url = _upload(
        admin_client,
        sender,
        template,
        canary_percent="50",
        canary_rate="1",
        max_failure_rate="10",
        max_opt_out_rate="1",
    )["Location"]
    preview = admin_client.get(confirm_url).content.decode()
    assert "50 % of the rows first at 1 msg/s; pause above 10 % failed" in preview
    # The plan on the same page times the canary: one row, then the verdict, then the other.
    assert "a canary of 1 row(s) at 1 msg/s goes first" in preview
    assert "the other 1 wait for its verdict by" in preview
    admin_client.post(confirm_url, {"when": "start_now"})
    campaign = Campaign.objects.get()
    assert (campaign.canary_percent, campaign.canary_rate) == (50.0, 1.0)
    assert (campaign.max_failure_rate, campaign.max_opt_out_rate) == (0.1, 0.01)
    # Started: one of the two rows is the canary, the other waits for its verdict.
    assert (campaign.canary_state, campaign.canary_size) == ("running", 1)
    held = OutboundMessage.objects.filter(campaign=campaign, error_category="wait:canary")
    assert held.count() == 1
    page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert "held until the canary" in page.content.decode()
