"""System checks for the retention and suppression-hash settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register


@register(deploy=True)
def check_suppression_pepper(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Without its own pepper the suppression hash follows SECRET_KEY, and rotating the key
    would silently unsuppress every erased contact."""
    if settings.SUPPRESSION_HASH_PEPPER:
        return []
    return [
        Warning(
            "SUPPRESSION_HASH_PEPPER is not set: the suppression hash is derived from SECRET_KEY",
            hint="Set it (a long random value, never changed) before rotating SECRET_KEY.",
            id="campaigns.W001",
        )
    ]


@register()
def check_retention(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    names = (
        "RETENTION_WEBHOOK_BODY_DAYS",
        "RETENTION_STATUS_LOG_DAYS",
        "RETENTION_FINISHED_CAMPAIGN_DAYS",
    )
    return [
        Error(f"{name} must be at least 1 (days)", id="campaigns.E001")
        for name in names
        if getattr(settings, name) < 1
    ]
