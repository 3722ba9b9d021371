"""Admin for the price table the launch plan's cost estimate reads (messaging.policy.plan)."""

from __future__ import annotations

from django.contrib import admin

from campaigns.models import TemplatePrice


@admin.register(TemplatePrice)
class TemplatePriceAdmin(admin.ModelAdmin[TemplatePrice]):
    list_display = ["country", "category", "price", "currency", "updated_at"]
    list_filter = ["category", "currency"]
    list_editable = ["price"]
    search_fields = ["country"]
    fields = ["country", "category", "price", "currency", "updated_at"]
    readonly_fields = ["updated_at"]
