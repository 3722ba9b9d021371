"""Root URLs: admin, webhooks, and the operational endpoints."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/", include("webhooks.urls")),
    path("", include("messaging.urls")),
]
