"""Admin for the WhatsApp side: message templates, sender numbers and accounts."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from campaigns.models import MessageTemplate, SenderNumber, WhatsAppAccount


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
    ]
    list_filter = ["status", "quality_rating", "messaging_tier", "account"]
    search_fields = ["display_number", "phone_number_id"]
    list_select_related = ["account"]
    fields = [
        "account",
        "phone_number_id",
        "display_number",
        "rate_mps",
        "messaging_tier",
        "quality_rating",
        "status",
        "test_numbers",
        "learned_rate",
        "learned_rate_at",
        "created_at",
    ]
    readonly_fields = ["learned_rate", "learned_rate_at", "created_at"]


@admin.register(WhatsAppAccount)
class WhatsAppAccountAdmin(admin.ModelAdmin[WhatsAppAccount]):
    list_display = ["name", "waba_id", "auth_failed_at", "created_at"]
    search_fields = ["name", "waba_id"]
    fields = ["waba_id", "name", "auth_failed_at", "created_at"]
    readonly_fields = ["auth_failed_at", "created_at"]
    actions = ["clear_auth_failure"]

    @admin.action(
        description="Clear auth failure (after replacing the token)", permissions=["change"]
    )
    def clear_auth_failure(self, request: HttpRequest, queryset: QuerySet[WhatsAppAccount]) -> None:
        # Only clears the flag; campaigns paused by it stay paused until staff resume them.
        cleared = queryset.filter(auth_failed_at__isnull=False).update(auth_failed_at=None)
        self.message_user(request, f"Cleared the auth failure of {cleared} account(s).")
