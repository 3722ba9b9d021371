"""Message status events delivered from the event log (messaging/integrations/events/log.py):
a transaction still running holds later entries back, a failed POST moves its batch to the
outbox with the same event ids and later events follow it there, a subscription reads from
when it was switched on."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from messaging.integrations.events import delivery
from messaging.integrations.events import log as event_log
from messaging.integrations.events.delivery import deliver_subscription
from messaging.integrations.events.publish import publish_message_statuses
from messaging.integrations.models import EventLogCursor, EventSubscription, OutboxEvent
from messaging.models import OutboundMessage
from messaging.models import OutboundStatus as S
from tests.engine.conftest import make_campaign

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def rows(sender, template) -> list[int]:
    campaign = make_campaign(sender=sender, templates=[template], contacts=4)
    ids = list(OutboundMessage.objects.filter(campaign=campaign).order_by("id").values_list("pk"))
    return [i for (i,) in ids]


def _subscribe(receiver, **fields) -> EventSubscription:
    return EventSubscription.objects.create(name="crm", url=receiver.url, secret="s", **fields)


def _publish(moves: list[tuple[int, int]]) -> None:
    with transaction.atomic():
        publish_message_statuses(moves)


def _statuses(receiver) -> dict[int, list[str]]:
    seen: dict[int, list[str]] = {}
    for event in receiver.events():
        seen.setdefault(event["data"]["message_id"], []).append(event["data"]["status"])
    return seen


def _drain(sub: EventSubscription, **kwargs) -> int:
    sent = 0
    for _ in range(100):  # bounded: every call delivers or finds nothing
        result = deliver_subscription(sub, **kwargs)
        if not result.delivered:
            return sent
        sent += result.delivered
    raise AssertionError("delivery did not come to an end")


def _writer() -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=False
    )


def test_a_running_older_transaction_holds_later_entries_back_and_order_holds(receiver, rows):
    """A takes its transaction id first; B writes `delivered` of a message and commits; A
    then writes `read` of the same message (a later id, an older xid). Until A ends, B's entry
    waits; then both go, delivered before read."""
    sub = _subscribe(receiver)
    message = rows[0]
    a, b = _writer(), _writer()
    try:
        a.execute("SELECT pg_current_xact_id()")  # A's xid, older than B's
        b.execute(event_log.WRITE, [[message], [S.DELIVERED], 1])
        b.commit()
        assert _drain(sub) == 0  # B's entry is behind A, still running
        assert delivery.due_subscriptions() == []
        a.execute(event_log.WRITE, [[message], [S.READ], 1])
        a.commit()
    finally:
        a.close()
        b.close()
    assert delivery.due_subscriptions() == [sub]
    assert _drain(sub) == 2
    assert _statuses(receiver) == {message: ["delivered", "read"]}
    assert delivery.backlog() == 0


def test_a_failed_post_moves_its_batch_to_the_outbox_and_later_events_follow(receiver, rows):
    sub = _subscribe(receiver, max_batch=3)
    first, second = rows[0], rows[1]
    _publish([(first, S.ACCEPTED), (second, S.ACCEPTED), (first, S.SENT), (second, S.SENT)])
    t0 = timezone.now()
    receiver.status = 503
    result = deliver_subscription(sub, now=t0)
    assert result.failed == 3 and result.retry_in
    moved = list(OutboxEvent.objects.filter(subscription=sub).order_by("id"))
    assert [e.attempts for e in moved] == [1, 1, 1]
    tried = receiver.requests[0]["headers"]["X-Wacampaigns-Event-Ids"].split(",")
    assert [e.event_id for e in moved] == tried and all(i.startswith("evt_m") for i in tried)
    # While the outbox retries, new log events go behind it, in order.
    _publish([(first, S.DELIVERED), (second, S.DELIVERED), (first, S.READ)])
    for second_ in range(0, 61, 5):  # a minute of a down receiver, on an injected clock
        assert deliver_subscription(sub, now=t0 + timedelta(seconds=second_)).delivered == 0
    assert sub.events.filter(state=OutboxEvent.State.PENDING).count() == 7
    receiver.status = 200
    receiver.requests.clear()
    later = max(sub.events.values_list("next_attempt_at", flat=True)) + timedelta(seconds=1)
    assert _drain(sub, now=later) == 7
    assert _statuses(receiver) == {
        first: ["accepted", "sent", "delivered", "read"],
        second: ["accepted", "sent", "delivered"],
    }
    assert [e["id"] for e in receiver.events()][:3] == tried  # the same ids, de-duplicable
    assert delivery.backlog() == 0
    # Back on the log once the outbox is empty.
    _publish([(second, S.READ)])
    assert _drain(sub) == 1 and not sub.events.filter(state=OutboxEvent.State.PENDING).exists()


def test_a_subscription_reads_from_when_it_was_switched_on(receiver, rows):
    sub = _subscribe(receiver, active=False)
    assert not EventLogCursor.objects.filter(subscription=sub).exists()
    EventSubscription.objects.create(name="other", url=receiver.url, secret="s")  # writes on
    _publish([(rows[0], S.SENT)])  # while `sub` is off
    sub.active = True
    sub.save()
    _publish([(rows[1], S.SENT)])
    assert _drain(sub) == 1
    assert list(_statuses(receiver)) == [rows[1]]


def test_a_batch_limit_splits_an_entry_and_types_not_wanted_are_skipped(receiver, rows):
    sub = _subscribe(receiver, max_batch=2, event_types=["message.read", "message.sent"])
    moves = [(r, S.SENT) for r in rows] + [(rows[0], S.DELIVERED), (rows[0], S.READ)]
    _publish(moves)
    assert _drain(sub) == 5
    assert len(receiver.requests) == 3
    ids = [e["id"] for e in receiver.events()]
    assert len(set(ids)) == 5
    assert _statuses(receiver)[rows[0]] == ["sent", "read"]


def test_a_partial_batch_waits_to_fill_until_its_oldest_event_is_old_enough(
    receiver, rows, settings
):
    """A steady stream goes in full batches: fewer events than a batch wait (the wait is
    measured on the database's clock: an hour here, so the test never races it); a full
    batch goes at once; with no wait, the rest goes."""
    settings.EVENTS_BATCH_WAIT_SECONDS = 3600
    sub = _subscribe(receiver, max_batch=3)
    _publish([(rows[0], S.SENT), (rows[1], S.SENT)])
    waiting = deliver_subscription(sub)
    assert waiting.delivered == 0 and 3500 < (waiting.fill_in or 0) <= 3600
    assert receiver.requests == []
    _publish([(rows[2], S.SENT), (rows[3], S.SENT)])
    assert deliver_subscription(sub).delivered == 3  # full: no wait
    assert deliver_subscription(sub).delivered == 0  # one left, young
    settings.EVENTS_BATCH_WAIT_SECONDS = 0
    assert deliver_subscription(sub).delivered == 1
    assert list(_statuses(receiver)) == rows


def test_the_wait_after_a_batch_counts_every_ready_entry_left():
    """Two ready entries of 150 events (5 and 3 ms old): after 100 went, 200 are left, a
    whole batch; after 250, the second entry's last 50 are left and wait until it is old
    enough; after all 300, a whole wait; an entry not below xmin is not ready."""
    plan = event_log.Plan(xmin=100, candidates=[[1, 10, 150, 5], [2, 11, 150, 3], [3, 100, 9, 1]])
    assert plan.fill_wait(100, 0.1) == 0.0
    assert plan.fill_wait(100, 0.1, taken=100) == 0.0
    assert plan.fill_wait(100, 0.1, taken=250) == pytest.approx(0.097)
    assert plan.fill_wait(100, 0.1, taken=300) == 0.1
    assert plan.fill_wait(400, 0.1) == pytest.approx(0.095)


def test_a_batch_that_ends_with_its_entry_leaves_nothing_behind(receiver, rows, settings):
    """A batch that takes exactly an entry's last event passes the entry: nothing counts as
    pending and, with batches waiting to fill, the next events still go. An entry whose
    statuses the subscription does not want is passed too."""
    settings.EVENTS_BATCH_WAIT_SECONDS = 3600
    sub = _subscribe(receiver, max_batch=2, event_types=["message.sent"])
    _publish([(rows[0], S.SENT), (rows[1], S.SENT)])
    assert deliver_subscription(sub).delivered == 2
    assert delivery.backlog() == 0
    _publish([(rows[2], S.READ)])  # not wanted
    _publish([(rows[2], S.SENT), (rows[3], S.SENT)])
    assert _drain(sub) == 2
    assert delivery.backlog() == 0
    assert list(_statuses(receiver)) == rows
