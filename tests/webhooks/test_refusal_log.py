"""A refused webhook writes one warning line, and a flood of them one line per window."""

import logging

import pytest

from tests.webhooks.payloads import post

pytestmark = pytest.mark.django_db


def _warnings(caplog):
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_one_refused_webhook_writes_exactly_one_warning_line(client, caplog):
    with caplog.at_level(logging.INFO):
        assert post(client, b"{}", signature="sha256=00").status_code == 403
    lines = _warnings(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "bad or missing signature" in lines[0].getMessage()


def test_a_flood_is_one_line_per_window_that_counts_the_rest(client, caplog, fresh_refusal_log):
    clock = [1000.0]
    fresh_refusal_log.clock = lambda: clock[0]
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(5):
                assert post(client, b"{}", signature="sha256=00").status_code == 403
            assert post(client, b"not json").status_code == 400
            assert len(_warnings(caplog)) == 1
            clock[0] += fresh_refusal_log.window  # the window is over: the next one logs
            assert post(client, b"{}", signature="").status_code == 403
    finally:
        fresh_refusal_log.clock = __import__("time").monotonic
    lines = [r.getMessage() for r in _warnings(caplog)]
    assert len(lines) == 2
    assert "(and 5 more refused in the last 10 s)" in lines[1]


def test_an_oversized_body_is_a_413_with_one_line(client, caplog, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    with caplog.at_level(logging.INFO):
        assert post(client, b"x" * 200).status_code == 413
    lines = [r.getMessage() for r in _warnings(caplog)]
    assert len(lines) == 1 and "DATA_UPLOAD_MAX_MEMORY_SIZE" in lines[0], lines
