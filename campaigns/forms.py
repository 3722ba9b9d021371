"""Admin forms: the two steps of the campaign wizard and the suppression entry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import phonenumbers
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from campaigns.limits import (
    MAX_TEMPLATE_WEIGHT,
    NAME_MAX,
    PRIORITY_MAX,
    PRIORITY_MIN,
    start_time_problem,
)
from campaigns.models import (
    SENDABLE_TEMPLATE_LABEL,
    Campaign,
    ContactList,
    MessageTemplate,
    SenderNumber,
    Suppression,
)
from messaging.policy.fields import PolicyFieldError, campaign_policy

TEMPLATE_SLOTS = 4


def check_templates(
    *, sender: SenderNumber, templates: Sequence[MessageTemplate]
) -> dict[str, list[str]]:
    """Problems with using `templates` from `sender`, per template name; empty when fine."""
    problems: dict[str, list[str]] = {}
    for template in templates:
        errors = []
        if template.account_id != sender.account_id:
            errors.append(
                f"Template {template} belongs to account {template.account}, not to the "
                f"sender's account {sender.account}."
            )
        if not template.is_sendable:
            errors.append(
                f"Template {template} is {template.status}, not {SENDABLE_TEMPLATE_LABEL}."
            )
        if errors:
            problems[str(template)] = errors
    return problems


class CanaryFields(forms.Form):
    """The canary and the thresholds, as staff type them (percentages), checked by the
    policy's one rule (messaging.policy.canary.settings_problem)."""

    canary_percent = forms.FloatField(
        required=False,
        min_value=0,
        max_value=100,
        label="Canary (% of the rows)",
        help_text="Send this share first and hold the rest until its statuses are in; the "
        "rest then goes, or the campaign pauses if too many fail or opt out. Empty: no canary.",
    )
    canary_rate = forms.FloatField(
        required=False,
        min_value=0.01,
        label="Canary rate (messages/s)",
        help_text="Empty: the number's rate.",
    )
    max_failure_rate = forms.FloatField(
        required=False,
        min_value=0,
        max_value=100,
        label="Pause above (% failed)",
        help_text=f"Recipient failures, for the canary and the circuit breaker. Empty: "
        f"{settings.POLICY_MAX_FAILURE_RATE:.0%}.",
    )
    max_opt_out_rate = forms.FloatField(
        required=False,
        min_value=0,
        max_value=100,
        label="Pause the canary above (% opted out)",
        help_text=f"Empty: {settings.POLICY_MAX_OPT_OUT_RATE:.0%}.",
    )

    def canary_policy(self) -> dict[str, Any]:
        """The campaign's canary and threshold fields (shares as the model keeps them)."""
        data = self.cleaned_data
        fields: dict[str, Any] = {}
        if data.get("canary_percent"):
            fields["canary_percent"] = data["canary_percent"]
        if data.get("canary_rate") is not None:
            fields["canary_rate"] = data["canary_rate"]
        for name in ("max_failure_rate", "max_opt_out_rate"):
            if data.get(name) is not None:
                fields[name] = data[name] / 100
        return fields

    def _clean_canary(self) -> None:
        from messaging.policy.canary import SETTINGS_FIELDS, settings_problem

        if any(name in self.errors for name in SETTINGS_FIELDS):
            return
        problem = settings_problem(self.canary_policy())
        if problem:
            self.add_error(None, problem)


