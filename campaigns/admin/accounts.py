"""Admin for the WhatsApp side: message templates, sender numbers and accounts."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from campaigns.models import (
    MESSAGING_TIERS,
    MessageTemplate,
    Portfolio,
    SenderNumber,
    TierSource,
    WhatsAppAccount,
)
from messaging.numbers import NumberReport, record_number_state, set_portfolio_tier
from messaging.policy import budget

# Written through messaging.numbers (history, alert, senders told), never saved directly.
NUMBER_STATE_FIELDS = ("messaging_tier", "quality_rating", "status")


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin[MessageTemplate]):
    list_display = ["name", "language", "category", "status", "account", "synced_at"]
    list_filter = ["status", "category", "language", "account"]
    search_fields = ["name"]
    list_select_related = ["account"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Once synced from the Graph API, the API is the source of truth: nothing is editable.
        if obj is not None and obj.synced_at is not None:
            return [field.name for field in self.model._meta.fields]
        return ["synced_at"]


@admin.register(SenderNumber)
class SenderNumberAdmin(admin.ModelAdmin[SenderNumber]):
    # Tokens are environment-only: this admin has no field that could show one.
    list_display = [
        "display_number",
        "phone_number_id",
        "account",
        "rate_mps",
        "learned_rate",
        "messaging_tier",
        "quality_rating",
        "status",
        "tier_source",
        "synced_at",
    ]
    list_filter = ["status", "quality_rating", "messaging_tier", "account"]
    search_fields = ["display_number", "phone_number_id"]
    list_select_related = ["account"]
    fields = [
        "account",
        "phone_number_id",
        "display_number",
        "verified_name",
        "rate_mps",
        "messaging_tier",
        "quality_rating",
        "status",
        "tier_source",
        "state_updated_at",
        "name_status",
        "synced_at",
        "sync_error",
        "test_numbers",
        "learned_rate",
        "learned_rate_at",
        "created_at",
    ]
    readonly_fields = [
        "verified_name",
        "tier_source",
        "state_updated_at",
        "name_status",
        "synced_at",
        "sync_error",
        "learned_rate",
        "learned_rate_at",
        "created_at",
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        readonly = list(self.readonly_fields)
        if obj is not None and obj.account.portfolio_id is not None:
            # The limit is the portfolio's: staff set it there.
            readonly.append("messaging_tier")
        return readonly

    def save_model(self, request: HttpRequest, obj: SenderNumber, form: Any, change: bool) -> None:
        edited = [f for f in NUMBER_STATE_FIELDS if change and f in form.changed_data]
        wanted = {f: getattr(obj, f) for f in edited}
        for name in edited:
            setattr(obj, name, form.initial[name])
        super().save_model(request, obj, form, change)
        if not change:
            SenderNumber.objects.filter(pk=obj.pk).update(
                tier_source=TierSource.STAFF, state_updated_at=timezone.now()
            )
        if edited:
            report = NumberReport(
                tier=wanted.get("messaging_tier"),
                quality=wanted.get("quality_rating"),
                status=wanted.get("status"),
                event=f"set by {request.user}",
            )
            record_number_state(sender_id=obj.pk, report=report, source=TierSource.STAFF)
            obj.refresh_from_db()


class PortfolioForm(forms.ModelForm[Portfolio]):
    messaging_tier = forms.ChoiceField(
        choices=MESSAGING_TIERS,
        help_text="What Meta gives the portfolio. sync_numbers and the webhooks overwrite it "
        "with what Meta reports; set it here when the API is not available.",
    )

    class Meta:
        model = Portfolio
        fields = ["business_id", "name", "messaging_tier"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.initial.get("messaging_tier")
        field = self.fields["messaging_tier"]
        assert isinstance(field, forms.ChoiceField)
        if current and current not in dict(MESSAGING_TIERS):
            # An older tier Meta reported (TIER_1K, TIER_50): shown as it is.
            field.choices = [(current, current), *MESSAGING_TIERS]


class BudgetChangeList(ChangeList):
    """Adds what is left of each listed portfolio's budget (one Redis pipeline or PostgreSQL
    count per page, not per row)."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        left = budget.left(budget.all_ledgers(), timezone.now())
        for portfolio in self.result_list:
            # A portfolio without numbers has used nothing.
            unused = budget.tier_limit(portfolio.messaging_tier)
            portfolio.budget_left = left.get(f"portfolio:{portfolio.pk}", unused)


@admin.register(Portfolio)
class PortfolioAdmin(admin.ModelAdmin[Portfolio]):
    form = PortfolioForm
    list_display = [
        "__str__",
        "business_id",
        "messaging_tier",
        "tier_source",
        "tier_updated_at",
        "budget_left_column",
    ]
    search_fields = ["name", "business_id"]
    readonly_fields = ["tier_source", "tier_updated_at", "budget_left_column"]
    fields = [
        "business_id",
        "name",
        "messaging_tier",
        "tier_source",
        "tier_updated_at",
        "budget_left_column",
    ]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return BudgetChangeList

    @admin.display(description="budget left (24 h)")
    def budget_left_column(self, obj: Portfolio) -> str:
        if obj.pk is None:
            return "—"
        left = getattr(obj, "budget_left", "?")
        if left == "?":
            all_left = budget.left(budget.all_ledgers(), timezone.now())
            left = all_left.get(f"portfolio:{obj.pk}", budget.tier_limit(obj.messaging_tier))
        if left is None:
            return "no limit"
        limit = budget.tier_limit(obj.messaging_tier)
        return f"{left:,} of {limit:,}" if limit is not None else f"{left:,}"

    def save_model(self, request: HttpRequest, obj: Portfolio, form: Any, change: bool) -> None:
        tier = obj.messaging_tier
        if not change:
            obj.tier_source, obj.tier_updated_at = TierSource.STAFF, timezone.now()
            super().save_model(request, obj, form, change)
            return
        obj.messaging_tier = form.initial["messaging_tier"]
        super().save_model(request, obj, form, change)
        if "messaging_tier" in form.changed_data:
            set_portfolio_tier(
                portfolio_id=obj.pk,
                tier=tier,
                source=TierSource.STAFF,
                detail=f"set by {request.user}",
            )
            obj.refresh_from_db()


@admin.register(WhatsAppAccount)
class WhatsAppAccountAdmin(admin.ModelAdmin[WhatsAppAccount]):
    list_display = ["name", "waba_id", "portfolio", "auth_failed_at", "created_at"]
    list_select_related = ["portfolio"]
    search_fields = ["name", "waba_id"]
    fields = ["waba_id", "name", "portfolio", "auth_failed_at", "created_at"]
    readonly_fields = ["auth_failed_at", "created_at"]
    actions = ["clear_auth_failure"]

    @admin.action(
        description="Clear auth failure (after replacing the token)", permissions=["change"]
    )
    def clear_auth_failure(self, request: HttpRequest, queryset: QuerySet[WhatsAppAccount]) -> None:
        # Only clears the flag; campaigns paused by it stay paused until staff resume them.
        cleared = queryset.filter(auth_failed_at__isnull=False).update(auth_failed_at=None)
        self.message_user(
            request,
            f"Cleared the auth failure of {cleared} account(s): the scheduled syncs call them "
            "again; resume the campaigns it paused.",
        )
