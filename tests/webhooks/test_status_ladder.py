import itertools
import json
import random

import pytest

from messaging.models import OutboundStatus as S
from tests.factories import CampaignFactory
from tests.webhooks.payloads import accepted_rows, counters, post, recount, status, statuses_body
from webhooks.drain import drain
from webhooks.models import StatusLog
from webhooks.payload import parse
from webhooks.statuses import record_statuses

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sql_path")]

RANK = {"sent": S.SENT, "delivered": S.DELIVERED, "read": S.READ}


def _apply(items):
    record_statuses(events=parse(statuses_body(items)).statuses)


def _model(sequence):
    """The ladder rules, written independently of the implementation, one status at a time."""
    state = S.ACCEPTED
    for name in sequence:
        if state == S.FAILED:
            continue
        if name == "failed":
            if state < S.DELIVERED:
                state = S.FAILED
        elif RANK[name] > state:
            state = RANK[name]
    return state


def test_every_order_with_duplicates_one_status_per_delivery_matches_the_rules():
    campaign = CampaignFactory()
    orders = list(itertools.permutations(["sent", "delivered", "read", "failed"]))
    rows = accepted_rows(campaign, len(orders))
    rng = random.Random(7)
    expected = {}
    for row, order in zip(rows, orders, strict=True):
        stream = list(order) + [rng.choice(order) for _ in range(3)]
        for name in stream:  # one delivery per status, as Meta usually sends them
            _apply([status(row.wamid, name, code=131026 if name == "failed" else None)])
        expected[row.pk] = _model(stream)
    actual = dict(campaign.messages.values_list("pk", "status"))
    assert actual == expected
    assert counters(campaign) == recount(campaign)
    assert StatusLog.objects.count() == 4 * len(orders)  # each (wamid, status) once


def test_shuffled_duplicated_streams_in_random_batches_keep_counters_exact():
    campaign = CampaignFactory()
    rows = accepted_rows(campaign, 60)
    rng = random.Random(11)
    stream = []
    for row in rows:
        names = rng.sample(["sent", "delivered", "read", "failed"], rng.randint(1, 4))
        stream += [status(row.wamid, n, code=131026 if n == "failed" else None) for n in names]
    stream = stream * 3
    rng.shuffle(stream)
    while stream:
        size = rng.randint(1, 40)
        _apply(stream[:size])
        stream = stream[size:]
    assert counters(campaign) == recount(campaign)
    assert counters(campaign)["sent"] == 60


def test_read_without_delivered_counts_delivered_and_read():
    campaign = CampaignFactory()
    (row,) = accepted_rows(campaign, 1)
    _apply([status(row.wamid, "read")])
    row.refresh_from_db()
    assert row.status == S.READ
    assert row.delivered_at is not None and row.read_at is not None
    assert counters(campaign) == {"sent": 1, "delivered": 1, "read": 1, "failed": 0}


def test_delivered_after_read_changes_nothing():
    campaign = CampaignFactory()
    (row,) = accepted_rows(campaign, 1)
    _apply([status(row.wamid, "read")])
    _apply([status(row.wamid, "delivered")])
    row.refresh_from_db()
    assert row.status == S.READ
    assert counters(campaign) == {"sent": 1, "delivered": 1, "read": 1, "failed": 0}


def test_failed_after_delivered_changes_nothing():
    campaign = CampaignFactory()
    (row,) = accepted_rows(campaign, 1)
    _apply([status(row.wamid, "delivered")])
    _apply([status(row.wamid, "failed", code=131026)])
    row.refresh_from_db()
    assert row.status == S.DELIVERED and row.error_code is None
    assert counters(campaign)["failed"] == 0


def test_failed_after_sent_is_final_with_code_and_category():
    campaign = CampaignFactory()
    (row,) = accepted_rows(campaign, 1)
    _apply([status(row.wamid, "sent")])
    _apply([status(row.wamid, "failed", code=131026)])
    _apply([status(row.wamid, "delivered")])
    row.refresh_from_db()
    assert (row.status, row.error_code, row.error_category) == (S.FAILED, 131026, "recipient")
    assert counters(campaign) == {"sent": 1, "delivered": 0, "read": 0, "failed": 1}


def test_one_body_with_many_entries_changes_and_statuses_is_applied_whole(client):
    campaign = CampaignFactory()
    rows = accepted_rows(campaign, 4)
    body = statuses_body([status(rows[0].wamid, "delivered"), status(rows[1].wamid, "read")])
    second = statuses_body([status(rows[2].wamid, "sent"), status(rows[3].wamid, "read")])
    body["entry"][0]["changes"] += second["entry"][0]["changes"]
    body["entry"].append(statuses_body([status(rows[0].wamid, "read")])["entry"][0])
    assert post(client, json.dumps(body).encode()).status_code == 200
    assert drain() == 1
    assert [r.status for r in campaign.messages.order_by("pk")] == [
        S.READ,
        S.READ,
        S.SENT,
        S.READ,
    ]
    assert counters(campaign) == {"sent": 4, "delivered": 3, "read": 3, "failed": 0}
