"""The demo's closed loop: this app's webhook endpoint served on loopback for the simulator,
a drain applying what it stores, and the figures of the final report.

The webhooks take the production path (signature check, store, drain, status ladder, inbound
and opt-out); on SQLite that path runs its portable SQL (messaging/sql_paths.py).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.db import connection
from django.db.models import Count
from django.urls import reverse

from campaigns.models import Campaign, Contact
from messaging.errors import classify
from messaging.models import OutboundMessage, OutboundStatus
from webhooks.drain import drain, pending_exists
from webhooks.models import InboundMessage

DEMO_USERNAME = "demo"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None  # one line per webhook POST would bury the progress bar


class WebhookReceiver:
    """Serves the app on 127.0.0.1 (a free port) and drains stored webhooks on a thread."""

    def __init__(self) -> None:
        self._server = ThreadedWSGIServer(("127.0.0.1", 0), _QuietHandler)
        self._server.set_app(WSGIHandler())
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="demo-http", daemon=True),
            threading.Thread(target=self._drain, name="demo-drain", daemon=True),
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{reverse('whatsapp-webhook')}"

    def __enter__(self) -> WebhookReceiver:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=30)

    def _drain(self) -> None:
        try:
            drain(until_empty=False, batch_size=50, idle_sleep=0.2, stop=self._stop.is_set)
        finally:
            connection.close()

    def settle(self, pending_at_simulator: Any, *, timeout: float = 60.0) -> bool:
        """Wait until the simulator has posted everything and every body is applied."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pending_at_simulator() == 0 and not pending_exists():
                time.sleep(0.5)  # the body posted last may still be in its transaction
                if not pending_exists():
                    return True
            time.sleep(0.3)
        return False


@dataclass(frozen=True)
class Funnel:
    total: int
    accepted: int
    delivered: int
    read: int
    replied: int
    failed: int
    failed_by_code: list[tuple[int | None, str, int]]
    opted_out: int


def funnel(campaign: Campaign) -> Funnel:
    campaign.refresh_from_db()
    by_code = (
        OutboundMessage.objects.filter(campaign=campaign, status=OutboundStatus.FAILED)
        .values_list("error_code")
        .annotate(n=Count("id"))
        .order_by("-n")
    )
    return Funnel(
        total=campaign.total,
        accepted=campaign.sent,
        delivered=campaign.delivered,
        read=campaign.read,
        replied=InboundMessage.objects.filter(campaign=campaign)
        .values("user_phone")
        .distinct()
        .count(),
        failed=campaign.failed,
        failed_by_code=[(code, classify(code).description, n) for code, n in by_code],
        opted_out=Contact.objects.filter(
            opted_out_at__isnull=False, messages__campaign=campaign
        ).count(),
    )


def ensure_demo_user() -> tuple[str, str]:
    """The demo's staff user with a fresh random password (shown once by the caller)."""
    password = secrets.token_urlsafe(12)
    user, _ = get_user_model().objects.get_or_create(username=DEMO_USERNAME)
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    return DEMO_USERNAME, password
