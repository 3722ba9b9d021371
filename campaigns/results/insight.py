"""Per-template comparison (with a two-proportion test said in words) and failures by error
code with Meta's title and the error table's explanation for staff."""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db.models import Count, Max, Q, Subquery

from campaigns.models import Campaign, MessageTemplate
from campaigns.results.figures import ratio
from messaging.errors import classify
from messaging.models import OutboundMessage, OutboundStatus

CONFIDENCE = 0.95


@dataclass(frozen=True)
class TemplateResult:
    template: MessageTemplate
    messages: int
    accepted: int
    delivered: int
    read: int
    replied: int
    failed: int
    unsent: int  # still plain queued: what a promotion would move

    @property
    def delivered_rate(self) -> float | None:
        return ratio(self.delivered, self.accepted)

    @property
    def read_rate(self) -> float | None:
        return ratio(self.read, self.delivered)

    @property
    def reply_rate(self) -> float | None:
        return ratio(self.replied, self.delivered)

    @property
    def failure_rate(self) -> float | None:
        return ratio(self.failed, self.messages)


def by_template(campaign: Campaign) -> list[TemplateResult]:
    """Two grouped queries over the campaign's rows (one for the outcomes, one for replies)."""
    from webhooks.models import InboundMessage

    rows = (
        OutboundMessage.objects.filter(campaign_id=campaign.pk)
        .values("template_id")
        .annotate(
            messages=Count("*"),
            accepted=Count("id", filter=Q(accepted_at__isnull=False)),
            delivered=Count("id", filter=Q(delivered_at__isnull=False)),
            read=Count("id", filter=Q(read_at__isnull=False)),
            failed=Count("id", filter=Q(status=OutboundStatus.FAILED)),
            unsent=Count("id", filter=Q(status=OutboundStatus.QUEUED)),
        )
        .order_by()
    )
    repliers = InboundMessage.objects.filter(campaign_id=campaign.pk).values("user_phone")
    replied = dict(
        OutboundMessage.objects.filter(campaign_id=campaign.pk, phone__in=Subquery(repliers))
        .values_list("template_id")
        .annotate(n=Count("*"))
        .order_by()
    )
    templates = {t.pk: t for t in campaign.templates.all()}
    results = [
        TemplateResult(
            template=templates.get(row["template_id"])
            or MessageTemplate.objects.get(pk=row["template_id"]),
            messages=row["messages"],
            accepted=row["accepted"],
            delivered=row["delivered"],
            read=row["read"],
            replied=replied.get(row["template_id"], 0),
            failed=row["failed"],
            unsent=row["unsent"],
        )
        for row in rows
    ]
    return sorted(results, key=lambda r: (r.template.name, r.template.language))


def two_proportion_p(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test; None when it cannot be computed
    (an empty group, or both rates 0 % or 100 %)."""
    if not n_a or not n_b:
        return None
    pooled = (hits_a + hits_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if spread == 0:
        return None
    z = (hits_a / n_a - hits_b / n_b) / spread
    return math.erfc(abs(z) / math.sqrt(2))


@dataclass(frozen=True)
class Comparison:
    measure: str  # "read rate" or "reply rate"
    better: TemplateResult | None  # None when no difference is shown
    sentence: str


def compare(results: list[TemplateResult], measure: str = "read rate") -> Comparison | None:
    """The best template against the runner-up on one measure, in words. None for < 2."""
    if len(results) < 2:
        return None
    hits = {"read rate": lambda r: r.read, "reply rate": lambda r: r.replied}[measure]
    ranked = sorted(results, key=lambda r: ratio(hits(r), r.delivered) or 0.0, reverse=True)
    best, runner = ranked[0], ranked[1]
    p = two_proportion_p(hits(best), best.delivered, hits(runner), runner.delivered)
    name_best, name_runner = best.template.name, runner.template.name
    if p is not None and p < 1 - CONFIDENCE:
        return Comparison(
            measure,
            best,
            f"{measure.capitalize()} is higher for {name_best} than for {name_runner} with "
            f"{CONFIDENCE:.0%} confidence (two-proportion test, p = {p:.3f}).",
        )
    detail = "too few delivered messages to test" if p is None else f"p = {p:.2f}"
    return Comparison(
        measure,
        None,
        f"No {measure} difference between {name_best} and {name_runner} at {CONFIDENCE:.0%} "
        f"confidence yet ({detail}).",
    )


@dataclass(frozen=True)
class FailureGroup:
    code: int | None
    count: int
    title: str  # Meta's title as it came with the error (the table's description otherwise)
    explanation: str  # what it means and what to do, from the error table
    category: str


def failures_by_code(campaign: Campaign) -> list[FailureGroup]:
    """One grouped query over the campaign's failed rows, largest group first."""
    rows = (
        OutboundMessage.objects.filter(campaign_id=campaign.pk, status=OutboundStatus.FAILED)
        .values_list("error_code")
        .annotate(n=Count("*"), title=Max("error_detail"))
        .order_by("-n", "error_code")
    )
    groups = []
    for code, n, title in rows:
        rule = classify(code)
        groups.append(
            FailureGroup(
                code=code,
                count=n,
                title=title or rule.description,
                explanation=rule.staff_hint or rule.description,
                category=str(rule.category),
            )
        )
    return groups
