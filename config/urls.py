"""Root URLs: admin, webhooks, and the operational endpoints."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    # The site is its admin: the root (admin's "View site" link) leads there, not to a 404.
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False), name="home"),
    path("admin/", admin.site.urls),
    path("webhooks/", include("webhooks.urls")),
    path("", include("messaging.urls")),
]
