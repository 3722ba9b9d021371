"""Admin for the send queue (read-only, with the dead-letter re-drive) and the error table."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html

from campaigns.admin_helpers import CappedCountPaginator, confirm_action, require_permission
from messaging.errors import (
    ERROR_TABLE,
    HTTP_THROTTLED_RULE,
    HTTP_TRANSIENT_RULE,
    UNKNOWN_RULE,
    Category,
)
from messaging.evidence import HELD_FOR_EVIDENCE
from messaging.models import NumberChange, OutboundMessage
from messaging.policy.optout import suppressed_numbers
from messaging.services import TransitionError, requeue_failed, requeueable


class ErrorCategoryFilter(admin.SimpleListFilter):
    """From the enum, not SELECT DISTINCT over the whole queue."""

    title = "error category"
    parameter_name = "error_category"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        held = (HELD_FOR_EVIDENCE, "in doubt, held: no webhooks for its number")
        return [(category.value, category.value) for category in Category] + [held]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[OutboundMessage]
    ) -> QuerySet[OutboundMessage]:
        if self.value():
            return queryset.filter(error_category=self.value())
        return queryset


@admin.register(OutboundMessage)
class OutboundMessageAdmin(admin.ModelAdmin[OutboundMessage]):
    # Compact: the error's code, category and detail share one cut cell so they stay on a
    # 1440 px screen (campaigns/static/campaigns/admin.css).
    list_display = [
        "id",
        "phone",
        "campaign_column",
        "status",
        "tries",
        "error_column",
        "when_column",
    ]
    list_filter = ["status", ErrorCategoryFilter]

    list_select_related = ["campaign", "template"]
    # Exact lookups on indexed columns only: the queue holds millions of rows.
    search_fields = ["=phone", "=wamid"]
    search_help_text = "Exact phone (E.164) or wamid."
    raw_id_fields = ["campaign", "contact", "template", "sender"]
    ordering = ["-id"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    actions = ["requeue_selected"]
    fieldsets = [
        (None, {"fields": ["campaign", "contact", "template", "sender", "phone", "priority"]}),
        (
            "State",
            {
                "fields": [
                    "status",
                    "attempts",
                    "lost_claims",
                    "next_attempt_at",
                    "claimed_at",
                    "claimed_by",
                ]
            },
        ),
        ("Outcome", {"fields": ["wamid", "error_code", "error_category", "error_detail"]}),
        (
            "Timeline",
            {
                "fields": [
                    "accepted_at",
                    "sent_at",
                    "delivered_at",
                    "read_at",
                    "failed_at",
                    "expired_at",
                ]
            },
        ),
        ("Payload", {"fields": ["parameters"], "classes": ["collapse"]}),
    ]
    change_list_template = "admin/messaging/outboundmessage/change_list.html"

    # The engine writes these rows; staff only look and re-drive.

    @admin.display(description="tries", ordering="attempts")
    def tries(self, obj: OutboundMessage) -> str:
        if not obj.lost_claims:
            return str(obj.attempts)
        # Claims lost with a dead worker are not tries (messaging.queue.recover_expired_leases).
        return format_html(
            '{}<span class="wac-sub" title="claims lost with a dead worker">+{} lost</span>',
            obj.attempts,
            obj.lost_claims,
        )

    @admin.display(description="campaign / template", ordering="campaign_id")
    def campaign_column(self, obj: OutboundMessage) -> str:
        return format_html(
            '<span class="wac-cut" title="{}">{}</span><span class="wac-sub">{}</span>',
            obj.campaign.name,
            obj.campaign.name,
            obj.template,
        )

    @admin.display(description="accepted", ordering="next_attempt_at")
    def when_column(self, obj: OutboundMessage) -> str:
        def short(at: Any) -> str:
            return timezone.localtime(at).strftime("%d %b %H:%M") if at else "–"

        return format_html(
            '{}<span class="wac-sub">next {}</span>',
            short(obj.accepted_at),
            short(obj.next_attempt_at),
        )

    @admin.display(description="error", ordering="error_code")
    def error_column(self, obj: OutboundMessage) -> str:
        if obj.error_code is None and not obj.error_detail:
            return "–"
        return format_html(
            '{} <span class="wac-muted">{}</span>'
            '<span class="wac-sub wac-cut" title="{}">{}</span>',
            obj.error_code if obj.error_code is not None else "",
            obj.error_category,
            obj.error_detail,
            obj.error_detail,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("messaging.change_outboundmessage")

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # The campaign page links here filtered by campaign.
        return lookup == "campaign__id__exact" or super().lookup_allowed(lookup, value, request)

    @admin.action(description="Re-queue failed/held messages…", permissions=["requeue"])
    def requeue_selected(
        self, request: HttpRequest, queryset: QuerySet[OutboundMessage]
    ) -> HttpResponseBase | None:
        eligible = queryset.filter(requeueable())
        if not request.POST.get("post"):
            return confirm_action(
                self,
                request,
                queryset.select_related(None),
                action="requeue_selected",
                title="Re-queue messages?",
                question="Put the failed and held messages among these back in the queue? "
                "They will be sent again while their campaign runs; others are left as they are. "
                "Held in-doubt messages may have reached the person already: re-sending one "
                "can deliver it twice." + _suppressed_warning(eligible),
            )
        by_campaign: dict[int, list[int]] = defaultdict(list)
        for campaign_id, pk in eligible.values_list("campaign_id", "pk").order_by():
            by_campaign[campaign_id].append(pk)
        requeued = 0
        for campaign_id, ids in by_campaign.items():
            try:
                requeued += requeue_failed(campaign_id=campaign_id, message_ids=ids)
            except TransitionError as exc:
                self.message_user(request, str(exc), messages.WARNING)
        if requeued:
            self.message_user(
                request,
                f"Re-queued {requeued} message(s) in {len(by_campaign)} campaign(s).",
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request, "None of the selected messages is failed or held.", messages.WARNING
            )
        return None

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "errors/",
                self.admin_site.admin_view(self.error_table_view),
                name="messaging_outboundmessage_errors",
            ),
            *super().get_urls(),
        ]

    def error_table_view(self, request: HttpRequest) -> TemplateResponse:
        require_permission(self, request, "view")
        rows = [
            (code, rule)
            for code, rule in sorted(ERROR_TABLE.items(), key=lambda i: (i[1].category, i[0]))
        ]
        fallbacks = [
            ("200–299 (permissions)", ERROR_TABLE[10]),
            ("HTTP 429, no code", HTTP_THROTTLED_RULE),
            ("HTTP 5xx or network error", HTTP_TRANSIENT_RULE),
            ("any other code", UNKNOWN_RULE),
        ]
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": "WhatsApp error table",
            "rows": rows,
            "fallbacks": fallbacks,
            "opts": opts,
            "app_label": opts.app_label,
        }
        return TemplateResponse(request, "admin/messaging/error_table.html", context)


def _suppressed_warning(eligible: QuerySet[OutboundMessage]) -> str:
    """The confirmation says how many of the rows go to numbers that opted out since."""
    count = eligible.filter(phone__in=suppressed_numbers()).count()
    if not count:
        return ""
    return (
        f" {count} of them are to numbers that have opted out: those stay as they are and "
        "will not be sent."
    )


@admin.register(NumberChange)
class NumberChangeAdmin(admin.ModelAdmin[NumberChange]):
    """The history of messaging limits, quality ratings and number statuses: who changed
    what, when (written by messaging.numbers only)."""

    list_display = ["changed_at", "subject", "field", "old", "new", "direction", "source", "detail"]
    list_filter = ["field", "source", "direction"]
    list_select_related = ["portfolio", "sender"]
    show_full_result_count = False

    @admin.display(description="portfolio or number")
    def subject(self, obj: NumberChange) -> str:
        return str(obj.portfolio) if obj.portfolio is not None else str(obj.sender)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
