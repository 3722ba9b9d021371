"""The system checks refuse cluster settings that would run a sender slice twice."""

from __future__ import annotations

from messaging.checks import check_cluster_timing


def test_the_project_settings_pass():
    assert check_cluster_timing(None) == []


def test_a_timeout_not_below_retry_is_refused(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 120, "retry": 120}
    assert [e.id for e in check_cluster_timing(None)] == ["messaging.E001"]


def test_a_slice_longer_than_the_timeout_is_refused(settings):
    settings.SENDER_SLICE_SECONDS = 55
    assert [e.id for e in check_cluster_timing(None)] == ["messaging.E002"]


def test_an_unknown_policy_name_is_refused(settings):
    settings.SENDER_UNKNOWN_POLICY = "retry"
    assert [e.id for e in check_cluster_timing(None)] == ["messaging.E003"]
