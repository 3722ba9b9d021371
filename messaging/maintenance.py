"""Housekeeping any worker may run at any time (every step is idempotent SQL), and the
supervision loop shared by `run_sender` and the cluster's dispatcher."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from django.conf import settings
from django.db.models import Exists, Min, OuterRef, Q
from django.utils import timezone

from campaigns.models import Campaign
from messaging import evidence, queue, state_version
from messaging.models import PENDING_STATUSES, OutboundMessage
from messaging.policy import canary
from messaging.policy.gate import expire_due_campaigns, expire_due_rows
from messaging.services import complete_if_finished, start_due_campaigns

logger = logging.getLogger(__name__)

MAINTENANCE_INTERVAL = 15.0  # leases are 60 s and the reconcile window 10 min
# How often the list of active numbers is re-read when the state version cannot tell us.
POLL_WITHOUT_REDIS = 2.0
POLL_BACKSTOP = 10.0


def run_maintenance() -> dict[str, int]:
    """Start due campaigns, recover dead workers' claims, reconcile unknowns, complete."""
    started = start_due_campaigns()
    expire_due_campaigns()
    expire_due_rows()
    canary.check_running()  # verdicts that come with time (no webhook to trigger them)
    expired = queue.recover_expired_leases(lease_seconds=settings.SENDER_LEASE_SECONDS)
    reconciled = evidence.reconcile_unknown(
        window_seconds=settings.SENDER_RECONCILE_SECONDS, policy=settings.SENDER_UNKNOWN_POLICY
    )
    completed = 0
    for campaign_id in Campaign.objects.filter(status=Campaign.Status.RUNNING).values_list(
        "pk", flat=True
    ):
        completed += complete_if_finished(campaign_id=campaign_id)
    if expired or reconciled.resent or reconciled.held:
        logger.warning(
            "maintenance: %d expired claims; unknown rows: %d re-sent, %d newly held",
            expired,
            reconciled.resent,
            reconciled.held,
        )
    return {
        "started": len(started),
        "expired": expired,
        "reconciled": reconciled.resent,
        "held": reconciled.held,
        "completed": completed,
    }


def active_sender_ids() -> list[int]:
    """Sender numbers with a running campaign: the ones that need a sender loop.

    A transactional stream runs for good, so it counts only while it has rows to send (an
    enqueue bumps the state version, which brings its number back within a second).
    """
    has_pending = Exists(
        OutboundMessage.objects.filter(campaign_id=OuterRef("pk"), status__in=PENDING_STATUSES)
    )
    return list(
        Campaign.objects.filter(status=Campaign.Status.RUNNING)
        .filter(~Q(kind=Campaign.Kind.TRANSACTIONAL) | has_pending)
        .values_list("sender_id", flat=True)
        .distinct()
    )


class Supervisor:
    """One tick: housekeeping when due, scheduled starts on time, the numbers to serve.

    The database is read only when the campaigns' state version moved (or on a slow timer),
    so an idle supervisor costs Redis GETs, not SQL.
    """

    def __init__(self) -> None:
        self.active: list[int] = []
        self.next_start_at: datetime | None = None
        self._seen_version: object = object()  # never equal to a version, not even None
        self._next_poll = 0.0
        self._next_maintenance = 0.0

    def tick(self) -> list[int]:
        now = time.monotonic()
        if now >= self._next_maintenance:
            run_maintenance()
            self._next_maintenance = now + MAINTENANCE_INTERVAL
        elif self.next_start_at is not None and timezone.now() >= self.next_start_at:
            start_due_campaigns()
        version = state_version.current()
        if version != self._seen_version or now >= self._next_poll:
            self.active = active_sender_ids()
            self.next_start_at = Campaign.objects.filter(
                status=Campaign.Status.SCHEDULED
            ).aggregate(at=Min("start_at"))["at"]
            self._seen_version = version
            self._next_poll = now + (POLL_WITHOUT_REDIS if version is None else POLL_BACKSTOP)
        return self.active

    @property
    def idle(self) -> bool:
        return not self.active and self.next_start_at is None
