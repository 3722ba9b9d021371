"""Housekeeping any worker may run at any time (every step is idempotent SQL)."""

from __future__ import annotations

import logging

from django.conf import settings

from campaigns.models import Campaign
from messaging import queue
from messaging.services import complete_if_finished, start_due_campaigns

logger = logging.getLogger(__name__)


def run_maintenance() -> dict[str, int]:
    """Start due campaigns, recover dead workers' claims, reconcile unknowns, complete."""
    started = start_due_campaigns()
    expired = queue.recover_expired_leases(lease_seconds=settings.SENDER_LEASE_SECONDS)
    reconciled = queue.reconcile_unknown(
        window_seconds=settings.SENDER_RECONCILE_SECONDS, policy=settings.SENDER_UNKNOWN_POLICY
    )
    completed = 0
    for campaign_id in Campaign.objects.filter(status=Campaign.Status.RUNNING).values_list(
        "pk", flat=True
    ):
        completed += complete_if_finished(campaign_id=campaign_id)
    if expired or reconciled:
        logger.warning("maintenance: %d expired claims, %d unknown reconciled", expired, reconciled)
    return {
        "started": len(started),
        "expired": expired,
        "reconciled": reconciled,
        "completed": completed,
    }


def active_sender_ids() -> list[int]:
    """Sender numbers with a running campaign: the ones that need a sender loop."""
    return list(
        Campaign.objects.filter(status=Campaign.Status.RUNNING)
        .values_list("sender_id", flat=True)
        .distinct()
    )
