"""Injected errors: the configured fractions (seeded) and the HTTP status of each code."""

from __future__ import annotations

import pytest

from tests.simulator.payloads import template_message

SENDS = 2000


def test_error_fractions_match_the_configuration(fresh_simulator, http):
    sim = fresh_simulator
    sim.configure(mps=100_000, error_rates={"131000": 0.10, "http503": 0.05}, seed=7)
    statuses = [
        http.post(
            sim.messages_url("1065"),
            headers=sim.auth_headers,
            json=template_message(callback=f"out:{n}"),
        ).status_code
        for n in range(SENDS)
    ]
    # Binomial standard deviations are about 13 and 10; the bounds are 5 of them wide.
    assert 135 <= statuses.count(500) <= 265
    assert 50 <= statuses.count(503) <= 150
    stats = sim.stats()
    assert stats["errors"] == {"131000": statuses.count(500), "http503": statuses.count(503)}
    assert (
        stats["accepted"]
        == statuses.count(200)
        == SENDS - stats["errors"]["131000"] - (stats["errors"]["http503"])
    )


def test_same_seed_gives_the_same_error_sequence(fresh_simulator, http):
    sim = fresh_simulator
    runs = []
    for _ in range(2):
        sim.configure(mps=100_000, error_rates={"131000": 0.3}, seed=99)
        runs.append(
            [
                http.post(
                    sim.messages_url("1065"), headers=sim.auth_headers, json=template_message()
                ).status_code
                for _ in range(40)
            ]
        )
    assert runs[0] == runs[1]
    assert 200 in runs[0]
    assert 500 in runs[0]


@pytest.mark.parametrize(
    ("code", "http_status"),
    [
        (130429, 400),
        (131000, 500),
        (133004, 503),
        (2, 503),
        (190, 401),
        (0, 401),
        (368, 403),
        (131031, 403),
        (132001, 404),
        (131048, 400),
        (131056, 400),
    ],
)
def test_injected_code_comes_with_metas_http_status(fresh_simulator, http, code, http_status):
    sim = fresh_simulator
    sim.configure(error_rates={str(code): 1.0})
    response = http.post(
        sim.messages_url("1065"), headers=sim.auth_headers, json=template_message()
    )
    assert response.status_code == http_status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith(f"(#{code})")
    assert error["error_data"]["details"]
    assert sim.stats()["accepted"] == 0


@pytest.mark.parametrize(
    ("pseudo", "http_status"), [("http500", 500), ("http503", 503), ("http429", 429)]
)
def test_bare_http_errors_have_no_json_body(fresh_simulator, http, pseudo, http_status):
    sim = fresh_simulator
    sim.configure(error_rates={pseudo: 1.0})
    response = http.post(
        sim.messages_url("1065"), headers=sim.auth_headers, json=template_message()
    )
    assert response.status_code == http_status
    with pytest.raises(ValueError):
        response.json()
