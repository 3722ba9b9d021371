"""`campaign.expired` is reported once per campaign that expires, whichever path ends its rows
by its valid_until (a sender's expiry, maintenance's, a claim's screen) and however many of
them run at once; each expired row is one `message.expired`."""

from __future__ import annotations

import importlib
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import Campaign
from messaging import queue
from messaging.integrations.events.publish import MESSAGE_EVENTS
from messaging.integrations.models import (
    EventSubscription,
    EventType,
    MessageEventLog,
    OutboxEvent,
)
from messaging.models import OutboundMessage
from messaging.models import OutboundStatus as S
from messaging.policy import gate
from messaging.transient import Backoff, retry_transient
from tests.concurrency import in_thread, waiting_for_locks
from tests.engine.conftest import _wait_until, make_campaign

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _subscribed(db):
    EventSubscription.objects.create(name="crm", url="http://127.0.0.1:9/", secret="s")


def _reported(event_type: str) -> Counter[int]:
    """How many events of the type each campaign has (the outbox), or each row has (the
    message event log, one entry per transaction that moved rows)."""
    if event_type.startswith("campaign."):
        payloads = OutboxEvent.objects.filter(event_type=event_type)
        return Counter(p["campaign_id"] for p in payloads.values_list("payload", flat=True))
    status = next(s for s, t in MESSAGE_EVENTS.items() if t == event_type)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT e.id FROM {MessageEventLog._meta.db_table},"
            " unnest(ids, statuses) AS e(id, status) WHERE e.status = %s",
            [int(status)],
        )
        return Counter(row_id for (row_id,) in cursor.fetchall())


def _once_each(rows) -> dict[int, int]:
    return dict.fromkeys(rows.values_list("pk", flat=True), 1)


def _hold_campaign_row(campaign_id: int, locked: threading.Event, release: threading.Event):
    def hold() -> None:
        with transaction.atomic():
            Campaign.objects.select_for_update().get(pk=campaign_id)
            locked.set()
            release.wait(30)

    return hold


def _claim(campaign: Campaign, limit: int, worker: str) -> list[queue.ClaimedMessage]:
    return queue.claim_due(campaign_id=campaign.pk, limit=limit, worker=worker)


def _claim_screened(
    rules: gate.CampaignRules, limit: int, worker: str
) -> list[queue.ClaimedMessage]:
    """A claim as the sender makes it: the gate's screen expires rows past the deadline."""
    now = timezone.now()
    return queue.claim_due(
        campaign_id=rules.campaign_id,
        limit=limit,
        worker=worker,
        now=now,
        screen=lambda rows: gate.screen(rows, rules, now=now),
    )


def test_two_expiries_with_rows_given_back_between_them_report_the_campaign_once(
    sql_path, sender, template
):
    """Worker a expires the campaign; before it commits, a worker that held rows gives them
    back and worker b's expiry starts, finds no expired row committed yet, and ends the
    given-back rows. The campaign's expiry is still one event."""
    campaign = make_campaign(sender=sender, templates=[template], contacts=6)
    held = _claim(campaign, 2, "holder")
    Campaign.objects.filter(pk=campaign.pk).update(valid_until=timezone.now())
    errors: list[BaseException] = []
    # The campaign row held elsewhere for a moment: a's expiry waits there with its rows
    # expired but not committed.
    locked, release = threading.Event(), threading.Event()
    holder = in_thread(_hold_campaign_row(campaign.pk, locked, release), errors)
    assert locked.wait(10)
    a = in_thread(lambda: gate.expire_campaign(campaign.pk), errors)
    _wait_until(lambda: waiting_for_locks() == 1, timeout=10)
    assert queue.release(held) == 2  # back to queued, as a worker that drops the campaign does
    b = in_thread(lambda: gate.expire_campaign(campaign.pk), errors)
    _wait_until(lambda: waiting_for_locks() == 2, timeout=10)  # b waits behind a's rows
    release.set()
    for thread in (holder, a, b):
        thread.join(timeout=30)
    assert errors == []

    rows = OutboundMessage.objects.filter(campaign=campaign)
    assert rows.filter(status=S.EXPIRED).count() == 6
    campaign.refresh_from_db()
    assert campaign.expired == 6 and campaign.status == Campaign.Status.COMPLETED
    assert _reported(EventType.MESSAGE_EXPIRED) == _once_each(rows)
    assert _reported(EventType.CAMPAIGN_EXPIRED) == {campaign.pk: 1}


