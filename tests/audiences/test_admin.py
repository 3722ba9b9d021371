"""The audience pages in admin: export download, follow-up, list upload, draft actions."""

from __future__ import annotations

import csv
import io
from datetime import time, timedelta

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from campaigns.models import (
    Campaign,
    Contact,
    ContactList,
    ContactListMember,
    ImportRejection,
    Segment,
)
from messaging.models import OutboundMessage
from messaging.policy.fields import COPIED_FIELDS
from tests import factories
from tests.policy.test_policy_fields import copied_values, winner_state

pytestmark = pytest.mark.django_db


def download(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response.streaming
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_campaign_page_offers_export_and_follow_up(admin_client, finished):
    page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[finished.pk]))
    html = page.content.decode()
    assert reverse("admin:campaigns_campaign_recipients", args=[finished.pk]) in html
    assert reverse("admin:campaigns_campaign_follow_up", args=[finished.pk]) in html
    assert 'value="read_not_replied"' in html


def test_recipients_export_filtered_by_outcome(admin_client, finished):
    url = reverse("admin:campaigns_campaign_recipients", args=[finished.pk])
    rows = download(admin_client.get(url, {"outcome": "failed"}))
    assert rows[0][:4] == ["phone", "name", "template", "status"]
    assert [r[1] for r in rows[1:]] == ["failed_retryable", "failed_final"]
    assert rows[2][5] == '\'=HYPERLINK("http://x")'
    response = admin_client.get(url, {"outcome": "nope"})
    assert response.status_code == 302


def test_the_rejections_download_neutralises_formulas_too(admin_client):
    campaign = factories.CampaignFactory()
    ImportRejection.objects.create(campaign=campaign, row_number=2, value="=1+1", reason="bad")
    url = reverse("admin:campaigns_campaign_rejections", args=[campaign.pk])
    assert download(admin_client.get(url))[1] == ["2", "'=1+1", "bad"]


def test_follow_up_creates_a_draft_of_the_cohort(admin_client, finished):
    url = reverse("admin:campaigns_campaign_follow_up", args=[finished.pk])
    response = admin_client.post(url, {"outcome": "delivered_not_read", "hours": "24"})
    draft = Campaign.objects.exclude(pk=finished.pk).get()
    assert response["Location"] == reverse("admin:campaigns_campaign_change", args=[draft.pk])
    assert draft.status == Campaign.Status.DRAFT
    assert list(OutboundMessage.objects.filter(campaign=draft).values_list("phone", flat=True)) == [
        finished.rows["delivered_old"].phone
    ]
    # An empty cohort is refused with the reason, and nothing is created.
    OutboundMessage.objects.filter(campaign=finished, status=13).delete()
    response = admin_client.post(url, {"outcome": "replied"}, follow=True)
    assert "No follow-up created" in response.content.decode()
    assert Campaign.objects.count() == 2


def test_a_follow_up_starts_with_the_campaigns_settings(admin_client, finished):
    """The follow-up is made from the campaign as a duplicate is (fields.copied_settings): its
    send-policy and template-winner settings, not the winner's verdict."""
    values = copied_values()
    Campaign.objects.filter(pk=finished.pk).update(priority=3, **values, **winner_state())
    url = reverse("admin:campaigns_campaign_follow_up", args=[finished.pk])

    admin_client.post(url, {"outcome": "not_delivered"})

    draft = Campaign.objects.exclude(pk=finished.pk).get()
    assert {name: getattr(draft, name) for name in COPIED_FIELDS} == values
    assert draft.priority == 3
    assert (draft.winner_decided_at, draft.winner_decision, draft.canary_state) == (None, "", "")


def test_follow_up_needs_the_add_permission(client, finished):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client.force_login(user)
    url = reverse("admin:campaigns_campaign_follow_up", args=[finished.pk])
    assert client.post(url, {"outcome": "replied"}).status_code == 403
    # Viewers may still export what they can see.
    rows = download(client.get(reverse("admin:campaigns_campaign_recipients", args=[finished.pk])))
    assert len(rows) == 1 + len(finished.rows)


def _action(client, changelist: str, action: str, ids: list[int], **data):
    return client.post(
        reverse(changelist),
        {"action": action, helpers.ACTION_CHECKBOX_NAME: [str(i) for i in ids], **data},
        follow=True,
    )


