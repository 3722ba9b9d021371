"""Every custom admin URL with a bad or unknown id: 403 without the permission, then 404."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from tests.factories import CampaignFactory, SenderFactory

pytestmark = pytest.mark.django_db

C = "/admin/campaigns/campaign"
INBOX = "/admin/webhooks/inboundmessage/inbox"
# (method, url, permission the page needs)
BAD_URLS = [
    ("get", f"{C}/abc/rejections.csv", "view_campaign"),
    ("get", f"{C}/999999/rejections.csv", "view_campaign"),
    ("get", f"{C}/1%2F2/rejections.csv", "view_campaign"),
    ("post", f"{C}/abc/do/start/", "change_campaign"),
    ("get", f"{C}/abc/do/cancel/", "change_campaign"),
    ("post", f"{C}/999999/do/pause/", "change_campaign"),
    ("post", f"{C}/{{campaign}}/do/explode/", "change_campaign"),
    ("get", f"{C}/abc/recipients.csv", "view_campaign"),
    ("post", f"{C}/abc/reschedule/", "change_campaign"),
    ("get", f"{C}/999999/follow-up/", "add_campaign view_campaign"),
    ("get", "/admin/campaigns/contactlist/abc/upload/", "change_contactlist"),
    ("get", f"{INBOX}/999999/+14155550123/", "view_inboundmessage"),
    ("get", f"{INBOX}/999999/?user=x", "view_inboundmessage"),
]


def _staff(*codenames):
    user = User.objects.create_user(f"staff{User.objects.count()}", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(("method", "url", "permission"), BAD_URLS)
def test_bad_ids_are_403_without_permission_and_404_with_it(method, url, permission):
    url = url.format(campaign=CampaignFactory(sender=SenderFactory()).pk)
    # Staff without the permission learn nothing about the id, good or bad.
    assert getattr(_staff(), method)(url).status_code == 403
    assert getattr(_staff(*permission.split()), method)(url).status_code == 404


def test_a_superuser_gets_404_for_every_bad_url(admin_client):
    campaign = CampaignFactory(sender=SenderFactory())
    for method, url, _ in BAD_URLS:
        response = getattr(admin_client, method)(url.format(campaign=campaign.pk))
        assert response.status_code == 404, url


def test_a_good_id_still_works_for_a_permitted_user():
    campaign = CampaignFactory(sender=SenderFactory())
    response = _staff("view_campaign").get(f"{C}/{campaign.pk}/rejections.csv")
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"row_number,value,reason")
