"""Campaign admin: the list with counters, state-change actions, detail page, rejections CSV."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from campaigns import admin_wizard, selectors
from campaigns.admin import campaign_page
from campaigns.admin.audiences import CampaignAudienceViews
from campaigns.admin.test_send import test_send_view
from campaigns.admin_helpers import (
    confirm_action,
    permitted_object_or_404,
    report_each,
    require_permission,
)
from campaigns.csv_export import csv_download
from campaigns.forms import CampaignAdminForm
from campaigns.models import Campaign, CampaignTemplate
from campaigns.results import figures
from messaging import selectors as queue_selectors
from messaging import services as campaign_services
from messaging.services import TransitionError

# verb -> (service, past tense shown to staff)
TRANSITIONS: dict[str, tuple[Any, str]] = {
    "start": (campaign_services.start_campaign, "Started"),
    "pause": (campaign_services.pause_campaign, "Paused"),
    "resume": (campaign_services.resume_campaign, "Resumed"),
    "cancel": (campaign_services.cancel_campaign, "Cancelled"),
    "draft": (campaign_services.return_to_draft, "Moved back to draft"),
}


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.1%}"


def _refusal(verb: str) -> Any:
    def describe(campaign: Campaign, exc: Exception) -> str:
        campaign.refresh_from_db(fields=["status"])
        return f"Could not {verb} “{campaign.name}”: it is {campaign.get_status_display()}."

    return describe


class CampaignTemplateInline(admin.TabularInline[CampaignTemplate, Campaign]):
    model = CampaignTemplate
    readonly_fields = ("template_link", "weight", "position")
    fields = readonly_fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[CampaignTemplate]:
        return super().get_queryset(request).select_related("template")

    @admin.display(description="template")
    def template_link(self, link: CampaignTemplate) -> str:
        url = reverse("admin:campaigns_messagetemplate_change", args=[link.template_id])
        return format_html('<a href="{}">{}</a> ({})', url, link.template, link.template.status)


@admin.register(Campaign)
class CampaignAdmin(CampaignAudienceViews, admin.ModelAdmin[Campaign]):
    # Compact cells (rate over count) so the key columns fit a 1440 px screen with both
    # sidebars open, and a 390 px phone (campaigns/static/campaigns/admin.css hides the rest).
    list_display = [
        "name_column",
        "status_column",
        "progress_bar",
        "delivered_column",
        "read_column",
        "replied_column",
        "failed_column",
        "start_column",
    ]
    list_display_links = ["name_column"]
    list_filter = ["status", "sender"]
    search_fields = ["name"]
    list_select_related = ["sender"]
    date_hierarchy = None
    ordering = ["-id"]
    actions = [
        "start_selected",
        "pause_selected",
        "resume_selected",
        "cancel_selected",
        "draft_selected",
        "duplicate_selected",
    ]
    inlines = [CampaignTemplateInline]
    fieldsets = [
        (None, {"fields": ["name", "status", "pause_reason", "sender", "priority"]}),
        ("Schedule", {"fields": ["start_at", "valid_until", "started_at", "finished_at"]}),
        (
            "Canary and circuit breaker",
            {
                "fields": [
                    ("canary_percent", "canary_rate"),
                    ("max_failure_rate", "max_opt_out_rate"),
                    ("canary_state", "canary_size", "canary_done_at"),
                    "canary_verdict",
                ],
                "description": "The canary is picked when the campaign first runs; the "
                "thresholds are shares (0.2 = 20 %), empty for the POLICY_* settings.",
            },
        ),
        (
            "Audience",
            {"fields": [("total", "rejected_count", "duplicate_count", "suppressed_count")]},
        ),
        (
            "Template test (automatic winner, messaging/winner.py)",
            {
                "fields": [
                    "winner_measure",
                    ("winner_test_share", "winner_min_delivered", "winner_wait_minutes"),
                    "winner_decision",
                ],
                "description": "Off unless a measure is chosen. The first share (%) goes out "
                "split; the rest waits until every template has the minimum delivered and one "
                "is better with 95% confidence (it then gets the rest), or the wait (minutes) "
                "ends (the rest goes out as split).",
            },
        ),
        ("Audit", {"fields": ["created_by", "created_at", "updated_at"]}),
    ]
    # Everything but the name, priority and validity is the engine's or a service's to change.
    readonly_fields = [
        "status",
        "pause_reason",
        "sender",
        "start_at",
        "started_at",
        "finished_at",
        "progress_bar",
        "total",
        "sent",
        "delivered",
        "read",
        "failed",
        "delivered_column",
        "read_column",
        "failed_column",
        "rejected_count",
        "duplicate_count",
        "suppressed_count",
        "winner_decision",
        "created_by",
        "created_at",
        "updated_at",
        "canary_state",
        "canary_size",
        "canary_done_at",
        "canary_verdict",
    ]
    change_form_template = "admin/campaigns/campaign/change_form.html"
    form = CampaignAdminForm

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and (obj.canary_state or obj.started_at is not None):
            # The canary is picked at the first start: changing it later would mean nothing.
            fields += ["canary_percent", "canary_rate"]
        return fields

    @admin.display(description="canary verdict")
    def canary_verdict(self, campaign: Campaign) -> str:
        report = campaign.canary_report or {}
        return " · ".join(str(report[k]) for k in ("verdict", "resumed") if report.get(k)) or "-"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        return selectors.campaigns_for_list(super().get_queryset(request))

    # --- columns -------------------------------------------------------------------------

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        # Evaluates the page once (the template reuses the cache): +2 queries for any page.
        figures.attach_page_counts(changelist.result_list)
        return changelist

    @admin.display(description="templates")
    def template_names(self, campaign: Campaign) -> str:
        return ", ".join(str(link.template) for link in selectors.template_links(campaign))

    @admin.display(description="name", ordering="name")
    def name_column(self, campaign: Campaign) -> str:
        return format_html(
            '{}<span class="wac-sub">{} · {}</span>',
            campaign.name,
            campaign.sender.display_number,
            self.template_names(campaign),
        )

    @admin.display(description="status", ordering="status")
    def status_column(self, campaign: Campaign) -> str:
        return format_html(
            '{}<span class="wac-sub wac-cut" title="{}">{}</span>',
            campaign.get_status_display(),
            campaign.pause_reason,
            campaign.pause_reason,
        )

    @admin.display(description="progress")
    def progress_bar(self, campaign: Campaign) -> str:
        f = figures.figures(campaign)
        return format_html(
            '<progress class="wac-bar" value="{}" max="{}"></progress> '
            '<span class="wac-rate">{}</span><span class="wac-count">{} / {}</span>',
            f.done,
            max(f.queued, 1),
            f"{f.fraction:.0%}",
            f.done,
            f.queued,
        )

    def _rate_cell(self, rate: float | None, count: int) -> str:
        return format_html(
            '<span class="wac-rate">{}</span><span class="wac-count">{}</span>',
            _percent(rate),
            f"{count:,}",
        )

    @admin.display(description="delivered", ordering="delivered")
    def delivered_column(self, campaign: Campaign) -> str:
        f = figures.figures(campaign)
        return self._rate_cell(f.delivered_rate, f.delivered)

    @admin.display(description="read", ordering="read")
    def read_column(self, campaign: Campaign) -> str:
        f = figures.figures(campaign)
        return self._rate_cell(f.read_rate, f.read)

    @admin.display(description="replied")
    def replied_column(self, campaign: Campaign) -> str:
        f = figures.figures(campaign)
        return self._rate_cell(f.reply_rate, f.replied)

    @admin.display(description="failed", ordering="failed")
    def failed_column(self, campaign: Campaign) -> str:
        f = figures.figures(campaign)
        return self._rate_cell(f.failure_rate, f.failed)

    @admin.display(description="start", ordering="start_at")
    def start_column(self, campaign: Campaign) -> str:
        when = campaign.started_at or campaign.start_at
        if when is None:
            return "–"
        return format_html(
            '<span class="wac-wide">{}</span>',
            timezone.localtime(when).strftime("%b %d, %H:%M"),
        )

    # --- list actions --------------------------------------------------------------------

    def _transition(self, request: HttpRequest, queryset: QuerySet[Campaign], verb: str) -> int:
        service, past = TRANSITIONS[verb]
        return report_each(
            self,
            request,
            list(queryset.prefetch_related(None).select_related(None).only("pk", "name", "status")),
            verb=past,
            call=lambda campaign: service(campaign_id=campaign.pk),
            refusals=(TransitionError,),
            describe_refusal=_refusal(verb),
        )

    @admin.action(description="Start selected campaigns now", permissions=["change"])
    def start_selected(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._transition(request, queryset, "start")

    @admin.action(description="Pause selected campaigns", permissions=["change"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._transition(request, queryset, "pause")

    @admin.action(description="Resume selected campaigns", permissions=["change"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._transition(request, queryset, "resume")

    @admin.action(description="Cancel selected campaigns…", permissions=["change"])
    def cancel_selected(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> HttpResponseBase | None:
        if not request.POST.get("post"):
            return confirm_action(
                self,
                request,
                queryset.prefetch_related(None),
                action="cancel_selected",
                title="Cancel campaigns?",
                question="Cancel these campaigns? Every message not yet sent is cancelled; "
                "this cannot be undone.",
            )
        self._transition(request, queryset, "cancel")
        return None

    @admin.action(
        description="Move selected scheduled campaigns back to draft", permissions=["change"]
    )
    def draft_selected(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._transition(request, queryset, "draft")

    @admin.action(description="Duplicate selected campaigns as drafts", permissions=["add"])
    def duplicate_selected(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset.prefetch_related(None).select_related(None).only("pk", "name"):
            copy = campaign_services.duplicate_campaign(
                campaign_id=campaign.pk, created_by_id=request.user.pk
            )
            url = reverse("admin:campaigns_campaign_change", args=[copy.pk])
            self.message_user(
                request,
                format_html(
                    "Duplicated “{}” as <a href='{}'>“{}”</a> ({} messages).",
                    campaign.name,
                    url,
                    copy.name,
                    copy.total,
                ),
                messages.SUCCESS,
            )

    # --- pages ---------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "add/confirm/<str:token>/",
                view(self.wizard_confirm_view),
                name="campaigns_campaign_add_confirm",
            ),
            path(
                "add/confirm/<str:token>/test-send/",
                view(lambda request, token: test_send_view(self, request, token)),
                name="campaigns_campaign_add_test_send",
            ),
            path(
                "<path:object_id>/rejections.csv",
                view(self.rejections_view),
                name="campaigns_campaign_rejections",
            ),
            path(
                "<path:object_id>/do/<str:verb>/",
                view(self.transition_view),
                name="campaigns_campaign_transition",
            ),
            *self.audience_urls(),
            *(
                path(route, view(partial(page_view, self)), name=name)
                for route, page_view, name in campaign_page.view_urls(self)
            ),
            *super().get_urls(),
        ]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        require_permission(self, request, "add")
        return admin_wizard.upload_step(self, request)

    def wizard_confirm_view(self, request: HttpRequest, token: str) -> HttpResponseBase:
        require_permission(self, request, "add")
        return admin_wizard.confirm_step(self, request, token)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        campaign = self.get_object(request, unquote(object_id))
        if campaign is not None and campaign_page.has_started(campaign):
            # History from here on: a page to read and act on, never a form to save.
            if not self.has_view_permission(request, campaign):
                raise PermissionDenied
            if request.method != "GET":
                return HttpResponseNotAllowed(["GET"])
            return campaign_page.results_page(self, request, campaign)
        extra: dict[str, Any] = dict(extra_context or {})
        if campaign is not None:
            extra.update(
                queue_counts=[
                    (label, n)
                    for label, n in queue_selectors.queue_counts(campaign_id=campaign.pk).items()
                    if n
                ],
                transitions=campaign_page.permitted_transitions(self, request, campaign),
                plan_wanted=campaign.status not in campaign_page.FINAL_STATUSES,
                queue_url=reverse("admin:messaging_outboundmessage_changelist")
                + f"?campaign__id__exact={campaign.pk}",
                **self.audience_context(campaign),
            )
        return super().change_view(request, object_id, form_url, extra)

    def has_delete_permission(self, request: HttpRequest, obj: Campaign | None = None) -> bool:
        # A campaign that sent anything is the record of what was sent: never deleted.
        if obj is not None and campaign_page.has_started(obj):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # Bulk delete would cascade over millions of queue rows of campaigns that have sent.
        actions.pop("delete_selected", None)
        return actions

    def rejections_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        campaign = permitted_object_or_404(self, request, object_id, "view")

        return csv_download(
            f"campaign-{campaign.pk}-rejections.csv",
            ["row_number", "value", "reason"],
            selectors.rejection_rows(campaign_id=campaign.pk),
        )

    def transition_view(self, request: HttpRequest, object_id: str, verb: str) -> HttpResponseBase:
        """The change page's buttons: POST acts; cancel asks first on GET."""
        campaign = permitted_object_or_404(self, request, object_id, "change")
        if verb not in TRANSITIONS:
            raise Http404(f"No campaign action {verb!r}.")
        if request.method != "POST":
            if verb != "cancel":
                return HttpResponseNotAllowed(["POST"])
            return confirm_action(
                self,
                request,
                Campaign.objects.filter(pk=campaign.pk),
                action="cancel_selected",
                title="Cancel campaign?",
                question="Cancel this campaign? Every message not yet sent is cancelled; "
                "this cannot be undone.",
            )
        self._transition(request, Campaign.objects.filter(pk=campaign.pk), verb)
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
