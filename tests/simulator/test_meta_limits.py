"""Meta's limits beyond throughput: portfolio recipients, +1 marketing, per-user marketing cap,
and template / number quality webhooks sent on demand."""

from __future__ import annotations

import json
import time

import pytest

from messaging.simulator.harness import SimulatorError
from messaging.simulator.templates import demo_template, example_components
from tests.simulator.payloads import template_message

US = "12025550143"  # a US (+1, region US) number
CANADA = "14165550199"  # +1 too, but region CA: marketing still goes
BRAZIL = "5511987654321"


def _utility(to: str) -> dict:
    message = template_message(to=to)
    message["template"] = {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": example_components(demo_template("order_update")),
    }
    return message


def _code(response) -> int:
    return 0 if response.status_code == 200 else response.json()["error"]["code"]


def _send(sim, http, message, number: str = "1065") -> int:
    return _code(http.post(sim.messages_url(number), headers=sim.auth_headers, json=message))


def test_by_default_no_limit_refuses_anything(fresh_simulator, http):
    sim = fresh_simulator
    codes = [_send(sim, http, template_message(to=US)) for _ in range(3)]
    codes += [_send(sim, http, template_message(to=f"55119{n:08d}")) for n in range(20)]
    assert set(codes) == {0}


def test_portfolio_limit_counts_unique_recipients_across_its_numbers(fresh_simulator, http):
    sim = fresh_simulator
    sim.configure(portfolio_limit=3, portfolios={"n2": "default", "other": "p2"})
    first = [_send(sim, http, template_message(to=f"5511900000{n:03d}"), "1065") for n in range(3)]
    # The same recipients again cost nothing; a fourth one over the shared limit is refused on
    # the portfolio's other number too, while another portfolio has its own budget.
    again = _send(sim, http, template_message(to="5511900000000"), "n2")
    fourth = _send(sim, http, template_message(to="5511900000999"), "n2")
    other = _send(sim, http, template_message(to="5511900000999"), "other")
    assert (first, again, fourth, other) == ([0, 0, 0], 0, 131048, 0)
    stats = sim.stats()
    assert stats["errors"] == {"131048": 1}
    assert stats["portfolio_recipients"] == {"default": 3, "p2": 1}


def test_portfolio_limit_frees_as_the_window_moves_and_its_code_is_configurable(
    fresh_simulator, http
):
    sim = fresh_simulator
    sim.configure(portfolio_limit=1, portfolio_window_s=0.5, portfolio_limit_code=130472)
    assert _send(sim, http, template_message(to="5511900000001")) == 0
    assert _send(sim, http, template_message(to="5511900000002")) == 130472
    deadline = time.monotonic() + 10
    while _send(sim, http, template_message(to="5511900000002")) != 0:
        assert time.monotonic() < deadline, "the window never moved"
        time.sleep(0.1)


def test_marketing_to_us_numbers_fails_with_131049_but_utility_and_canada_go(fresh_simulator, http):
    sim = fresh_simulator
    sim.configure(us_marketing_blocked=True)
    assert _send(sim, http, template_message(to=US)) == 131049
    assert _send(sim, http, template_message(to="+" + US)) == 131049
    assert _send(sim, http, _utility(US)) == 0
    assert _send(sim, http, template_message(to=CANADA)) == 0
    assert _send(sim, http, template_message(to=BRAZIL)) == 0
    assert sim.stats()["errors"] == {"131049": 2}


def test_per_user_marketing_cap_refuses_the_next_marketing_message_only(fresh_simulator, http):
    sim = fresh_simulator
    sim.configure(marketing_cap=2)
    codes = [_send(sim, http, template_message(to=BRAZIL)) for _ in range(3)]
    # Utility templates are not capped, and another user has a cap of their own.
    assert codes == [0, 0, 131049]
    assert _send(sim, http, _utility(BRAZIL)) == 0
    assert _send(sim, http, template_message(to="5511900000777")) == 0


