"""Admin for audiences: the campaign page's export and follow-up, contact lists, segments, and
"new draft campaign" from any of them or from a contact selection.

Thin: every draft goes through messaging.audiences (the import service), every download through
campaigns.csv_export.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from campaigns.admin_helpers import permitted_object_or_404, require_permission
from campaigns.csv_export import csv_download
from campaigns.forms import (
    AddToListForm,
    AudienceDraftForm,
    FollowUpForm,
    ListUploadForm,
    RescheduleForm,
)
from campaigns.models import Campaign, Contact, ContactList, Segment
from campaigns.segments import segment_contacts
from messaging import audiences
from messaging.campaign_import import Audience, CsvAudience, ImportResult
from messaging.cohorts import Outcome
from messaging.exports import EXPORT_HEADER, recipient_rows
from messaging.services import TransitionError, reschedule_campaign


def _report(result: ImportResult) -> str:
    return (
        f"{result.queued} queued, {result.rejected} rejected, {result.duplicates} duplicates, "
        f"{result.suppressed} suppressed"
    )


def _created(
    model_admin: admin.ModelAdmin[Any], request: HttpRequest, result: ImportResult
) -> HttpResponseRedirect:
    draft = result.campaign
    assert draft is not None
    model_admin.message_user(
        request,
        format_html(
            "Draft <a href='{}'>“{}”</a> created: {}. Review it, then start or schedule it.",
            reverse("admin:campaigns_campaign_change", args=[draft.pk]),
            draft.name,
            _report(result),
        ),
        messages.SUCCESS,
    )
    for rejection in result.rejections[:5]:
        model_admin.message_user(
            request,
            f"Row {rejection.row_number} ({rejection.value}): {rejection.reason}",
            messages.WARNING,
        )
    return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[draft.pk]))


def _page(
    model_admin: admin.ModelAdmin[Any], request: HttpRequest, template: str, **context: Any
) -> TemplateResponse:
    opts = model_admin.model._meta
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(
        request,
        template,
        {
            **model_admin.admin_site.each_context(request),
            "opts": opts,
            "app_label": opts.app_label,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "select_across": request.POST.get("select_across") == "1",
            **context,
        },
    )


def draft_action(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    action: str,
    audience: Callable[[], Audience],
    describe: str,
) -> HttpResponseBase | None:
    """The "new draft campaign" admin action: a form (name, sender, templates, priority and
    the policy fields, as the wizard's step 1), then the import service; errors (an empty
    audience, a template that cannot fill) are shown."""
    if not request.user.has_perm("campaigns.add_campaign"):
        raise PermissionDenied
    form = AudienceDraftForm(request.POST if "create_draft" in request.POST else None)
    if form.is_valid():
        try:
            result = audiences.draft_from_audience(
                audience=audience(),
                created_by=request.user,  # type: ignore[arg-type]
                **form.draft_settings(),
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            return _created(model_admin, request, result)
    return _page(
        model_admin,
        request,
        "admin/campaigns/audience_form.html",
        title="New draft campaign",
        intro=f"A new draft campaign to {describe}. The contacts go through the same checks as "
        "a CSV import: numbers on the suppression list or opted out are left out, and a contact "
        "missing a value a template needs is rejected with its reason. Nothing is sent until "
        "you start the draft.",
        marker="create_draft",
        submit_label="Create draft",
        form=form,
        action=action,
        selected_ids=request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
    )


def draft_from_one(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    action: str,
    audience: Callable[[Any], Audience],
) -> HttpResponseBase | None:
    """`draft_action` for exactly one selected list or segment."""
    chosen = list(queryset[:2])
    if len(chosen) != 1:
        noun = model_admin.model._meta.verbose_name
        model_admin.message_user(request, f"Choose exactly one {noun}.", messages.WARNING)
        return None
    return draft_action(
        model_admin,
        request,
        queryset,
        action=action,
        audience=lambda: audience(chosen[0]),
        describe=f"the {model_admin.model._meta.verbose_name} “{chosen[0]}”",
    )


class CampaignAudienceViews:
    """The campaign page's recipients export, follow-up and reschedule; mixed into
    CampaignAdmin."""

    def audience_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view  # type: ignore[attr-defined]
        return [
            path(
                "<path:object_id>/recipients.csv",
                view(self.recipients_view),
                name="campaigns_campaign_recipients",
            ),
            path(
                "<path:object_id>/follow-up/",
                view(self.follow_up_view),
                name="campaigns_campaign_follow_up",
            ),
            path(
                "<path:object_id>/reschedule/",
                view(self.reschedule_view),
                name="campaigns_campaign_reschedule",
            ),
        ]

    def audience_context(self, campaign: Campaign) -> dict[str, Any]:
        return {
            "export_outcomes": Outcome.choices,
            "follow_up_form": FollowUpForm(),
            "can_reschedule": campaign.status in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED),
            # A cohort is made of outcomes: only once something was sent.
            "can_follow_up": campaign.sent + campaign.failed > 0,
        }

    def reschedule_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        campaign = permitted_object_or_404(self, request, object_id, "change")  # type: ignore[arg-type]
        page = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
        form = RescheduleForm(
            request.POST if request.method == "POST" else None,
            initial={"start_at": campaign.start_at},
        )
        if form.is_valid():
            try:
                reschedule_campaign(campaign_id=campaign.pk, at=form.cleaned_data["start_at"])
            except TransitionError as exc:
                form.add_error(None, str(exc))
            else:
                when = timezone.localtime(form.cleaned_data["start_at"])
                self.message_user(  # type: ignore[attr-defined]
                    request, f"“{campaign.name}” starts at {when:%Y-%m-%d %H:%M}.", messages.SUCCESS
                )
                return HttpResponseRedirect(page)
        return _page(
            self,  # type: ignore[arg-type]
            request,
            "admin/campaigns/audience_form.html",
            title=f"Schedule “{campaign.name}”",
            intro=f"“{campaign.name}” is {campaign.get_status_display()}. Choose when it starts; "
            "a scheduled campaign can also go back to draft from its page.",
            marker="reschedule",
            submit_label="Schedule",
            form=form,
            action="",
            selected_ids=[],
        )

    def recipients_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        campaign = permitted_object_or_404(self, request, object_id, "view")  # type: ignore[arg-type]
        outcome = request.GET.get("outcome") or None
        if outcome is not None and outcome not in Outcome.values:
            self.message_user(  # type: ignore[attr-defined]
                request, f"Unknown outcome “{outcome}”: nothing exported.", messages.ERROR
            )
            return HttpResponseRedirect(
                reverse("admin:campaigns_campaign_change", args=[campaign.pk])
            )
        suffix = f"-{outcome}" if outcome else ""
        return csv_download(
            f"campaign-{campaign.pk}-recipients{suffix}.csv",
            EXPORT_HEADER,
            recipient_rows(campaign_id=campaign.pk, outcome=outcome),
        )

    def follow_up_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        require_permission(self, request, "add")  # type: ignore[arg-type]
        campaign = permitted_object_or_404(self, request, object_id, "view")  # type: ignore[arg-type]
        back = HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
        if request.method != "POST":
            return back
        form = FollowUpForm(request.POST)
        if not form.is_valid():
            for field, errors in form.errors.items():
                self.message_user(request, f"{field}: {' '.join(map(str, errors))}", messages.ERROR)  # type: ignore[attr-defined]
            return back
        try:
            result = audiences.follow_up_campaign(
                campaign=campaign,
                outcome=form.cleaned_data["outcome"],
                hours=form.cleaned_data["hours"] or 0,
                created_by=request.user,  # type: ignore[arg-type]
            )
        except ValueError as exc:
            self.message_user(request, f"No follow-up created: {exc}", messages.ERROR)  # type: ignore[attr-defined]
            return back
        return _created(self, request, result)  # type: ignore[arg-type]


class ContactAudienceActions:
    """Contact admin actions: add the selection to a list, or make it a draft campaign."""

    @admin.action(description="Add selected contacts to a list…", permissions=["change"])
    def add_to_list(
        self, request: HttpRequest, queryset: QuerySet[Contact]
    ) -> HttpResponseBase | None:
        form = AddToListForm(request.POST if "add_to_list" in request.POST else None)
        if form.is_valid():
            target = form.cleaned_data["contact_list"] or ContactList.objects.create(
                name=form.cleaned_data["new_list"].strip(),
                created_by=request.user if request.user.is_authenticated else None,
            )
            added = audiences.add_contacts_to_list(contact_list=target, contacts=queryset)
            self.message_user(request, f"Added {added} contact(s) to “{target}”.")  # type: ignore[attr-defined]
            return None
        return _page(
            self,  # type: ignore[arg-type]
            request,
            "admin/campaigns/audience_form.html",
            title="Add contacts to a list",
            intro=f"Add {queryset.count()} contact(s) to a contact list "
            "(a contact already on it stays once).",
            marker="add_to_list",
            submit_label="Add to list",
            form=form,
            action="add_to_list",
            selected_ids=request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        )

    @admin.action(description="New draft campaign to selected contacts…", permissions=["view"])
    def draft_from_selection(
        self, request: HttpRequest, queryset: QuerySet[Contact]
    ) -> HttpResponseBase | None:
        return draft_action(
            self,  # type: ignore[arg-type]
            request,
            queryset,
            action="draft_from_selection",
            audience=lambda: audiences.selection_audience(queryset),
            describe="the selected contacts",
        )


@admin.register(ContactList)
class ContactListAdmin(admin.ModelAdmin[ContactList]):
    list_display = ["name", "member_count", "description", "created_at"]
    search_fields = ["name"]
    fields = ["name", "description", "created_by", "created_at"]
    readonly_fields = ["created_by", "created_at"]
    actions = ["draft_from_lists"]
    change_form_template = "admin/campaigns/contactlist/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ContactList]:
        return super().get_queryset(request).annotate(n_members=Count("members"))

    @admin.display(description="contacts", ordering="n_members")
    def member_count(self, contact_list: ContactList) -> int:
        return contact_list.n_members  # type: ignore[attr-defined]

    def save_model(self, request: HttpRequest, obj: ContactList, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

    @admin.action(description="New draft campaign to the selected list…", permissions=["view"])
    def draft_from_lists(
        self, request: HttpRequest, queryset: QuerySet[ContactList]
    ) -> HttpResponseBase | None:
        return draft_from_one(
            self, request, queryset, action="draft_from_lists", audience=audiences.list_audience
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/upload/",
                self.admin_site.admin_view(self.upload_view),
                name="campaigns_contactlist_upload",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        extra = {**(extra_context or {}), "upload_form": ListUploadForm()}
        return super().change_view(request, object_id, form_url, extra)

    def upload_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        contact_list = permitted_object_or_404(self, request, object_id, "change")
        back = HttpResponseRedirect(
            reverse("admin:campaigns_contactlist_change", args=[contact_list.pk])
        )
        form = ListUploadForm(request.POST or None, request.FILES or None)
        if request.method != "POST" or not form.is_valid():
            for field, errors in (form.errors if request.method == "POST" else {}).items():
                self.message_user(request, f"{field}: {' '.join(map(str, errors))}", messages.ERROR)
            return back
        try:
            result = audiences.add_rows_to_list(
                contact_list=contact_list,
                audience=CsvAudience(form.cleaned_data["csv_file"]),
                default_region=form.cleaned_data["default_region"] or None,
            )
        except ValueError as exc:
            self.message_user(request, f"Nothing added: {exc}", messages.ERROR)
            return back
        self.message_user(
            request,
            f"{result.added} added, {result.already} already on the list, {result.rejected} "
            f"rejected, {result.duplicates} duplicates.",
            messages.SUCCESS,
        )
        for rejection in result.rejections[:5]:
            self.message_user(
                request,
                f"Row {rejection.row_number} ({rejection.value}): {rejection.reason}",
                messages.WARNING,
            )
        return back


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin[Segment]):
    list_display = ["name", "rules", "created_at"]
    search_fields = ["name"]
    fields = ["name", "rules", "matching", "created_by", "created_at"]
    readonly_fields = ["matching", "created_by", "created_at"]
    actions = ["draft_from_segments"]

    @admin.display(description="contacts matching now")
    def matching(self, segment: Segment) -> str:
        if segment.pk is None:
            return "–"
        return str(segment_contacts(segment).count())

    def save_model(self, request: HttpRequest, obj: Segment, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

    @admin.action(description="New draft campaign to the selected segment…", permissions=["view"])
    def draft_from_segments(
        self, request: HttpRequest, queryset: QuerySet[Segment]
    ) -> HttpResponseBase | None:
        return draft_from_one(
            self,
            request,
            queryset,
            action="draft_from_segments",
            audience=audiences.segment_audience,
        )