def test_a_claim_that_expires_rows_of_a_campaign_past_its_deadline_reports_it_once(
    sql_path, sender, template
):
    """A claim after the deadline (the sender's waker claims ahead between two of the feeder's
    looks at the deadline) expires what it took; the expiry that ends the rest does not
    report the campaign again."""
    campaign = make_campaign(sender=sender, templates=[template], contacts=8)
    Campaign.objects.filter(pk=campaign.pk).update(valid_until=timezone.now())
    campaign.refresh_from_db()
    rules = gate.CampaignRules(campaign.pk, valid_until=campaign.valid_until)
    assert _claim_screened(rules, 3, "waker") == []
    rows = OutboundMessage.objects.filter(campaign=campaign)
    assert rows.filter(status=S.EXPIRED, error_detail=gate.EXPIRED_DETAIL).count() == 3
    assert _reported(EventType.CAMPAIGN_EXPIRED) == {campaign.pk: 1}

    assert gate.expire_campaign(campaign.pk) == 5
    assert gate.expire_due_campaigns() == 0
    campaign.refresh_from_db()
    assert campaign.expired == 8 and campaign.status == Campaign.Status.COMPLETED
    assert _reported(EventType.CAMPAIGN_EXPIRED) == {campaign.pk: 1}
    assert sum(_reported(EventType.MESSAGE_EXPIRED).values()) == 8


def test_workers_and_maintenance_expiring_one_campaign_at_once_report_it_once(
    sql_path, sender, template
):
    """Four workers that held rows when the deadline passed give them back a few at a time,
    claim (the screen expires) and expire, while maintenance expires due campaigns: every
    row ends expired once, and the campaign's expiry is one event."""
    campaign = make_campaign(sender=sender, templates=[template], contacts=240)
    in_hand = {f"w{k}": _claim(campaign, 30, f"w{k}") for k in range(4)}
    Campaign.objects.filter(pk=campaign.pk).update(valid_until=timezone.now())
    campaign.refresh_from_db()
    rules = gate.CampaignRules(campaign.pk, valid_until=campaign.valid_until)
    start = threading.Barrier(5)
    errors: list[BaseException] = []

    def steps(name: str) -> list[Callable[[], object]]:
        def claim() -> None:
            _claim_screened(rules, 7, name)

        held = in_hand[name]
        gives_back = [lambda part=held[i : i + 10]: queue.release(part) for i in (0, 10, 20)]
        expire = lambda: gate.expire_campaign(campaign.pk)  # noqa: E731
        return [step for give_back in gives_back for step in (claim, give_back, expire)]

    def worker(name: str) -> None:
        # As the sender's feeder runs them: a deadlock between two expiries (each locks rows
        # the other's next statement wants) rolls one back, and it is tried again.
        backoff = Backoff(f"worker {name}", base=0.01)
        start.wait(10)
        for step in steps(name):
            retry_transient(step, backoff=backoff)

    def maintenance() -> None:
        backoff = Backoff("maintenance", base=0.01)
        start.wait(10)
        for _ in range(10):
            retry_transient(gate.expire_due_campaigns, backoff=backoff)

    threads = [in_thread(lambda n=name: worker(n), errors) for name in in_hand]
    threads.append(in_thread(maintenance, errors))
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    gate.expire_campaign(campaign.pk)  # whatever the last give-back left

    rows = OutboundMessage.objects.filter(campaign=campaign)
    assert rows.filter(status=S.EXPIRED).count() == 240
    campaign.refresh_from_db()
    assert campaign.expired == 240 and campaign.status == Campaign.Status.COMPLETED
    assert _reported(EventType.MESSAGE_EXPIRED) == _once_each(rows)
    assert _reported(EventType.CAMPAIGN_EXPIRED) == {campaign.pk: 1}


def test_a_campaign_whose_rows_all_went_is_never_reported_expired(sender, template):
    campaign = make_campaign(sender=sender, templates=[template], contacts=3)
    OutboundMessage.objects.filter(campaign=campaign).update(status=S.ACCEPTED)
    Campaign.objects.filter(pk=campaign.pk).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    assert gate.expire_due_campaigns() == 0
    assert gate.expire_campaign(campaign.pk) == 0
    assert _reported(EventType.CAMPAIGN_EXPIRED) == {}


def test_a_campaign_reported_before_the_mark_existed_is_not_reported_again(sender, template):
    """The migration marks campaigns the old rule (a row expired by the campaign's deadline)
    had already reported: a row given back to one later is reported, the campaign is not."""
    from django.apps import apps

    migration = importlib.import_module("campaigns.migrations.0015_campaign_expired_reported_at")
    campaign = make_campaign(sender=sender, templates=[template], contacts=3)
    (held,) = _claim(campaign, 1, "holder")
    until = timezone.now()
    Campaign.objects.filter(pk=campaign.pk).update(valid_until=until)
    assert gate.expire_campaign(campaign.pk) == 2
    Campaign.objects.filter(pk=campaign.pk).update(expired_reported_at=None)  # as before it
    OutboxEvent.objects.all().delete()
    MessageEventLog.objects.all().delete()

    migration.mark_reported(apps, None)
    assert Campaign.objects.get(pk=campaign.pk).expired_reported_at == until
    assert queue.release([held]) == 1
    assert gate.expire_campaign(campaign.pk) == 1
    assert _reported(EventType.MESSAGE_EXPIRED) == {held.id: 1}
    assert _reported(EventType.CAMPAIGN_EXPIRED) == {}
