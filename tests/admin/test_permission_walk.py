"""Every admin URL, walked as a staff user without a single permission: 403 everywhere except
the pages Django gives every staff user (see ANY_STAFF), with existing object ids so that a 403
cannot be a missing object in disguise.

The URLs come from the URL resolver, so a page added later is walked without touching this
file; a model registered later only needs a row in `_one_of_each` if no row of it exists.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db.models import (
    BinaryField,
    DateTimeField,
    DecimalField,
    FloatField,
    ForeignKey,
    IntegerField,
    Model,
)
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from django_q.models import OrmQ, Task

from campaigns.admin.campaign import TRANSITIONS
from campaigns.models import Campaign, Portfolio
from messaging.models import NumberChange
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    OutboundMessageFactory,
    SenderFactory,
    SuppressionFactory,
    TemplateFactory,
)
from webhooks.models import (
    AutoReply,
    AutoReplyRule,
    InboundMessage,
    RawEvent,
    RejectedWebhookItem,
    StaffReply,
    StatusLog,
)

pytestmark = pytest.mark.django_db

# Pages every staff user gets whatever their permissions, and what they answer. These are
# Django's own decisions: the index lists only what the user may see (here: nothing); the
# login page sends a signed-in user on to the index; logout is POST-only (a GET is 405);
# everyone may change their own password; the JavaScript translation catalog holds no data.
ANY_STAFF = {
    "index": 200,
    "login": 302,
    "logout": 405,
    "password_change": 200,
    "password_change_done": 200,
    "jsi18n": 200,
}
# Django's own GET-only views: a POST is 405 before anything is looked at.
GET_ONLY = {"autocomplete"}
# Django's catch-all after every admin URL: an unknown admin path is 404 for anyone.
CATCH_ALL = r"(?P<url>.*)$"


def _admin_patterns() -> Iterator[tuple[str, URLPattern]]:
    """(route, pattern) for every URL under /admin/, custom views included."""

    def walk(patterns: list[URLResolver | URLPattern], prefix: str) -> Iterator[Any]:
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            else:
                yield prefix + str(p.pattern), p

    for route, pattern in walk(get_resolver().url_patterns, ""):
        if route.startswith("admin/"):
            yield route, pattern


def _one_of_each(staff: User) -> dict[type[Model], Model]:
    """An existing row of every model registered in admin."""
    sender = SenderFactory()
    campaign = CampaignFactory(sender=sender)
    message = OutboundMessageFactory(campaign=campaign, template=TemplateFactory())
    inbound = InboundMessage.objects.create(
        sender=sender,
        user_phone="+14155550123",
        wamid="wamid.walk",
        type="text",
        text="hello",
        timestamp=timezone.now(),
    )
    raw = RawEvent.objects.create(body=b"{}")
    now = timezone.now()
    rows: list[Model] = [
        staff,
        Group.objects.create(name="walkers"),
        campaign,
        message,
        ContactFactory(),
        SuppressionFactory(),
        inbound,
        raw,
        RejectedWebhookItem.objects.create(raw_event=raw, where="entry[0]", reason="r", item="{}"),
        StatusLog.objects.create(wamid="wamid.walk", status="sent", timestamp=now),
        AutoReplyRule.objects.create(keyword="walk", reply="hi"),
        AutoReply.objects.create(
            sender=sender, user_phone=inbound.user_phone, inbound=inbound, text="hi", source="rule"
        ),
        Task.objects.create(
            id=uuid.uuid4().hex,
            name="ok",
            func="math.floor",
            started=now,
            stopped=now,
            success=True,
        ),
        Task.objects.create(
            id=uuid.uuid4().hex,
            name="ko",
            func="math.floor",
            started=now,
            stopped=now,
            success=False,
        ),
        OrmQ.objects.create(key="walk", payload="x", lock=now),
        StaffReply.objects.create(sender=sender, user_phone=inbound.user_phone, text="hi"),
        Portfolio.objects.create(business_id="walk"),
        NumberChange.objects.create(
            sender=sender, field="quality", old="GREEN", new="RED", source="graph", changed_at=now
        ),
    ]
    found: dict[type[Model], Model] = {}
    for model in admin.site._registry:
        # Proxies (django_q's Success and Failure) match rows of their base table.
        mine = [
            r
            for r in rows
            if isinstance(r, model._meta.concrete_model)
            and (not model._meta.proxy or model._default_manager.filter(pk=r.pk).exists())
        ]
        found[model] = mine[0] if mine else _any_row(model)
    return found


def _any_row(model: type[Model]) -> Model:
    """An existing row of `model`, else one made of plain values for its required fields (and
    rows of what its foreign keys need), so a model registered later is walked as well."""
    existing = model._default_manager.first()
    if existing is not None:
        return existing
    values: dict[str, Any] = {}
    for field in model._meta.concrete_fields:
        if field.primary_key or field.null or field.has_default() or field.blank:
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            continue
        if field.choices:
            values[field.attname] = field.choices[0][0]
        elif isinstance(field, ForeignKey):
            values[field.name] = _any_row(field.related_model)
        elif isinstance(field, DateTimeField):
            values[field.name] = timezone.now()
        elif isinstance(field, (IntegerField, FloatField, DecimalField)):
            values[field.name] = 1
        elif isinstance(field, BinaryField):
            values[field.name] = b""
        else:
            values[field.name] = f"walk-{field.name}"[: field.max_length or 30]
    return model._default_manager.create(**values)


def _urls(objects: dict[type[Model], Model], staff: User) -> Iterator[tuple[str, str, str]]:
    """(name, method, url) for every admin route, with real values for its parameters."""
    by_prefix = {
        f"admin/{m._meta.app_label}/{m._meta.model_name}/": (m, obj) for m, obj in objects.items()
    }
    inbound = objects[InboundMessage]
    assert isinstance(inbound, InboundMessage)
    campaign_type = ContentType.objects.get_for_model(Campaign)
    for route, pattern in _admin_patterns():
        if route == "admin/" + CATCH_ALL:
            continue
        name = pattern.name or route
        obj = next(
            (row for prefix, (_, row) in by_prefix.items() if route.startswith(prefix)), None
        )
        values = {
            "object_id": str(obj.pk) if obj is not None else "",
            "id": str(staff.pk),  # the user's own password page: still needs change_user
            "sender_id": str(inbound.sender_id),
            "user_phone": inbound.user_phone,
            "token": "no-such-upload",
            "content_type_id": str(campaign_type.pk),
        }
        if route.endswith("<path:content_type_id>/<path:object_id>/"):
            values["object_id"] = str(objects[Campaign].pk)
        if "(?P<app_label>" in route:
            for app_label in re.search(r"\(\?P<app_label>([^)]*)\)", route)[1].split("|"):
                yield "app_list", "get", f"/admin/{app_label}/"
            continue
        verbs = list(TRANSITIONS) if "<str:verb>" in route else [""]
        for verb in verbs:
            url = "/" + re.sub(
                r"<(?:\w+:)?(\w+)>",
                lambda m, verb=verb: verb if m[1] == "verb" else values[m[1]],
                route,
            )
            assert "<" not in url and "(" not in url, f"no value for a parameter of {route}"
            for method in ("get", "post"):
                if method == "post" and (name in ANY_STAFF or name in GET_ONLY):
                    continue  # POST logout/password_change act on the user; not for this walk
                yield name, method, url


def _staff_without_permissions() -> tuple[User, Client]:
    user = User.objects.create_user("walker", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return user, client


def test_staff_without_permissions_gets_403_on_every_admin_url_but_the_few_django_allows():
    staff, client = _staff_without_permissions()
    objects = _one_of_each(staff)
    seen, wrong = set(), []
    for name, method, url in _urls(objects, staff):
        seen.add(name)
        response = getattr(client, method)(url)
        if response.status_code == 302 and name not in ANY_STAFF:
            # Django's old "<id>/" URL redirects to the change page; follow it there.
            response = client.get(response["Location"])
        expected = ANY_STAFF.get(name, 403)
        if response.status_code != expected:
            wrong.append(f"{method.upper()} {url} ({name}): {response.status_code} != {expected}")
    assert not wrong, "\n".join(wrong)
    # The walk reached the custom pages and every registered model's pages.
    assert {
        "webhooks_inbox",
        "webhooks_inbox_user",
        "webhooks_inbox_thread",
        "messaging_outboundmessage_errors",
        "campaigns_campaign_rejections",
        "campaigns_campaign_transition",
        "campaigns_campaign_add_confirm",
        "view_on_site",
        "autocomplete",
        "app_list",
    } <= seen
    for model in objects:
        for page in ("changelist", "add", "change", "history", "delete"):
            assert f"{model._meta.app_label}_{model._meta.model_name}_{page}" in seen
    # Nothing happened: no transition ran, nothing was deleted.
    assert Campaign.objects.get(pk=objects[Campaign].pk).status == Campaign.Status.DRAFT
    assert all(type(o)._default_manager.filter(pk=o.pk).exists() for o in objects.values())


def test_an_unknown_admin_path_is_404_for_staff():
    _, client = _staff_without_permissions()
    assert client.get("/admin/no-such-page/").status_code == 404


def _grant(user: User, model: type[Model], action: str) -> None:
    codename = get_permission_codename(action, model._meta)
    user.user_permissions.add(Permission.objects.get(codename=codename))


def test_the_view_permission_opens_the_inbox_and_the_app_but_not_replying():
    staff, client = _staff_without_permissions()
    inbound = _one_of_each(staff)[InboundMessage]
    assert isinstance(inbound, InboundMessage)
    _grant(staff, InboundMessage, "view")
    client.force_login(User.objects.get(pk=staff.pk))  # fresh permission cache
    inbox = "/admin/webhooks/inboundmessage/inbox/"
    assert client.get(inbox).status_code == 200
    assert client.get("/admin/webhooks/").status_code == 200
    assert client.get("/admin/campaigns/").status_code == 403
    url = f"{inbox}{inbound.sender_id}/{inbound.user_phone}/"
    thread = client.get(url)
    assert thread.status_code == 200
    assert thread.context["can_reply"] is False
    assert client.post(url, {"text": "hello"}).status_code == 403
    assert not StaffReply.objects.filter(text="hello").exists()


def test_replying_takes_the_change_permission_on_inbound_messages():
    staff, client = _staff_without_permissions()
    inbound = _one_of_each(staff)[InboundMessage]
    assert isinstance(inbound, InboundMessage)
    _grant(staff, InboundMessage, "view")
    _grant(staff, InboundMessage, "change")
    client.force_login(User.objects.get(pk=staff.pk))
    url = f"/admin/webhooks/inboundmessage/inbox/{inbound.sender_id}/{inbound.user_phone}/"
    response = client.get(url)
    assert response.status_code == 200
    assert response.context["can_reply"] is True
    # The change permission lets staff reply, never edit what a user wrote.
    change = f"/admin/webhooks/inboundmessage/{inbound.pk}/change/"
    assert client.post(change, {"text": "edited"}).status_code == 403


def test_view_on_site_checks_the_view_permission_before_the_object():
    staff, client = _staff_without_permissions()
    campaign_type = ContentType.objects.get_for_model(Campaign)
    # No such campaign: still 403 without the permission, so the id's existence stays hidden.
    assert client.get(f"/admin/r/{campaign_type.pk}/999999/").status_code == 403
    _grant(staff, Campaign, "view")
    client.force_login(User.objects.get(pk=staff.pk))
    # With it, Django's own answer: campaigns have no public page.
    assert client.get(f"/admin/r/{campaign_type.pk}/999999/").status_code == 404
    assert client.get("/admin/r/abc/1/").status_code == 404
