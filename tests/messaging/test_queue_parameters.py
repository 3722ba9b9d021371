"""The queue's `parameters` (messaging/json_text.py: PostgreSQL `json`, not `jsonb`) read back
the same through every path that reads them, and `parameters=[]` still filters."""

from __future__ import annotations

import pytest
from django.db import connection

from campaigns.models import Campaign
from messaging import queue
from messaging.models import OutboundMessage
from tests import factories

pytestmark = pytest.mark.django_db

COMPONENTS = [
    {
        "type": "body",
        "parameters": [
            {"type": "text", "text": 'Zoë "Z" \\ 😀', "parameter_name": "first_name"},
            {"type": "currency", "currency": {"amount_1000": 49900, "code": "BRL"}},
        ],
    }
]


def test_parameters_read_back_the_same_by_the_orm_by_values_and_by_the_claim():
    campaign = factories.CampaignFactory(status=Campaign.Status.RUNNING)
    row = factories.OutboundMessageFactory(campaign=campaign, parameters=COMPONENTS)
    assert OutboundMessage.objects.get(pk=row.pk).parameters == COMPONENTS
    assert list(OutboundMessage.objects.values_list("parameters", flat=True)) == [COMPONENTS]
    (claimed,) = queue.claim_due(campaign_id=campaign.pk, limit=1, worker="w")
    assert claimed.parameters == COMPONENTS  # a list the payload can carry, never JSON text


def test_rows_without_parameters_are_found_by_equality():
    campaign = factories.CampaignFactory()
    empty = factories.OutboundMessageFactory(campaign=campaign, parameters=[])
    full = factories.OutboundMessageFactory(campaign=campaign, parameters=COMPONENTS)
    rows = OutboundMessage.objects.filter(campaign=campaign)
    assert list(rows.filter(parameters=[]).values_list("pk", flat=True)) == [empty.pk]
    assert list(rows.exclude(parameters=[]).values_list("pk", flat=True)) == [full.pk]


def test_the_column_is_json_on_postgresql():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = %s AND column_name = 'parameters'",
            [OutboundMessage._meta.db_table],
        )
        assert cursor.fetchone() == ("json",)
