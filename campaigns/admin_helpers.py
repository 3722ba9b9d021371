"""Small admin building blocks shared by the campaigns and messaging admins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest
from django.template.response import TemplateResponse
from django.utils.functional import cached_property


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows (COUNT over a LIMITed subquery), so a changelist over millions
    of queue rows never counts the whole table; past the cap, pages are still reachable and
    the list says "more than CAP" (templates/admin/pagination.html reads `capped`)."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if isinstance(object_list, QuerySet):
            return object_list.values("pk")[: self.CAP + 1].count()
        return len(object_list)

    @property
    def capped(self) -> bool:
        return self.count > self.CAP


def require_permission(
    model_admin: admin.ModelAdmin[Any], request: HttpRequest, permission: str = "view"
) -> None:
    """403 unless the user has the model's `permission` ("view", "change", "add", "delete").

    Every custom admin page calls this (or `permitted_object_or_404`) first, before it reads
    anything from its URL, so a user without the permission learns nothing (not even a 404).
    """
    if not getattr(model_admin, f"has_{permission}_permission")(request):
        raise PermissionDenied


def permitted_object_or_404(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    object_id: str,
    permission: str = "view",
) -> Any:
    """The object a custom admin URL names, in this order: the model permission (403), then the
    id (404 when it is not a valid key or names nothing, never a 500), then the object
    permission (403)."""
    require_permission(model_admin, request, permission)
    obj = model_admin.get_object(request, unquote(object_id))  # None for "abc" or unknown ids
    if obj is None:
        raise Http404(f"No {model_admin.model._meta.verbose_name} with id {object_id!r}.")
    if not getattr(model_admin, f"has_{permission}_permission")(request, obj):
        raise PermissionDenied
    return obj


def confirm_action(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    action: str,
    title: str,
    question: str,
    shown: int = 20,
) -> TemplateResponse:
    """An intermediate page like Django's delete confirmation; the action runs on POST `post`."""
    opts = model_admin.model._meta
    objects = list(queryset[: shown + 1])
    select_across = request.POST.get("select_across") == "1"
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "question": question,
        "objects": objects[:shown],
        "more": len(objects) > shown,
        # With "select all", the filtered queryset is rebuilt from the URL; ids would not scale
        # (Django still wants one checkbox value to treat the POST as a confirmed action).
        "select_across": select_across,
        "selected_ids": [o.pk for o in objects[:1]]
        if select_across
        else [obj.pk for obj in queryset],
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "opts": opts,
        "app_label": opts.app_label,
        "media": model_admin.media,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/campaigns/confirm_action.html", context)


def report_each(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    objects: QuerySet[Any] | list[Model],
    *,
    verb: str,
    call: Callable[[Model], object],
    refusals: tuple[type[Exception], ...],
    describe_refusal: Callable[[Model, Exception], str],
) -> int:
    """Call `call` per object; one success message with the count, one warning per refusal."""
    done = 0
    for obj in objects:
        try:
            call(obj)
        except refusals as exc:
            model_admin.message_user(request, describe_refusal(obj, exc), messages.WARNING)
        else:
            done += 1
    if done:
        noun = model_admin.model._meta.verbose_name
        plural = model_admin.model._meta.verbose_name_plural
        model_admin.message_user(
            request, f"{verb} {done} {noun if done == 1 else plural}.", messages.SUCCESS
        )
    return done
