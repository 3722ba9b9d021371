"""The admin's "add campaign" wizard: upload and check, preview, then create.

Step 1 stores the upload under MEDIA_ROOT keyed by a random token kept in the session and runs
the importer's preview (which writes nothing). Step 2 shows the rendered messages and the
rejection report, then creates the campaign from the same file and deletes it.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from campaigns.csv_import.rendering import message_text
from campaigns.forms import CampaignConfirmForm, CampaignUploadForm, check_templates
from campaigns.models import Campaign, MessageTemplate, SenderNumber
from campaigns.plan_block import plan_block
from messaging.campaign_import import create_campaign_from_csv
from messaging.policy.fields import PolicyFieldError, campaign_policy
from messaging.policy.plan import plan_import
from messaging.test_send import staff_numbers

logger = logging.getLogger(__name__)

UPLOAD_SUBDIR = "campaign_uploads"
SESSION_PREFIX = "campaign_upload:"
PREVIEW_ROWS = 10
# Uploads abandoned between the steps are swept on the next upload.
STALE_SECONDS = 24 * 3600
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def upload_dir() -> Path:
    directory = Path(settings.MEDIA_ROOT) / UPLOAD_SUBDIR
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _store(uploaded: UploadedFile) -> tuple[str, Path]:
    token = secrets.token_urlsafe(24)
    path = upload_dir() / f"{token}.csv"
    with path.open("wb") as out:
        for chunk in uploaded.chunks():
            out.write(chunk)
    return token, path


def _sweep_stale() -> None:
    cutoff = time.time() - STALE_SECONDS
    for path in upload_dir().glob("*.csv"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            continue  # another request swept it first


def _discard(request: HttpRequest, token: str) -> None:
    data = request.session.pop(SESSION_PREFIX + token, None)
    if data:
        Path(data["path"]).unlink(missing_ok=True)


def _summary(result: Any, templates: list[tuple[MessageTemplate, int]]) -> dict[str, Any]:
    """The preview as JSON for the session (what step 2 shows): each message as the person
    will read it (message_text), not its raw parameters."""
    by_key = {(t.name, t.language): t for t, _ in templates}
    return {
        "queued": result.queued,
        "rejected": result.rejected,
        "duplicates": result.duplicates,
        "suppressed": result.suppressed,
        "rejections": [[r.row_number, r.value, r.reason] for r in result.rejections],
        "preview": [
            {
                "phone": p.phone,
                "template": f"{p.template_name}:{p.template_language}",
                "text": message_text(by_key[(p.template_name, p.template_language)], p.components)
                if (p.template_name, p.template_language) in by_key
                else "",
                # What a test send from this page sends (admin/test_send.py).
                "components": p.components,
            }
            for p in result.preview
        ],
    }


def _context(
    model_admin: admin.ModelAdmin[Campaign], request: HttpRequest, **extra: Any
) -> dict[str, Any]:
    opts = model_admin.model._meta
    return {
        **model_admin.admin_site.each_context(request),
        "opts": opts,
        "app_label": opts.app_label,
        "has_view_permission": model_admin.has_view_permission(request),
        **extra,
    }


PENDING_KEY = "campaign_upload_pending"
_POLICY_LABELS = {
    "valid_until": "Valid until",
    "window": "Sending window",
    "days": "Sending days",
    "cap": "Frequency cap",
}


def _pending_upload(request: HttpRequest) -> dict[str, str] | None:
    """The file uploaded with a form that then had errors, if it is still on disk."""
    pending = request.session.get(PENDING_KEY)
    if pending and Path(pending["path"]).exists():
        return pending
    return None


def _keep_upload(request: HttpRequest, uploaded: UploadedFile | None) -> dict[str, str] | None:
    """A newly uploaded file replaces the kept one; otherwise the kept one stays."""
    if uploaded is None:
        return _pending_upload(request)
    previous = request.session.pop(PENDING_KEY, None)
    if previous:
        Path(previous["path"]).unlink(missing_ok=True)
    _sweep_stale()
    token, path = _store(uploaded)
    pending = {"token": token, "path": str(path), "file_name": uploaded.name or "upload.csv"}
    request.session[PENDING_KEY] = pending
    return pending


def _canary_text(canary: dict[str, Any]) -> str:
    """Step 1's canary and thresholds in words (the plan times the canary itself)."""
    parts = []
    if canary.get("canary_percent"):
        rate = canary.get("canary_rate")
        parts.append(
            f"{canary['canary_percent']:g} % of the rows first"
            + (f" at {rate:g} msg/s" if rate else "")
        )
    else:
        parts.append("no canary")
    for key, label in (("max_failure_rate", "failed"), ("max_opt_out_rate", "opted out")):
        if canary.get(key) is not None:
            parts.append(f"pause above {canary[key] * 100:g} % {label}")
    return "; ".join(parts)


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def upload_step(model_admin: admin.ModelAdmin[Campaign], request: HttpRequest) -> HttpResponse:
    form = CampaignUploadForm(request.POST or None, request.FILES or None)
    # Kept before validation, so an error anywhere never makes staff choose the file again.
    if request.method == "POST":
        pending = _keep_upload(request, request.FILES.get("csv_file"))
    else:
        pending = _pending_upload(request)
    if pending is not None:  # before validation: bound fields copy the help text once
        kept = pending["file_name"]
        help_text = f"Kept from your last try: {kept}. Choose a file only to replace it."
        form.fields["csv_file"].help_text = help_text
    valid = request.method == "POST" and form.is_valid()
    if request.method == "POST" and pending is None:
        form.add_error("csv_file", "Choose the CSV file to send to.")
    if valid and pending is not None:
        templates = form.templates_with_weights()
        region = form.cleaned_data["default_region"] or None
        try:
            with Path(pending["path"]).open("rb") as csv_file:
                # The import preview (writes nothing) with the plan of every row it keeps.
                plan, result = plan_import(
                    csv_file=csv_file,
                    sender=form.cleaned_data["sender"],
                    templates=templates,
                    default_region=region,
                    policy=form.policy,
                    preview_rows=PREVIEW_ROWS,
                )
        except ValueError as exc:  # CsvImportError, or templates the sender cannot use
            form.add_error("csv_file", str(exc))
        else:
            valid_until = form.cleaned_data["valid_until"]
            request.session.pop(PENDING_KEY, None)
            token = pending["token"]
            request.session[SESSION_PREFIX + token] = {
                "path": pending["path"],
                "file_name": pending["file_name"],
                "name": form.cleaned_data["name"],
                "sender_id": form.cleaned_data["sender"].pk,
                "templates": [[t.pk, weight] for t, weight in templates],
                "default_region": region,
                "priority": form.cleaned_data["priority"],
                "policy": {
                    "valid_until": valid_until.isoformat() if valid_until else None,
                    "window": form.cleaned_data["window"],
                    "window_days": form.cleaned_data["window_days"],
                    "frequency_cap": form.cleaned_data["frequency_cap"],
                    # Checked by the form; model values (shares), as the plan used them.
                    "canary": form.canary_policy(),
                },
                "summary": {**_summary(result, templates), "plan": plan.as_json()},
            }
            return HttpResponseRedirect(
                reverse("admin:campaigns_campaign_add_confirm", args=[token])
            )
    if pending is not None:
        kept = pending["file_name"]
        help_text = f"Kept from your last try: {kept}. Choose a file only to replace it."
        form.fields["csv_file"].help_text = help_text
    context = _context(model_admin, request, title="Add campaign: upload", form=form)
    return TemplateResponse(request, "admin/campaigns/campaign/wizard_upload.html", context)


