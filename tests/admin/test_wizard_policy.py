"""The wizard's send-policy fields: clear errors on the field, kept through the preview, saved
on the campaign, and checked again when the campaign is created."""

from __future__ import annotations

from datetime import time, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from campaigns.admin_wizard import SESSION_PREFIX
from campaigns.models import Campaign

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:campaigns_campaign_add")
CSV = b"phone,name,code\n+14152000001,Alice,A1\n+14152000002,Bob,B2\n"


def _upload(client, sender, template, **policy):
    data = {
        "name": "Spring sale",
        "csv_file": SimpleUploadedFile("contacts.csv", CSV, content_type="text/csv"),
        "sender": sender.pk,
        "template_1": template.pk,
        "weight_1": 1,
        "default_region": "US",
        "priority": 0,
        **policy,
    }
    return client.post(ADD_URL, data)


@pytest.mark.parametrize(
    "policy, field, message",
    [
        ({"window": "9-5"}, "window", "Window '9-5': expected HH:MM-HH:MM"),
        ({"window": "09:00-24:00"}, "window", "hours 00-23"),
        ({"window_days": "mon-fri"}, "window_days", "The days need a window"),
        ({"window": "09:00-20:00", "window_days": "weekdays"}, "window_days", "expected e.g."),
        ({"frequency_cap": "often"}, "frequency_cap", "expected messages/days, e.g. 2/7d"),
        ({"valid_until": "2001-01-01T10:00"}, "valid_until", "already past"),
    ],
)
def test_bad_policy_settings_are_field_errors(
    admin_client, sender, template, policy, field, message
):
    response = _upload(admin_client, sender, template, **policy)
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == [field]
    assert message in errors[field][0]
    assert Campaign.objects.count() == 0


def test_the_policy_is_saved_on_the_campaign(admin_client, sender, template):
    until = (timezone.now() + timedelta(days=2)).replace(second=0, microsecond=0)
    upload = _upload(
        admin_client,
        sender,
        template,
        valid_until=until.strftime("%Y-%m-%dT%H:%M"),
        window="08:30-21:00",
        window_days="mon-sat",
        frequency_cap="3/7d",
    )
    assert upload.status_code == 302
    preview = admin_client.get(upload["Location"])
    page = preview.content.decode()
    assert 'id="launch-plan"' in page
    assert "08:30-21:00 mon,tue,wed,thu,fri,sat" in page

    admin_client.post(upload["Location"], {"when": "draft"})

    campaign = Campaign.objects.get()
    assert campaign.valid_until == until
    assert (campaign.window_start, campaign.window_end) == (time(8, 30), time(21))
    assert (campaign.window_days, campaign.frequency_cap) == ("mon-sat", "3/7d")


def test_a_valid_until_that_passed_between_the_steps_stops_the_creation(
    admin_client, sender, template
):
    until = timezone.now() + timedelta(hours=1)
    upload = _upload(admin_client, sender, template, valid_until=until.strftime("%Y-%m-%dT%H:%M"))
    token = upload["Location"].rstrip("/").split("/")[-1]
    session = admin_client.session
    data = session[SESSION_PREFIX + token]
    data["policy"]["valid_until"] = (timezone.now() - timedelta(minutes=1)).isoformat()
    session[SESSION_PREFIX + token] = data
    session.save()

    response = admin_client.post(upload["Location"], {"when": "draft"})

    assert response.status_code == 200
    assert "Valid until: already past. Upload again to change it." in response.content.decode()
    assert Campaign.objects.count() == 0