class CampaignUploadForm(CanaryFields):
    """Step 1: the CSV, what to send it with, and its send policy (valid_until, window, cap,
    canary and thresholds), so step 2's plan shows the campaign as it will go."""

    name = forms.CharField(max_length=NAME_MAX)
    # Not required by the form: after an error the wizard keeps the file already uploaded
    # (admin_wizard.upload_step), so staff fix the other fields without choosing it again.
    csv_file = forms.FileField(
        label="CSV file",
        required=False,
        help_text="A header row with a phone column; other columns fill template variables.",
    )
    sender = forms.ModelChoiceField(
        queryset=SenderNumber.objects.select_related("account").order_by("display_number")
    )
    default_region = forms.CharField(
        max_length=2,
        required=False,
        help_text="Country (ISO 3166 alpha-2, e.g. US) for numbers written without +country.",
    )
    priority = forms.IntegerField(initial=0, min_value=PRIORITY_MIN, max_value=PRIORITY_MAX)
    # The send policy (messaging/policy), read by its own parsers in clean().
    valid_until = forms.DateTimeField(
        required=False,
        label="Valid until",
        help_text=f"Nothing is sent after this; unsent messages expire. Time zone "
        f"{settings.TIME_ZONE}.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    window = forms.CharField(
        required=False,
        max_length=11,
        label="Sending window",
        help_text="In each recipient's local time, e.g. 09:00-20:00. Empty: the default "
        "(for marketing templates, POLICY_MARKETING_WINDOW).",
        widget=forms.TextInput(attrs={"placeholder": "09:00-20:00"}),
    )
    window_days = forms.CharField(
        required=False,
        max_length=40,
        label="Sending days",
        help_text="Weekdays of the window, e.g. mon-fri or sat,sun. Empty: every day.",
    )
    frequency_cap = forms.CharField(
        required=False,
        max_length=16,
        label="Frequency cap",
        help_text="Marketing messages per person across campaigns, e.g. 2/7d, or off. "
        "Empty: the default (POLICY_MARKETING_CAP).",
    )
    POLICY_FIELDS = {
        "valid_until": "valid_until",
        "window": "window",
        "days": "window_days",
        "cap": "frequency_cap",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["default_region"].initial = settings.WHATSAPP_DEFAULT_REGION
        # Only templates that can be sent: a paused or rejected one would only fail later.
        templates = (
            MessageTemplate.objects.sendable()
            .select_related("account")
            .order_by("name", "language")
        )
        for slot in range(1, TEMPLATE_SLOTS + 1):
            self.fields[f"template_{slot}"] = forms.ModelChoiceField(
                queryset=templates,
                required=slot == 1,
                label=f"Template {slot}",
                help_text="Contacts are split between the templates by weight."
                if slot == 1
                else "",
            )
            self.fields[f"weight_{slot}"] = forms.IntegerField(
                min_value=1,
                max_value=MAX_TEMPLATE_WEIGHT,
                initial=1,
                required=False,
                label=f"Weight {slot}",
            )
        # The canary (declared on the base form, so first by default) goes last.
        canary = list(CanaryFields.base_fields)
        self.order_fields([name for name in self.fields if name not in canary] + canary)

    def clean_default_region(self) -> str:
        region = (self.cleaned_data.get("default_region") or "").strip().upper()
        if region and region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValidationError(f"“{region}” is not a country code phonenumbers knows.")
        return region

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        seen: set[int] = set()
        for slot in range(1, TEMPLATE_SLOTS + 1):
            template = cleaned.get(f"template_{slot}")
            if template is None:
                continue
            if template.pk in seen:
                self.add_error(f"template_{slot}", f"Template {template} is chosen twice.")
            seen.add(template.pk)
        sender = cleaned.get("sender")
        if sender is not None:
            for slot in range(1, TEMPLATE_SLOTS + 1):
                template = cleaned.get(f"template_{slot}")
                if template is None:
                    continue
                for errors in check_templates(sender=sender, templates=[template]).values():
                    for error in errors:
                        self.add_error(f"template_{slot}", error)
        if "window" in self.fields:
            self._clean_policy(cleaned)
        return cleaned

    def _clean_policy(self, cleaned: dict[str, Any]) -> None:
        self._clean_canary()
        try:
            self.policy = {
                **campaign_policy(**self.policy_settings(cleaned)),
                **self.canary_policy(),
            }
        except PolicyFieldError as exc:
            for field, message in exc.errors.items():
                if field == "valid_until":
                    message = "This moment is already past: nothing could be sent"
                self.add_error(self.POLICY_FIELDS[field], f"{message[0].upper()}{message[1:]}.")

    @staticmethod
    def policy_settings(data: dict[str, Any]) -> dict[str, Any]:
        """The policy settings as campaign_policy takes them, from cleaned data (or from the
        wizard's session, where valid_until is ISO text)."""
        valid_until = data.get("valid_until")
        if isinstance(valid_until, str):
            valid_until = datetime.fromisoformat(valid_until)
        return {
            "valid_until": valid_until,
            "window": data.get("window") or "",
            "days": data.get("window_days") or "",
            "cap": data.get("frequency_cap") or "",
        }

    def templates_with_weights(self) -> list[tuple[MessageTemplate, int]]:
        pairs = []
        for slot in range(1, TEMPLATE_SLOTS + 1):
            template = self.cleaned_data.get(f"template_{slot}")
            if template is not None:
                pairs.append((template, self.cleaned_data.get(f"weight_{slot}") or 1))
        return pairs


class CampaignConfirmForm(forms.Form):
    """Step 2: after the preview (and its plan), when to send."""

    START_NOW = "start_now"
    SCHEDULE = "schedule"
    DRAFT = "draft"

    when = forms.ChoiceField(
        choices=[
            (START_NOW, "Start now"),
            (SCHEDULE, "Schedule at"),
            (DRAFT, "Save as draft"),
        ],
        initial=DRAFT,
        widget=forms.RadioSelect,
    )
    start_at = forms.DateTimeField(
        required=False,
        label="Start at",
        help_text=f"For “Schedule at”; time zone {settings.TIME_ZONE}.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("when") == self.SCHEDULE:
            start_at = cleaned.get("start_at")
            if start_at is None:
                self.add_error("start_at", "Give the start time to schedule the campaign.")
            elif problem := start_time_problem(start_at):
                self.add_error("start_at", problem[0].upper() + problem[1:] + ".")
        return cleaned


class SuppressionForm(forms.ModelForm[Suppression]):
    """Staff type numbers in any format; the list stores E.164 like every other table."""

    class Meta:
        model = Suppression
        fields = ["phone", "source", "reason"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Blank only for an erased contact's entry, which nobody types in.
        if "phone" in self.fields:
            self.fields["phone"].required = True

    def clean_phone(self) -> str:
        raw = self.cleaned_data["phone"]
        try:
            number = phonenumbers.parse(raw, settings.WHATSAPP_DEFAULT_REGION or None)
        except phonenumbers.NumberParseException as exc:
            raise ValidationError(f"“{raw}” is not a phone number: {exc}.") from exc
        if not phonenumbers.is_valid_number(number):
            raise ValidationError(f"“{raw}” is not a valid phone number.")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class AudienceDraftForm(CampaignUploadForm):
    """A draft campaign to contacts already in the database (a list, a segment, a selection):
    the wizard's choices and its policy fields (valid_until, window, days, cap), checked by
    the same clean(); no file."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Stored contacts are E.164 already: no file, no region to read numbers with.
        del self.fields["csv_file"]
        del self.fields["default_region"]

    def draft_settings(self) -> dict[str, Any]:
        """What messaging.audiences.draft_from_audience takes from the form, once valid."""
        data = self.cleaned_data
        return {
            "name": data["name"],
            "sender_id": data["sender"].pk,
            "templates": self.templates_with_weights(),
            "priority": data.get("priority") or 0,
            "policy": self.policy,
        }


class ListUploadForm(forms.Form):
    csv_file = forms.FileField(
        label="CSV file", help_text="A header row with a phone column; other columns are kept."
    )
    default_region = forms.CharField(max_length=2, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["default_region"].initial = settings.WHATSAPP_DEFAULT_REGION

    clean_default_region = CampaignUploadForm.clean_default_region


class AddToListForm(forms.Form):
    contact_list = forms.ModelChoiceField(
        queryset=ContactList.objects.order_by("name"),  # evaluated per form, when rendered
        required=False,
        label="Existing list",
        empty_label="(a new list)",
    )
    new_list = forms.CharField(max_length=200, required=False, label="or a new list named")

    def clean(self) -> dict[str, Any]:
        from campaigns.models import ContactList

        cleaned = super().clean() or {}
        new = (cleaned.get("new_list") or "").strip()
        if not cleaned.get("contact_list") and not new:
            raise ValidationError("Choose a list or name a new one.")
        if new and ContactList.objects.filter(name=new).exists():
            self.add_error("new_list", f"A list named “{new}” exists already: choose it above.")
        return cleaned


def _cohort_choices() -> list[tuple[str, str]]:
    from messaging.cohorts import COHORTS  # messaging imports campaigns: look it up when used

    return [(c.value, c.label) for c in COHORTS]


class FollowUpForm(forms.Form):
    """The campaign page's follow-up: a cohort of this campaign becomes a draft."""

    outcome = forms.ChoiceField(choices=_cohort_choices)
    hours = forms.FloatField(
        min_value=0,
        max_value=24 * 90,
        initial=24,
        required=False,
        label="at least … hours ago",
        help_text="For “delivered, not read” and “read, not replied”: give people time.",
    )


class RescheduleForm(forms.Form):
    start_at = forms.DateTimeField(
        label="Start at",
        help_text=f"Time zone {settings.TIME_ZONE}.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def clean_start_at(self) -> Any:
        start_at = self.cleaned_data["start_at"]
        if start_time_problem(start_at):  # the one rule the wizard and create_campaign use
            raise ValidationError("The start time is in the past: start the campaign instead.")
        return start_at


class CampaignAdminForm(forms.ModelForm[Campaign]):
    """The campaign's change form: the canary and thresholds checked by the policy's rule."""

    class Meta:
        model = Campaign
        # The admin's fieldsets say which fields the page edits.
        fields = ["canary_percent", "canary_rate", "max_failure_rate", "max_opt_out_rate"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "canary_percent" in self.fields:
            self.fields["canary_percent"].required = False  # empty = no canary

    def clean(self) -> dict[str, Any]:
        from messaging.policy.canary import SETTINGS_FIELDS, settings_problem

        cleaned = super().clean() or {}
        if "canary_percent" in self.fields and cleaned.get("canary_percent") is None:
            cleaned["canary_percent"] = 0.0
        instance = self.instance

        def value(name: str) -> Any:
            return (
                cleaned.get(name, getattr(instance, name))
                if name in self.fields
                else (getattr(instance, name))
            )

        problem = settings_problem({name: value(name) for name in SETTINGS_FIELDS})
        if problem:
            raise ValidationError(problem)
        return cleaned
