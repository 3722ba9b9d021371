"""The project's admin site: Django's, with two built-in pages made to check permissions first.

Every other admin page already answers 403 to a staff user without the permission it needs;
these two did not:
- an app's index (`/admin/<app_label>/`) answered 404 when the user may see none of the app's
  models, which reads like "no such page" rather than "not for you";
- "view on site" (`/admin/r/<content type>/<id>/`) looked the object up without any
  permission check (Django's contenttypes shortcut) and redirected to its public URL.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.contrib.contenttypes.models import ContentType
from django.contrib.contenttypes.views import shortcut
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path


class WacAdminSite(admin.AdminSite):
    def app_index(
        self, request: HttpRequest, app_label: str, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        if not request.user.has_module_perms(app_label):
            raise PermissionDenied
        return super().app_index(request, app_label, extra_context)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        urls = super().get_urls()
        view_on_site = path(
            "r/<path:content_type_id>/<path:object_id>/",
            self.admin_view(self.view_on_site),
            name="view_on_site",
        )
        return [view_on_site if getattr(u, "name", None) == "view_on_site" else u for u in urls]

    def view_on_site(
        self, request: HttpRequest, content_type_id: str, object_id: str
    ) -> HttpResponse | HttpResponseRedirect:
        """Django's shortcut, once the user may view that model. The content type is looked up
        first (through its cache): it names a model, which every install has, not a row."""
        try:
            model = ContentType.objects.get_for_id(int(content_type_id)).model_class()
        except (ValueError, ContentType.DoesNotExist):
            raise Http404(f"No content type {content_type_id!r}.") from None
        if model is None:
            raise Http404(f"No content type {content_type_id!r}.")
        opts = model._meta
        # What ModelAdmin.has_view_permission accepts: the view or the change permission.
        if not any(
            request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
            for action in ("view", "change")
        ):
            raise PermissionDenied
        return shortcut(request, content_type_id, object_id)
