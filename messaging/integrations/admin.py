"""Admin for API keys (the key is shown once, on creation) and, below, the outbound events."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from campaigns.admin_helpers import CappedCountPaginator
from messaging.integrations.events.delivery import redeliver
from messaging.integrations.keys import revoke, set_secret
from messaging.integrations.models import ApiKey, EventSubscription, EventType, OutboxEvent


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices, widget=forms.CheckboxSelectMultiple, required=False
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes", "rate_limit_per_minute", "revoked_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    form = ApiKeyForm
    list_display = ["name", "prefix", "scope_list", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    actions = ["revoke"]

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        secret = None if change else set_secret(obj)
        super().save_model(request, obj, form, change)
        if secret:
            messages.warning(
                request,
                f"The API key for {obj.name} is {secret} — copy it now: only its hash is "
                "stored, it cannot be shown again.",
            )

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = revoke(queryset)
        self.message_user(request, f"{count} key(s) revoked.")


class EventSubscriptionForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: every event type.",
    )

    class Meta:
        model = EventSubscription
        fields = ["name", "url", "secret", "event_types", "active", "max_batch"]
        widgets = {"secret": forms.PasswordInput(render_value=True)}


@admin.register(EventSubscription)
class EventSubscriptionAdmin(admin.ModelAdmin[EventSubscription]):
    form = EventSubscriptionForm
    list_display = ["name", "url", "active", "type_list", "max_batch", "created_at"]
    list_filter = ["active"]

    @admin.display(description="event types")
    def type_list(self, obj: EventSubscription) -> str:
        return ", ".join(obj.event_types) or "all"


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin[OutboxEvent]):
    """Delivered, pending and dead-letter events; dead letters are re-delivered in one click."""

    list_display = [
        "id",
        "event_type",
        "subscription",
        "state",
        "attempts",
        "created_at",
        "last_error",
    ]
    list_filter = ["state", "subscription", "event_type"]
    list_select_related = ["subscription"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    actions = ["redeliver"]
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Re-deliver the selected dead letters", permissions=["view"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        count = redeliver(list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} dead letter(s) queued for delivery again.")
