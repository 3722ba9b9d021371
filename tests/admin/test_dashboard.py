import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from messaging.models import OutboundStatus
from tests import factories

pytestmark = pytest.mark.django_db
URL = reverse("admin:campaigns_dashboard")


def test_index_links_to_the_dashboard(admin_client):
    assert URL in admin_client.get(reverse("admin:index")).content.decode()


def test_dashboard_shows_active_campaigns_and_each_number_today(admin_client, account, template):
    sender = factories.SenderFactory(
        account=account, quality_rating="YELLOW", messaging_tier="TIER_1K", learned_rate=55.5
    )
    idle = factories.SenderFactory(account=account, display_number="+15550009999")
    running = factories.CampaignFactory(
        name="Running one", sender=sender, status=Campaign.Status.RUNNING, total=4
    )
    factories.CampaignFactory(name="Done long ago", sender=sender, status=Campaign.Status.COMPLETED)
    now = timezone.now()
    for status, fields in (
        (OutboundStatus.DELIVERED, {"accepted_at": now}),
        (OutboundStatus.READ, {"accepted_at": now}),
        (OutboundStatus.FAILED, {"failed_at": now}),
        (OutboundStatus.DELIVERED, {"accepted_at": now - timezone.timedelta(days=2)}),
    ):
        factories.OutboundMessageFactory(
            campaign=running, template=template, status=status, **fields
        )

    cache.clear()  # today's figures are cached for a minute
    page = admin_client.get(URL).content.decode()

    assert "Running one" in page and "Done long ago" not in page
    assert "YELLOW" in page and "TIER_1K" in page and "55.5" in page
    senders = page[page.index('id="dashboard-senders"') :]
    row = senders[senders.index(sender.display_number) :]
    cells = row[: row.index("</tr>")]
    assert '<td class="wac-num">2</td><td class="wac-num">1</td>' in cells  # sent, failed
    assert "33 %" in cells
    assert idle.display_number in page


def test_dashboard_needs_view_permission(client, django_user_model):
    user = django_user_model.objects.create_user("nobody", password="x", is_staff=True)
    client.force_login(user)
    assert client.get(URL).status_code == 403
