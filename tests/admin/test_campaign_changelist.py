import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CampaignTemplate
from messaging.models import OutboundStatus
from tests import factories
from webhooks.models import InboundMessage

pytestmark = pytest.mark.django_db

URL = reverse("admin:campaigns_campaign_changelist")


def _campaigns(count: int, sender, templates) -> list[Campaign]:
    campaigns = Campaign.objects.bulk_create(
        Campaign(
            name=f"Bulk {i}",
            sender=sender,
            status=Campaign.Status.RUNNING,
            total=100,
            sent=50,
            delivered=40,
            read=10,
            failed=5,
        )
        for i in range(count)
    )
    CampaignTemplate.objects.bulk_create(
        CampaignTemplate(campaign=c, template=t, position=p)
        for c in campaigns
        for p, t in enumerate(templates)
    )
    return campaigns


def test_changelist_query_count_is_the_same_for_5_and_500_campaigns(
    admin_client, sender, account, django_assert_num_queries
):
    templates = [factories.TemplateFactory(account=account) for _ in range(3)]
    _campaigns(5, sender, templates)
    admin_client.get(URL)  # warm the session and content types
    with CaptureQueriesContext(connection) as small:
        assert admin_client.get(URL).status_code == 200
    _campaigns(495, sender, templates)
    with django_assert_num_queries(len(small.captured_queries)):
        response = admin_client.get(URL)
    assert response.status_code == 200
    assert len(small.captured_queries) <= 10


def test_changelist_shows_templates_progress_and_rates(admin_client, sender, account):
    first = factories.TemplateFactory(account=account, name="spring_sale", language="en_US")
    second = factories.TemplateFactory(account=account, name="spring_sale_b", language="es")
    campaign = factories.CampaignFactory(
        sender=sender,
        name="Spring",
        status=Campaign.Status.RUNNING,
        total=200,
        sent=100,
        delivered=80,
        read=20,
        failed=10,
    )
    CampaignTemplate.objects.create(campaign=campaign, template=second, position=1)
    CampaignTemplate.objects.create(campaign=campaign, template=first, position=0)

    content = admin_client.get(URL).content.decode()

    assert "spring_sale:en_US, spring_sale_b:es" in content
    assert '<progress class="wac-bar" value="110" max="200"' in content
    assert '<span class="wac-rate">55%</span><span class="wac-count">110 / 200</span>' in content
    rate = '<span class="wac-rate">{}</span><span class="wac-count">{}</span>'
    assert rate.format("80.0%", "80") in content  # delivered of accepted
    assert rate.format("25.0%", "20") in content  # read of delivered
    assert rate.format("5.0%", "10") in content  # failed of queued


def test_rows_waiting_for_retry_keep_progress_below_full(admin_client, sender, template):
    # Counters overshoot (accepted-then-failed rows count twice); the retry rows cap them.
    campaign = factories.CampaignFactory(
        sender=sender, status=Campaign.Status.RUNNING, total=10, sent=9, failed=3
    )
    for _ in range(7):
        factories.OutboundMessageFactory(
            campaign=campaign, template=template, status=OutboundStatus.RETRY
        )
    content = admin_client.get(URL).content.decode()
    assert '<span class="wac-rate">30%</span><span class="wac-count">3 / 10</span>' in content


def test_replies_are_counted_per_person(admin_client, sender, template):
    campaign = factories.CampaignFactory(sender=sender, total=4, sent=4, delivered=4)
    for n, phone in enumerate(["+14155550001", "+14155550001", "+14155550002"]):
        InboundMessage.objects.create(
            sender=sender,
            user_phone=phone,
            wamid=f"wamid.in.{n}",
            type="text",
            text="hi",
            campaign=campaign,
            timestamp=timezone.now(),
        )
    content = admin_client.get(URL).content.decode()
    assert '<span class="wac-rate">50.0%</span><span class="wac-count">2</span>' in content


def test_completed_campaign_shows_full_progress(admin_client, sender):
    factories.CampaignFactory(
        sender=sender, status=Campaign.Status.COMPLETED, total=10, sent=8, failed=0
    )
    assert "10 / 10" in admin_client.get(URL).content.decode()


def test_changelist_filters_by_status_and_sender_and_searches_by_name(admin_client, sender):
    factories.CampaignFactory(sender=sender, name="Alpha launch", status=Campaign.Status.RUNNING)
    factories.CampaignFactory(name="Beta launch", status=Campaign.Status.DRAFT)

    by_status = admin_client.get(URL, {"status__exact": "running"}).content.decode()
    by_sender = admin_client.get(URL, {"sender__id__exact": sender.pk}).content.decode()
    by_name = admin_client.get(URL, {"q": "beta"}).content.decode()

    assert "Alpha launch" in by_status and "Beta launch" not in by_status
    assert "Alpha launch" in by_sender and "Beta launch" not in by_sender
    assert "Beta launch" in by_name and "Alpha launch" not in by_name
