import json
import threading

import pytest
from django.db import connection

from tests.factories import CampaignFactory
from tests.webhooks.payloads import accepted_rows, counters, post, recount, status, statuses_body
from webhooks.drain import apply_batch, drain
from webhooks.models import RawEvent, StatusLog
from webhooks.tasks import drain_webhooks


@pytest.mark.django_db(transaction=True)
def test_bodies_stored_but_not_applied_are_applied_by_a_later_drain(client):
    campaign = CampaignFactory()
    rows = accepted_rows(campaign, 3)
    for row in rows:
        body = json.dumps(statuses_body([status(row.wamid, "read")])).encode()
        assert post(client, body).status_code == 200
    # "Crash": nothing applied yet, everything durable.
    assert RawEvent.objects.filter(applied_at__isnull=True).count() == 3
    assert counters(campaign)["read"] == 0
    # "Restart": a fresh drain call, as the watchdog or `apply_webhooks` would make.
    connection.close()
    assert drain_webhooks() == 3
    assert not RawEvent.objects.filter(applied_at__isnull=True).exists()
    assert counters(campaign) == {"sent": 3, "delivered": 3, "read": 3, "failed": 0}


@pytest.mark.django_db
def test_a_failing_batch_rolls_back_whole_and_is_applied_after(client, monkeypatch):
    campaign = CampaignFactory()
    (row,) = accepted_rows(campaign, 1)
    post(client, json.dumps(statuses_body([status(row.wamid, "delivered")])).encode())

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies mid-apply

    monkeypatch.setattr("webhooks.drain.apply_parsed", crash)
    with pytest.raises(KeyboardInterrupt):
        apply_batch()
    assert RawEvent.objects.filter(applied_at__isnull=True).count() == 1
    assert not StatusLog.objects.exists()
    monkeypatch.undo()
    assert drain() == 1
    assert counters(campaign)["delivered"] == 1


@pytest.mark.django_db
def test_the_view_kicks_a_drain_that_applies_in_the_cluster(client, settings):
    import webhooks.tasks

    settings.WEBHOOK_KICK_SECONDS = 1
    webhooks.tasks._last_kick = float("-inf")
    campaign = CampaignFactory()
    (row,) = accepted_rows(campaign, 1)
    post(client, json.dumps(statuses_body([status(row.wamid, "delivered")])).encode())
    # Q_CLUSTER sync in tests: the kicked task ran before the response.
    assert not RawEvent.objects.filter(applied_at__isnull=True).exists()
    assert counters(campaign)["delivered"] == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_drainers_apply_every_body_exactly_once(client):
    campaign = CampaignFactory()
    rows = accepted_rows(campaign, 40)
    for i, row in enumerate(rows):
        # Orders that end the same whichever drainer applies which body first.
        names = [["sent", "delivered", "read"], ["delivered", "sent"], ["failed", "sent"]][i % 3]
        for name in names * 2:  # duplicates across bodies
            body = statuses_body(
                [status(row.wamid, name, code=131026 if name == "failed" else None)]
            )
            post(client, json.dumps(body).encode())
    assert RawEvent.objects.count() == 188
    applied, errors = [], []
    barrier = threading.Barrier(4)

    def worker():
        try:
            barrier.wait()
            applied.append(drain(batch_size=7))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sum(applied) == 188
    assert not RawEvent.objects.filter(applied_at__isnull=True).exists()
    assert (
        counters(campaign)
        == recount(campaign)
        == {
            "sent": 40,
            "delivered": 27,
            "read": 14,
            "failed": 13,
        }
    )
    assert StatusLog.objects.count() == 94
