"""Operational endpoints, mounted at the site root (see config/urls.py)."""

from __future__ import annotations

from django.urls import path

from messaging import views

urlpatterns = [
    path("health/", views.health, name="health"),
    path("health/memory/", views.memory, name="health-memory"),
    path("metrics", views.metrics, name="metrics"),
]