def test_limit_refusals_can_arrive_as_failed_status_webhooks(fresh_simulator, http, receiver):
    sim = fresh_simulator
    sim.configure(
        us_marketing_blocked=True,
        limit_errors_via="webhook",
        webhook_url=receiver.url,
        webhook_delay_ms=10,
    )
    response = http.post(
        sim.messages_url("1065"), headers=sim.auth_headers, json=template_message(to=US)
    )
    assert response.status_code == 200
    wamid = response.json()["messages"][0]["id"]
    (status,) = receiver.wait_for_statuses(1)
    assert (status["id"], status["status"]) == (wamid, "failed")
    assert status["errors"][0]["code"] == 131049
    assert sim.stats()["limit_failures"] == {"131049": 1}


def _events(receiver, count: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with receiver.lock:
            bodies = [json.loads(body) for _, body in receiver.posts]
        changes = [c for b in bodies for e in b["entry"] for c in e["changes"]]
        if len(changes) >= count:
            return changes
        time.sleep(0.05)
    raise AssertionError(f"expected {count} account webhooks")


def test_a_paused_template_sends_its_webhook_and_then_refuses_sends(
    fresh_simulator, http, receiver
):
    sim = fresh_simulator
    sim.configure(webhook_url=receiver.url)
    sim.template_event(name="spring_promo", language="en_US", status="PAUSED", reason="LOW_QUALITY")
    (change,) = _events(receiver, 1)
    assert change["field"] == "message_template_status_update"
    assert change["value"]["event"] == "PAUSED"
    assert change["value"]["message_template_name"] == "spring_promo"
    assert change["value"]["reason"] == "LOW_QUALITY"
    assert _send(sim, http, template_message()) == 132015
    templates = http.get(sim.templates_url(), headers=sim.auth_headers).json()["data"]
    paused = [t for t in templates if t["name"] == "spring_promo" and t["language"] == "en_US"]
    assert paused[0]["status"] == "PAUSED"
    # A reset with config=True gives the template back as it started.
    sim.reset(config=True)
    assert _send(sim, http, template_message()) == 0


def test_quality_and_number_webhooks_on_demand(fresh_simulator, receiver):
    sim = fresh_simulator
    sim.configure(webhook_url=receiver.url)
    sim.template_event(name="spring_promo", language="pt_BR", quality="RED")
    sim.number_event(event="FLAGGED", current_limit="TIER_250")
    quality, number = sorted(_events(receiver, 2), key=lambda c: c["field"])
    assert quality["field"] == "message_template_quality_update"
    assert quality["value"]["previous_quality_score"] == "GREEN"
    assert quality["value"]["new_quality_score"] == "RED"
    assert number["field"] == "phone_number_quality_update"
    assert number["value"]["event"] == "FLAGGED"
    assert number["value"]["current_limit"] == "TIER_250"
    assert sim.stats()["webhooks"]["events_delivered"] == 2


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"portfolio_limit": -1}, "must not be negative"),
        ({"marketing_cap_window_s": 0}, "must be positive"),
        ({"limit_errors_via": "carrier-pigeon"}, "limit_errors_via"),
    ],
)
def test_bad_limit_settings_are_refused_with_the_reason(fresh_simulator, patch, message):
    with pytest.raises(SimulatorError, match=message):
        fresh_simulator.configure(**patch)


def test_an_event_for_an_unknown_template_or_without_a_webhook_url_is_refused(fresh_simulator):
    sim = fresh_simulator
    with pytest.raises(SimulatorError, match="no template"):
        sim.template_event(name="nope", language="en_US", status="PAUSED")
    with pytest.raises(SimulatorError, match="no webhook_url"):
        sim.template_event(name="spring_promo", language="en_US", status="PAUSED")


def test_the_limits_are_set_from_the_command_line():
    from messaging.simulator.harness import start_simulator

    options = {
        "portfolio_limit": 250,
        "portfolio_window_s": 60,
        "portfolios": {"1065": "p1"},
        "us_marketing_blocked": True,
        "marketing_cap": 2,
        "limit_errors_via": "webhook",
    }
    with start_simulator(**options) as sim:
        config = sim.stats()["config"]
    assert {name: config[name] for name in options} == {
        **options,
        "portfolio_window_s": 60.0,
    }
