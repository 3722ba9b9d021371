"""Dropped connections: before processing nothing is accepted, after accepting it is."""

from __future__ import annotations

import pytest
import requests

from tests.simulator.payloads import template_message


def test_reset_before_processing_accepts_nothing(fresh_simulator, http):
    sim = fresh_simulator
    sim.configure(reset_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        http.post(sim.messages_url("1065"), headers=sim.auth_headers, json=template_message())
    stats = sim.stats()
    assert stats["resets_before"] == 1
    assert stats["accepted"] == 0
    assert stats["callbacks"]["distinct"] == 0


def test_reset_after_accept_counts_the_message_and_still_sends_its_webhooks(
    fresh_simulator, http, receiver
):
    sim = fresh_simulator
    sim.configure(
        reset_after_accept_rate=1.0,
        webhook_url=receiver.url,
        webhook_delay_ms=10,
        delivered_rate=0.0,
        read_rate=0.0,
    )
    with pytest.raises(requests.ConnectionError):
        http.post(
            sim.messages_url("1065"),
            headers=sim.auth_headers,
            json=template_message(callback="out:77"),
        )
    stats = sim.stats()
    assert stats["resets_after_accept"] == 1
    assert stats["accepted"] == 1
    assert stats["callbacks"]["exactly_once"] == 1
    [status] = receiver.wait_for_statuses(1)
    assert status["status"] == "sent"
    assert status["biz_opaque_callback_data"] == "out:77"


def test_a_retry_after_an_ambiguous_reset_shows_up_as_a_duplicate(fresh_simulator, http):
    sim = fresh_simulator
    sim.configure(reset_after_accept_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        http.post(
            sim.messages_url("1065"),
            headers=sim.auth_headers,
            json=template_message(callback="out:5"),
        )
    sim.configure(reset_after_accept_rate=0.0)
    http.post(
        sim.messages_url("1065"), headers=sim.auth_headers, json=template_message(callback="out:5")
    )
    callbacks = sim.stats()["callbacks"]
    assert callbacks["more_than_once"] == 1
    assert callbacks["duplicates"] == {"out:5": 2}


def test_reset_fraction_is_roughly_the_configured_one(fresh_simulator, http):
    sim = fresh_simulator
    sim.configure(mps=100_000, reset_rate=0.1, reset_after_accept_rate=0.1, seed=3)
    outcomes = {"ok": 0, "reset": 0}
    for n in range(400):
        try:
            http.post(
                sim.messages_url("1065"),
                headers=sim.auth_headers,
                json=template_message(callback=f"out:{n}"),
            )
            outcomes["ok"] += 1
        except requests.ConnectionError:
            outcomes["reset"] += 1
    stats = sim.stats()
    assert stats["resets_before"] + stats["resets_after_accept"] == outcomes["reset"]
    assert 20 <= stats["resets_before"] <= 70
    assert 15 <= stats["resets_after_accept"] <= 65
    assert stats["accepted"] == outcomes["ok"] + stats["resets_after_accept"]
