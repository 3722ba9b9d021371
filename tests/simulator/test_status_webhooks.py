"""Status webhooks: signed, in Meta's shape, with the configured fractions and disorder."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter

from tests.engine.conftest import _wait_until
from tests.simulator.payloads import template_message

RANK = {"sent": 1, "delivered": 2, "read": 3}


def _send(sim, http, count: int) -> list[str]:
    wamids = []
    for n in range(count):
        response = http.post(
            sim.messages_url("1065"),
            headers=sim.auth_headers,
            json=template_message(to=f"55119{n:08d}", callback=f"out:{n}"),
        )
        assert response.status_code == 200
        wamids.append(response.json()["messages"][0]["id"])
    return wamids


def test_webhooks_are_signed_with_the_app_secret(fresh_simulator, http, receiver):
    sim = fresh_simulator
    sim.configure(webhook_url=receiver.url, webhook_delay_ms=10)
    _send(sim, http, 5)
    receiver.wait_for_statuses(5)
    for headers, body in receiver.posts:
        expected = hmac.new(sim.app_secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Hub-Signature-256"], f"sha256={expected}")
        wrong = hmac.new(b"another-secret", body, hashlib.sha256).hexdigest()
        assert headers["X-Hub-Signature-256"] != f"sha256={wrong}"


def test_statuses_have_metas_shape_and_echo_the_callback_data(fresh_simulator, http, receiver):
    sim = fresh_simulator
    sim.configure(
        webhook_url=receiver.url,
        webhook_delay_ms=10,
        delivered_rate=1.0,
        read_rate=1.0,
        read_skips_delivered_rate=0.0,
        mps_overrides={"1065": 1000},
    )
    wamids = _send(sim, http, 10)
    statuses = receiver.wait_for_statuses(30)
    payload = json.loads(receiver.posts[0][1])
    assert payload["object"] == "whatsapp_business_account"
    change = payload["entry"][0]["changes"][0]
    assert change["field"] == "messages"
    assert change["value"]["metadata"]["phone_number_id"] == "1065"
    by_wamid: dict[str, list[dict]] = {}
    for status in statuses:
        by_wamid.setdefault(status["id"], []).append(status)
    assert set(by_wamid) == set(wamids)
    for n, wamid in enumerate(wamids):
        items = by_wamid[wamid]
        assert sorted(s["status"] for s in items) == ["delivered", "read", "sent"]
        assert {s["biz_opaque_callback_data"] for s in items} == {f"out:{n}"}
        assert {s["recipient_id"] for s in items} == {f"55119{n:08d}"}
        assert all(s["timestamp"].isdigit() for s in items)
        # Pricing rides on exactly one status, as in v24+.
        [priced] = [s for s in items if "pricing" in s]
        assert priced["pricing"]["pricing_model"] == "PMP"


def test_delivered_and_read_fractions_follow_the_configuration(fresh_simulator, http, receiver):
    sim = fresh_simulator
    sim.configure(
        webhook_url=receiver.url,
        webhook_delay_ms=5,
        delivered_rate=0.9,
        read_rate=0.5,
        read_skips_delivered_rate=0.2,
        mps=100_000,
        seed=11,
    )
    _send(sim, http, 300)
    statuses = receiver.wait_for_statuses(1)
    # Wait until the webhook pipeline is empty, then count.
    _wait_until_idle(sim)
    statuses = receiver.statuses()
    kinds = Counter(s["status"] for s in statuses)
    assert kinds["sent"] == 300
    read = {s["id"] for s in statuses if s["status"] == "read"}
    delivered = {s["id"] for s in statuses if s["status"] == "delivered"}
    assert 110 <= len(read) <= 190
    assert 240 <= len(delivered | read) <= 295
    # Some read messages skipped delivered (read instantly); most did not.
    assert 0 < len(read - delivered) < len(read) / 2


def test_webhook_error_rate_accepts_then_fails_by_webhook(fresh_simulator, http, receiver):
    sim = fresh_simulator
    sim.configure(webhook_url=receiver.url, webhook_delay_ms=5, webhook_error_rates={"131049": 1.0})
    [wamid] = _send(sim, http, 1)
    [status] = receiver.wait_for_statuses(1)
    assert status["id"] == wamid
    assert status["status"] == "failed"
    assert status["errors"][0]["code"] == 131049
    assert status["errors"][0]["title"]
    assert "pricing" not in status
    assert sim.stats()["accepted"] == 1


def test_duplicates_arrive_when_enabled_and_not_otherwise(fresh_simulator, http, receiver):
    sim = fresh_simulator
    sim.configure(webhook_url=receiver.url, webhook_delay_ms=5, delivered_rate=0, read_rate=0)
    _send(sim, http, 10)
    _wait_until_idle(sim)
    assert set(Counter(s["id"] for s in receiver.statuses()).values()) == {1}

    sim.reset()
    receiver.posts.clear()
    sim.configure(webhook_duplicate_rate=1.0)
    _send(sim, http, 10)
    _wait_until_idle(sim)
    assert set(Counter(s["id"] for s in receiver.statuses()).values()) == {2}


def test_shuffle_delivers_statuses_out_of_order(fresh_simulator, http, receiver):
    sim = fresh_simulator
    sim.configure(
        webhook_url=receiver.url,
        webhook_delay_ms=30,
        webhook_shuffle=True,
        delivered_rate=1.0,
        read_rate=1.0,
        read_skips_delivered_rate=0.0,
        mps=100_000,
    )
    _send(sim, http, 30)
    statuses = receiver.wait_for_statuses(90)
    last_rank: dict[str, int] = {}
    out_of_order = 0
    for status in statuses:
        rank = RANK[status["status"]]
        if rank < last_rank.get(status["id"], 0):
            out_of_order += 1
        last_rank[status["id"]] = max(rank, last_rank.get(status["id"], 0))
        by_rank = {s["status"]: int(s["timestamp"]) for s in statuses if s["id"] == status["id"]}
        # Event timestamps still follow the real order, as Meta's do.
        assert by_rank["sent"] <= by_rank["delivered"] <= by_rank["read"]
    assert out_of_order > 0


def test_failed_posts_are_retried(fresh_simulator, http, receiver):
    sim = fresh_simulator
    receiver.fail_first = 2
    sim.configure(
        webhook_url=receiver.url,
        webhook_delay_ms=5,
        delivered_rate=0,
        read_rate=0,
        webhook_batch_size=100,
    )
    _send(sim, http, 3)
    assert len(receiver.wait_for_statuses(3)) == 3
    webhooks = sim.stats()["webhooks"]
    assert webhooks["post_retries"] >= 2
    assert webhooks["statuses_delivered"] == 3


def _wait_until_idle(sim, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        webhooks = sim.stats()["webhooks"]
        done = webhooks["statuses_delivered"] + webhooks["statuses_dropped"]
        if webhooks["pending"] == 0 and done == webhooks["statuses_queued"]:
            return
        time.sleep(0.05)
    raise AssertionError(f"webhooks still pending: {sim.stats()['webhooks']}")


def test_reset_drops_statuses_planned_before_it(fresh_simulator, http, receiver):
    sim = fresh_simulator
    sim.configure(webhook_url=receiver.url, webhook_delay_ms=500, delivered_rate=0, read_rate=0)
    _send(sim, http, 5)
    sim.reset()
    _send(sim, http, 2)
    _wait_until_idle(sim)
    assert len(receiver.statuses()) == 2
    assert sim.stats()["webhooks"]["statuses_delivered"] == 2


def test_stats_count_the_posts_under_way_which_a_reset_lets_finish(fresh_simulator, http, receiver):
    """What the test fixtures wait for before the database is flushed: no webhook reaches the
    app once a test is over."""
    sim = fresh_simulator
    sim.configure(webhook_url=receiver.url, webhook_delay_ms=10, webhook_batch_size=1)
    receiver.answering.clear()
    _send(sim, http, 3)
    _wait_until(lambda: sim.stats()["webhooks"]["in_flight"] >= 1)

    sim.reset(config=True)
    assert sim.stats()["webhooks"]["in_flight"] >= 1
    receiver.answering.set()

    _wait_until(lambda: sim.stats()["webhooks"]["in_flight"] == 0)
    assert sim.stats()["webhooks"]["pending"] == 0
    assert sim.stats()["config"]["webhook_url"] is None  # nothing more is sent
