"""Admin for API keys (the key is shown once, on creation) and, below, the outbound events."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from integrations.keys import set_secret
from integrations.models import ApiKey


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
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} key(s) revoked.")