def test_contact_selection_to_a_new_list_and_to_a_draft(admin_client, finished, template):
    ids = list(Contact.objects.filter(name__startswith="read").values_list("pk", flat=True))
    form = _action(admin_client, "admin:campaigns_contact_changelist", "add_to_list", ids)
    assert "Add 2 contact(s) to a contact list" in form.content.decode()
    _action(
        admin_client,
        "admin:campaigns_contact_changelist",
        "add_to_list",
        ids,
        add_to_list="1",
        new_list="Readers",
    )
    assert ContactList.objects.get(name="Readers").members.count() == 2

    page = _action(admin_client, "admin:campaigns_contact_changelist", "draft_from_selection", ids)
    assert "New draft campaign" in page.content.decode()
    done = _action(
        admin_client,
        "admin:campaigns_contact_changelist",
        "draft_from_selection",
        ids,
        create_draft="1",
        name="Readers again",
        sender=str(finished.sender_id),
        template_1=str(template.pk),
        weight_1="1",
        priority="0",
    )
    draft = Campaign.objects.get(name="Readers again")
    assert draft.total == 2
    assert "2 queued, 0 rejected" in done.content.decode()


def test_list_upload_and_segment_draft(admin_client, finished, template):
    contact_list = ContactList.objects.create(name="Shop")
    upload = io.BytesIO(b"phone,name,city\n4155552671,Ann,Lisbon\n123,Bad,X\n")
    upload.name = "list.csv"
    response = admin_client.post(
        reverse("admin:campaigns_contactlist_upload", args=[contact_list.pk]),
        {"csv_file": upload, "default_region": "US"},
        follow=True,
    )
    text = response.content.decode()
    assert "1 added, 0 already on the list, 1 rejected" in text
    assert "Row 3 (123)" in text
    segment = Segment.objects.create(name="Lisbon", rules="city = Lisbon")
    _action(
        admin_client,
        "admin:campaigns_segment_changelist",
        "draft_from_segments",
        [segment.pk],
        create_draft="1",
        name="Lisbon people",
        sender=str(finished.sender_id),
        template_1=str(template.pk),
        weight_1="1",
        priority="0",
    )
    # Four Lisbon contacts of the finished campaign plus Ann from the upload.
    assert Campaign.objects.get(name="Lisbon people").total == 5


def _draft_post(admin_client, finished, template, action, changelist, ids, **policy):
    return _action(
        admin_client,
        changelist,
        action,
        ids,
        create_draft="1",
        name="With a policy",
        sender=str(finished.sender_id),
        template_1=str(template.pk),
        weight_1="1",
        priority="3",
        **policy,
    )


@pytest.mark.parametrize(
    ("action", "changelist"),
    [
        ("draft_from_lists", "admin:campaigns_contactlist_changelist"),
        ("draft_from_segments", "admin:campaigns_segment_changelist"),
    ],
)
def test_a_draft_from_a_list_or_segment_takes_the_wizards_policy_fields(
    admin_client, finished, template, action, changelist
):
    if action == "draft_from_lists":
        chosen = ContactList.objects.create(name="Everyone")
        chosen.members.bulk_create(
            ContactListMember(contact_list=chosen, contact=c) for c in Contact.objects.all()
        )
    else:
        chosen = Segment.objects.create(name="Lisbon", rules="city = Lisbon")
    form = _action(admin_client, changelist, action, [chosen.pk]).content.decode()
    for name in ("valid_until", "window", "window_days", "frequency_cap", "canary_percent"):
        assert f'name="{name}"' in form

    # The wizard's own checks, with its messages, on the field that is wrong.
    bad = _draft_post(
        admin_client, finished, template, action, changelist, [chosen.pk], window="9-5"
    )
    assert list(bad.context["form"].errors) == ["window"]
    assert "expected HH:MM-HH:MM" in bad.context["form"].errors["window"][0]
    past = _draft_post(
        admin_client,
        finished,
        template,
        action,
        changelist,
        [chosen.pk],
        valid_until="2001-01-01T10:00",
        window_days="mon-fri",
    )
    assert set(past.context["form"].errors) == {"valid_until", "window_days"}
    assert not Campaign.objects.filter(name="With a policy").exists()

    until = (timezone.now() + timedelta(days=2)).replace(second=0, microsecond=0)
    _draft_post(
        admin_client,
        finished,
        template,
        action,
        changelist,
        [chosen.pk],
        valid_until=timezone.localtime(until).strftime("%Y-%m-%dT%H:%M"),
        window="08:30-21:00",
        window_days="mon-sat",
        frequency_cap="off",
        canary_percent="10",
        max_failure_rate="5",
    )
    draft = Campaign.objects.get(name="With a policy")
    assert (draft.canary_percent, draft.max_failure_rate) == (10.0, 0.05)
    assert (draft.status, draft.priority, draft.valid_until) == ("draft", 3, until)
    assert (draft.window_start, draft.window_end) == (time(8, 30), time(21))
    assert (draft.window_days, draft.frequency_cap) == ("mon-sat", "off")
    assert draft.total > 0
