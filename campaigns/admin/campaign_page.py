"""The campaign page once a campaign has started: a page to read and act on, not a model form.

Its parts: the live block (refreshed every 2 s from `live_json`), the chart (`chart_svg`), the
per-template comparison and failures by code (`details`, refreshed every 30 s), and the
actions the user may take. Figures come from campaigns.results; state changes from
messaging.services.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.models import LogEntry
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    JsonResponse,
)
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from campaigns.admin_helpers import permitted_object_or_404, require_permission
from campaigns.models import Campaign
from campaigns.plan_block import PLAN_FRESH_SECONDS, campaign_plan, plan_block
from campaigns.results import chart, figures, insight, live
from campaigns.results import dashboard as dashboard_selectors
from messaging import services
from messaging.services import TransitionError

# verb -> the status it moves to; shown only when the move is allowed and the user may change.
VERB_TARGETS = (
    ("start", Campaign.Status.RUNNING),
    ("pause", Campaign.Status.PAUSED),
    ("resume", Campaign.Status.RUNNING),
    ("cancel", Campaign.Status.CANCELLED),
    ("draft", Campaign.Status.DRAFT),
)
FINAL_STATUSES = (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED)
LIVE_INTERVAL_MS = 2000
DETAILS_INTERVAL_MS = 30000


def has_started(campaign: Campaign) -> bool:
    """From here on a campaign is history: no form, no Save, no Delete."""
    return campaign.started_at is not None or campaign.sent > 0 or campaign.failed > 0


def permitted_transitions(
    model_admin: admin.ModelAdmin[Campaign], request: HttpRequest, campaign: Campaign
) -> list[str]:
    if not model_admin.has_change_permission(request, campaign):
        return []
    return [
        verb
        for verb, status in VERB_TARGETS
        if campaign.can_transition_to(status)
        and (verb != "resume" or campaign.status == Campaign.Status.PAUSED)
        and (verb != "start" or campaign.status != Campaign.Status.PAUSED)
    ]


def results_page(model_admin: Any, request: HttpRequest, campaign: Campaign) -> TemplateResponse:
    """`model_admin` is the CampaignAdmin (with its audience views' context)."""
    snapshot = live.snapshot(campaign)
    display = snapshot["display"]
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": campaign.name,
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "original": campaign,
        "has_view_permission": True,
        "snapshot": snapshot,
        "display": display,
        "funnel_rows": [
            {
                "key": step["key"],
                "count": display[f"funnel.{step['key']}"],
                "of_previous": display[f"funnel.{step['key']}.of_previous"],
                "drop": display[f"funnel.{step['key']}.drop"],
                "definition": figures.DEFINITIONS[step["key"]],
            }
            for step in snapshot["funnel"]
        ],
        "definitions": figures.DEFINITIONS,
        "transitions": permitted_transitions(model_admin, request, campaign),
        "has_change_permission": model_admin.has_change_permission(request, campaign),
        "has_add_permission": model_admin.has_add_permission(request),
        # Export and follow-up cohorts (campaigns/admin/audiences.py).
        **model_admin.audience_context(campaign),
        "templates": [link.template for link in campaign.template_links.all()],
        "decisions": LogEntry.objects.filter(
            content_type__app_label=opts.app_label,
            content_type__model=opts.model_name,
            object_id=str(campaign.pk),
        )
        .select_related("user")
        .order_by("-action_time")[:10],
        # The plan of what is left comes from `plan_fragment` once the page is shown.
        "plan_wanted": campaign.status not in FINAL_STATUSES,
        # Fetched again on this clock, so the live block's ETA follows a fresh plan.
        "plan_interval_ms": PLAN_FRESH_SECONDS * 1000,
        "live_interval_ms": LIVE_INTERVAL_MS,
        "details_interval_ms": DETAILS_INTERVAL_MS,
        "queue_url": reverse("admin:messaging_outboundmessage_changelist")
        + f"?campaign__id__exact={campaign.pk}",
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/campaigns/campaign/results.html", context)


def live_json(
    model_admin: admin.ModelAdmin[Campaign], request: HttpRequest, object_id: str
) -> JsonResponse:
    campaign = permitted_object_or_404(model_admin, request, object_id, "view")
    response = JsonResponse(live.snapshot(campaign))
    response["Cache-Control"] = "no-store"
    return response


def chart_svg(
    model_admin: admin.ModelAdmin[Campaign], request: HttpRequest, object_id: str
) -> HttpResponse:
    campaign = permitted_object_or_404(model_admin, request, object_id, "view")
    response = HttpResponse(chart.cached_svg(campaign), content_type="image/svg+xml")
    response["Cache-Control"] = "no-store"
    return response


def details(
    model_admin: admin.ModelAdmin[Campaign], request: HttpRequest, object_id: str
) -> TemplateResponse:
    campaign = permitted_object_or_404(model_admin, request, object_id, "view")
    per_template = insight.by_template(campaign)
    comparisons = [
        c for c in (insight.compare(per_template, m) for m in ("read rate", "reply rate")) if c
    ]
    context = {
        "original": campaign,
        "per_template": per_template,
        "comparisons": comparisons,
        "failures": insight.failures_by_code(campaign),
        "can_promote": model_admin.has_change_permission(request, campaign)
        and campaign.status not in live.FINAL,
    }
    return TemplateResponse(request, "admin/campaigns/campaign/results_details.html", context)


def promote(
    model_admin: admin.ModelAdmin[Campaign], request: HttpRequest, object_id: str
) -> HttpResponseBase:
    campaign = permitted_object_or_404(model_admin, request, object_id, "change")
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        template_id = int(request.POST.get("template", ""))
    except ValueError:
        messages.error(request, "Choose the template to send the rest with.")
        return redirect("admin:campaigns_campaign_change", campaign.pk)
    try:
        moved = services.promote_template(campaign_id=campaign.pk, template_id=template_id)
    except TransitionError as exc:
        messages.error(request, f"Not changed: {exc}.")
        return redirect("admin:campaigns_campaign_change", campaign.pk)
    template = campaign.templates.get(pk=template_id)
    reason = request.POST.get("reason", "").strip()[:300]
    decision = f"Sent the rest with {template} ({moved:,} queued messages moved)"
    if reason:
        decision += f": {reason}"
    model_admin.log_change(request, campaign, decision)
    messages.success(request, decision + ".")
    return redirect("admin:campaigns_campaign_change", campaign.pk)


def dashboard(model_admin: Any, request: HttpRequest) -> TemplateResponse:
    require_permission(model_admin, request, "view")
    opts = model_admin.model._meta
    rows = []
    for campaign in dashboard_selectors.active_campaigns():
        f = figures.figures(campaign)
        rows.append({"campaign": campaign, "figures": f})
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Operations dashboard",
        "opts": opts,
        "app_label": opts.app_label,
        "campaign_rows": rows,
        "senders": dashboard_selectors.senders_today(),
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/campaigns/dashboard.html", context)


def plan_fragment(
    model_admin: admin.ModelAdmin[Campaign], request: HttpRequest, object_id: str
) -> TemplateResponse:
    """The launch plan of what is left of a campaign (messaging.policy.plan), as the page's
    "Plan" block; fetched by the page after it is shown, so a big plan never delays it."""
    campaign = permitted_object_or_404(model_admin, request, object_id, "view")
    context = {"plan": plan_block(campaign_plan(campaign)), "left": has_started(campaign)}
    response = TemplateResponse(request, "admin/campaigns/campaign/plan.html", context)
    response["Cache-Control"] = "no-store"
    return response


def view_urls(model_admin: Any) -> list[tuple[str, Any, str]]:
    """(route, view, name) of this page's URLs, wrapped by the admin site."""
    return [
        ("dashboard/", dashboard, "campaigns_dashboard"),
        ("<path:object_id>/live.json", live_json, "campaigns_campaign_live"),
        ("<path:object_id>/chart.svg", chart_svg, "campaigns_campaign_chart"),
        ("<path:object_id>/details/", details, "campaigns_campaign_details"),
        ("<path:object_id>/promote/", promote, "campaigns_campaign_promote"),
        ("<path:object_id>/plan/", plan_fragment, "campaigns_campaign_plan"),
    ]
