"""The automatic template winner (off by default; `Campaign.winner_measure` turns it on).

A campaign with several templates sends its first `winner_test_share` % split by weight. Once
that share is out, the campaign pauses (a planned pause, no alert) until either every template
has `winner_min_delivered` delivered messages and the two-proportion test of
`campaigns.results.insight.compare` (the one staff see on the page) names a better template
at 95 % confidence, which then gets every still-queued row (`services.promote_template`, the
staff action's service), or `winner_wait_minutes` pass without a verdict, when the rest goes
out as split. Either way the decision, with its figures, is written on the campaign and in
its admin history, and the campaign resumes. A decision can come before the share is out too.

`check_winners` runs from the watchdog every minute; each check reads the campaign's rows
with two grouped queries (insight.by_template), only for campaigns still deciding.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.results import insight
from messaging import services

logger = logging.getLogger(__name__)
Status = Campaign.Status
WINNER_PAUSE_REASON = services.WINNER_PAUSE_REASON


def deciding() -> list[int]:
    """Campaigns whose winner is still to be decided."""
    return list(
        Campaign.objects.exclude(winner_measure="")
        .filter(winner_decided_at__isnull=True, status__in=(Status.RUNNING, Status.PAUSED))
        .values_list("pk", flat=True)
    )


def check_winners(*, now: datetime | None = None) -> int:
    """Check every deciding campaign; returns how many decided now."""
    decided = 0
    for campaign_id in deciding():
        try:
            decided += check_winner(campaign_id=campaign_id, now=now) is not None
        except Exception:  # one campaign's trouble must not stop the others' checks
            logger.exception("template winner check of campaign %s failed", campaign_id)
    return decided


def _figures(result: insight.TemplateResult, measure: str) -> str:
    hits = result.read if measure == Campaign.WinnerMeasure.READ else result.replied
    rate = hits / result.delivered if result.delivered else 0.0
    return f"{result.template.name} {hits:,}/{result.delivered:,} = {rate:.1%}"


def check_winner(*, campaign_id: int, now: datetime | None = None) -> str | None:
    """One campaign's check; the decision written, or None while it waits."""
    now = now or timezone.now()
    campaign = Campaign.objects.get(pk=campaign_id)
    measure = campaign.winner_measure
    if not measure or campaign.winner_decided_at is not None:
        return None
    paused_for_test = (
        campaign.status == Status.PAUSED and campaign.pause_reason == WINNER_PAUSE_REASON
    )
    if campaign.status != Status.RUNNING and not paused_for_test:
        return None  # staff or the engine paused it: their pause, not ours to lift
    results = insight.by_template(campaign)
    if len(results) < 2:
        return _decide(campaign, "Only one template: nothing to compare.", paused_for_test)
    comparison = insight.compare(results, measure)
    sampled = all(r.delivered >= campaign.winner_min_delivered for r in results)
    figures = "; ".join(_figures(r, measure) for r in results)
    if comparison is not None and comparison.better is not None and sampled:
        moved = services.promote_template(
            campaign_id=campaign.pk, template_id=comparison.better.template.pk
        )
        text = (
            f"Automatic winner {comparison.better.template} by {measure} ({figures}). "
            f"{comparison.sentence} {moved:,} queued messages moved to it."
        )
        return _decide(campaign, text, paused_for_test)
    waiting_since = campaign.winner_waiting_since
    if waiting_since is not None and now - waiting_since >= timedelta(
        minutes=campaign.winner_wait_minutes
    ):
        reason = comparison.sentence if comparison else ""
        if not sampled:
            reason = f"fewer than {campaign.winner_min_delivered:,} delivered per template"
        text = (
            f"No template winner by {measure} after {campaign.winner_wait_minutes} minutes "
            f"({figures}; {reason}); the rest goes out as split."
        )
        return _decide(campaign, text, paused_for_test)
    test_rows = campaign.total * campaign.winner_test_share / 100
    if campaign.status == Status.RUNNING and campaign.sent + campaign.failed >= test_rows:
        with transaction.atomic():
            services.pause_campaign(campaign_id=campaign.pk, reason=WINNER_PAUSE_REASON)
            Campaign.objects.filter(pk=campaign.pk).update(winner_waiting_since=now)
        logger.info("campaign %s: test share sent, waiting for a template winner", campaign.pk)
    return None


def _decide(campaign: Campaign, text: str, resume: bool) -> str:
    from django.contrib.admin.models import CHANGE, LogEntry

    with transaction.atomic():
        Campaign.objects.filter(pk=campaign.pk).update(
            winner_decided_at=timezone.now(), winner_decision=text[:500]
        )
        if resume:
            try:
                services.resume_campaign(campaign_id=campaign.pk)
            except services.TransitionError as exc:  # a failed token: staff resume it later
                text = f"{text} Not resumed: {exc}"
                Campaign.objects.filter(pk=campaign.pk).update(winner_decision=text[:500])
        owner = campaign.created_by_id
        if owner is not None:
            # The page's "Decisions" list reads the admin history; its entry needs a user:
            # the campaign's owner, with the text saying it was automatic.
            LogEntry.objects.log_actions(
                user_id=owner,
                queryset=Campaign.objects.filter(pk=campaign.pk),
                action_flag=CHANGE,
                change_message=text,
                single_object=True,
            )
    logger.info("campaign %s: %s", campaign.pk, text)
    return text
