"""Root URLs: admin, webhooks, the API (OpenAPI at /api/v1/openapi.json), operations."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from messaging.integrations.api.app import api

urlpatterns = [
    # The site is its admin: the root (admin's "View site" link) leads there, not to a 404.
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False), name="home"),
    path("admin/", admin.site.urls),
    path("webhooks/", include("webhooks.urls")),
    path("api/v1/", api.urls),
    path("", include("messaging.urls")),
]
