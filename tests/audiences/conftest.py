"""A finished campaign whose recipients ended every way a cohort can name."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import OutboundStatus as S
from tests import factories
from webhooks.models import InboundMessage

NOW = timezone.now()
HOURS_AGO = NOW - timedelta(hours=30)


@pytest.fixture
def finished(sender, template):
    """Recipient i (phone e164(100 + i)) ended as the label says; `city` and `code` set."""
    campaign = factories.CampaignFactory(
        sender=sender, name="Spring", status="completed", total=7, sent=7, failed=2
    )
    factories.CampaignTemplateFactory(campaign=campaign, template=template, weight=1)
    plan = [
        ("delivered_old", S.DELIVERED, dict(delivered_at=HOURS_AGO)),
        ("delivered_new", S.DELIVERED, dict(delivered_at=NOW)),
        ("read_quiet", S.READ, dict(delivered_at=HOURS_AGO, read_at=HOURS_AGO)),
        ("read_replied", S.READ, dict(delivered_at=HOURS_AGO, read_at=HOURS_AGO)),
        ("failed_retryable", S.FAILED, dict(error_code=131049, error_category="marketing_limit")),
        ("failed_final", S.FAILED, dict(error_code=131026, error_category="recipient")),
        ("sent_only", S.SENT, {}),
    ]
    rows = {}
    for i, (label, status, fields) in enumerate(plan):
        contact = factories.ContactFactory(
            phone=factories.e164(100 + i),
            name=label,
            attributes={"city": "Lisbon" if i % 2 == 0 else "Porto", "code": f"C{i}"},
        )
        rows[label] = factories.OutboundMessageFactory(
            campaign=campaign,
            contact=contact,
            template=template,
            status=status,
            accepted_at=HOURS_AGO,
            error_detail='=HYPERLINK("http://x")' if label == "failed_final" else "",
            **fields,
        )
    InboundMessage.objects.create(
        sender=sender,
        user_phone=rows["read_replied"].phone,
        wamid="wamid.in.1",
        type="text",
        text="Thanks!",
        campaign=campaign,
        timestamp=NOW - timedelta(hours=29),
    )
    campaign.rows = rows
    return campaign