def confirm_step(
    model_admin: admin.ModelAdmin[Campaign], request: HttpRequest, token: str
) -> HttpResponse:
    add_url = reverse("admin:campaigns_campaign_add")
    data = request.session.get(SESSION_PREFIX + token) if _TOKEN.match(token) else None
    if data is None or not Path(data["path"]).exists():
        model_admin.message_user(
            request,
            "That upload has expired or was already used: upload the file again.",
            messages.WARNING,
        )
        return HttpResponseRedirect(add_url)
    if request.method == "POST" and "discard" in request.POST:
        _discard(request, token)
        model_admin.message_user(request, "Upload discarded; nothing was created.")
        return HttpResponseRedirect(add_url)

    form = CampaignConfirmForm(request.POST or None)
    sender = SenderNumber.objects.select_related("account").get(pk=data["sender_id"])
    by_pk = MessageTemplate.objects.select_related("account").in_bulk(
        [pk for pk, _ in data["templates"]]
    )
    templates = [(by_pk[pk], weight) for pk, weight in data["templates"] if pk in by_pk]
    if request.method == "POST" and form.is_valid():
        # The templates may have been paused or deleted since step 1.
        problems = check_templates(sender=sender, templates=[t for t, _ in templates])
        if len(templates) != len(data["templates"]):
            form.add_error(None, "A chosen template no longer exists: upload again.")
        for errors in problems.values():
            for error in errors:
                form.add_error(None, error)
        policy: dict[str, Any] = {}
        try:
            policy = campaign_policy(**CampaignUploadForm.policy_settings(data.get("policy") or {}))
        except PolicyFieldError as exc:
            form.add_error(None, f"{_POLICY_LABELS[exc.field]}: {exc}. Upload again to change it.")
        if form.is_valid():
            when = form.cleaned_data["when"]
            try:
                with Path(data["path"]).open("rb") as csv_file:
                    result = create_campaign_from_csv(
                        name=data["name"],
                        csv_file=csv_file,
                        sender=sender,
                        templates=templates,
                        start_at=form.cleaned_data["start_at"]
                        if when == CampaignConfirmForm.SCHEDULE
                        else None,
                        start_now=when == CampaignConfirmForm.START_NOW,
                        created_by=request.user if request.user.is_authenticated else None,
                        default_region=data["default_region"],
                        priority=data["priority"],
                        policy={**policy, **(data.get("policy") or {}).get("canary", {})},
                    )
            except ValueError as exc:  # CsvImportError included
                form.add_error(None, str(exc))
            else:
                _discard(request, token)
                campaign = result.created
                logger.info("campaign %s created from admin upload", campaign.pk)
                model_admin.message_user(
                    request,
                    f"Created “{campaign.name}” ({campaign.get_status_display()}): "
                    f"{result.queued} queued, {result.rejected} rejected, "
                    f"{result.duplicates} duplicates, {result.suppressed} suppressed.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:campaigns_campaign_change", args=[campaign.pk])
                )
    context = _context(
        model_admin,
        request,
        title=f"Add campaign: check “{data['name']}”",
        form=form,
        upload=data,
        summary=data["summary"],
        plan=plan_block(data["summary"].get("plan")),
        policy={
            **(data.get("policy") or {}),
            "valid_until": _moment((data.get("policy") or {}).get("valid_until")),
            "canary_text": _canary_text((data.get("policy") or {}).get("canary") or {}),
        },
        sender=sender,
        templates=templates,
        token=token,
        staff_numbers=staff_numbers(sender),
    )
    return TemplateResponse(request, "admin/campaigns/campaign/wizard_confirm.html", context)
