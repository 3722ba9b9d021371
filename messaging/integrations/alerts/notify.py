"""Tell staff: Django's mail (ALERT_EMAILS, else staff with the receive_alerts permission) and
an optional Slack-compatible webhook (ALERT_CHAT_WEBHOOK_URL, `{"text": …}`)."""

from __future__ import annotations

import logging

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q

logger = logging.getLogger(__name__)


def recipients() -> list[str]:
    if settings.ALERT_EMAILS:
        return list(settings.ALERT_EMAILS)
    users = get_user_model().objects.filter(is_active=True, is_staff=True).exclude(email="")
    permitted = users.filter(
        Q(is_superuser=True)
        | Q(user_permissions__codename="receive_alerts")
        | Q(groups__permissions__codename="receive_alerts")
    )
    return sorted(set(permitted.values_list("email", flat=True)))


def notify(subject: str, text: str) -> None:
    """Best effort on each channel: one failing never stops the other."""
    to = recipients()
    if to:
        try:
            send_mail(f"[wacampaigns] {subject}", text, None, to)
        except Exception:
            logger.exception("alert e-mail failed: %s", subject)
    if settings.ALERT_CHAT_WEBHOOK_URL:
        try:
            requests.post(
                settings.ALERT_CHAT_WEBHOOK_URL, json={"text": f"{subject}\n{text}"}, timeout=5
            ).raise_for_status()
        except requests.RequestException:
            logger.exception("alert chat webhook failed: %s", subject)
