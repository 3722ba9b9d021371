"""The shared Redis ledger of a messaging limit: admissions made by workers whose claims have
not committed yet (so PostgreSQL cannot show them) are never lost when the ledger is built
from PostgreSQL, by several workers at once or after Redis was away."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from messaging.policy import budget
from tests import factories
from tests.concurrency import in_thread
from tests.policy.helpers import phones

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2027, 1, 6, 10, 0, tzinfo=UTC)


@pytest.fixture
def ledger(redis_client, settings):
    settings.POLICY_BUDGET_WINDOW_SECONDS = 86400
    sender = factories.SenderFactory()
    return budget.Ledger(f"portfolio:test{sender.pk}", 50, (sender.pk,))


def test_a_rebuild_after_redis_was_away_keeps_what_other_workers_admitted(ledger):
    """Another machine admitted 50 numbers through Redis (its claim not committed yet); this
    process admitted from PostgreSQL while it could not reach Redis, so it has the ledger
    rebuilt: the rebuild must add what PostgreSQL knows, not drop the other machine's 50."""
    ledgers = budget.ledgers()
    first = ledgers.admit(ledger, phones("+35191000", 50), NOW, judging=[])
    assert len(first.admitted) == 50
    budget._missed_by_redis.add(ledger.key)
    try:
        later = ledgers.admit(ledger, phones("+35192000", 10), NOW, judging=[])
    finally:
        budget._missed_by_redis.discard(ledger.key)
    assert later.admitted == set()
    assert later.next_free is not None


def test_workers_building_the_ledger_at_once_admit_no_more_than_the_limit(ledger, redis_client):
    """Eight workers meet an unbuilt ledger at the same moment, each with numbers of its own,
    round after round: whoever builds it, and however often, the numbers admitted in total
    never pass the limit (a second build once erased the first worker's admissions)."""
    workers = 8
    for round_number in range(30):
        redis_client.delete(f"wac:budget:{ledger.key}", f"wac:budget:{ledger.key}:seeded")
        start = threading.Barrier(workers)
        admitted: list[set[str]] = []
        errors: list[BaseException] = []

        def admit(worker: int, round_number: int = round_number) -> None:
            numbers = phones(f"+351{round_number:02d}{worker}", 20)
            start.wait(timeout=30)
            admitted.append(budget.ledgers().admit(ledger, numbers, NOW, judging=[]).admitted)

        threads = [in_thread(lambda w=w: admit(w), errors) for w in range(workers)]
        for thread in threads:
            thread.join(timeout=60)
        assert not errors
        assert len(admitted) == workers
        assert sum(len(numbers) for numbers in admitted) == ledger.limit, round_number
