"""System checks for settings that would silently break the engine's guarantees."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import Error, register

from messaging.evidence import POLICIES


@register()
def check_cluster_timing(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Error]:
    """django-q2 hands a task out again after `retry` seconds even if it still runs, so a
    sender slice must end (slice + one HTTP read timeout) within `timeout`, and `timeout` must
    be below `retry` (docs/engine-notes.md §1: the classic duplicate execution)."""
    cluster = settings.Q_CLUSTER
    timeout, retry = cluster.get("timeout"), cluster.get("retry")
    errors = []
    if timeout is None or retry is None or timeout >= retry:
        errors.append(
            Error(
                f"Q_CLUSTER timeout ({timeout}) must be set and below retry ({retry})",
                hint="A task still running after `retry` seconds is started a second time.",
                id="messaging.E001",
            )
        )
    longest_slice = settings.SENDER_SLICE_SECONDS + settings.WHATSAPP_READ_TIMEOUT
    if timeout is not None and longest_slice >= timeout:
        errors.append(
            Error(
                f"SENDER_SLICE_SECONDS + WHATSAPP_READ_TIMEOUT ({longest_slice:g} s) must be "
                f"below Q_CLUSTER timeout ({timeout} s)",
                hint="A slice killed by its timeout leaves claimed rows in doubt.",
                id="messaging.E002",
            )
        )
    if settings.SENDER_UNKNOWN_POLICY not in POLICIES:
        errors.append(
            Error(
                f"SENDER_UNKNOWN_POLICY is {settings.SENDER_UNKNOWN_POLICY!r}",
                hint='Use "evidence" (the default), "resend" or "hold".',
                id="messaging.E003",
            )
        )
    return errors
