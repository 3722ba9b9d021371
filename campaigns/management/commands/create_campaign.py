"""Create a campaign from a CSV: `manage.py create_campaign --name N --csv F --sender ID ...`."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns.commands import SafeCommand, text_option
from campaigns.limits import (
    MAX_TEMPLATE_WEIGHT,
    PRIORITY_MAX,
    PRIORITY_MIN,
    campaign_settings_problem,
    start_time_problem,
)
from campaigns.models import Campaign, MessageTemplate, SenderNumber
from messaging.campaign_import import CsvImportError, create_campaign_from_csv
from messaging.policy.canary import CanaryError, parse_percent, parse_share, settings_problem
from messaging.policy.fields import PolicyFieldError, campaign_policy
from messaging.policy.plan import plan_import, plan_lines

_TEMPLATE = re.compile(r"^(?P<name>[^:@]+)(?::(?P<lang>[^:@]+))?(?:@(?P<weight>[^:@]+))?$")


class Command(SafeCommand):
    help = (
        "Create a campaign from a CSV of phone numbers (plus optional template variable "
        "columns). Prints the campaign id and the queued/rejected counts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--csv", required=True, help="path of the CSV file")
        parser.add_argument("--sender", required=True, help="the sender's Graph phone-number-id")
        parser.add_argument(
            "--template",
            action="append",
            required=True,
            help="NAME[:LANG][@WEIGHT]; repeat for several templates (equal weights by default)",
        )
        parser.add_argument("--start", help="'now' or an ISO-8601 date-time to schedule it")
        parser.add_argument("--region", help="default region for numbers without +, e.g. GB")
        parser.add_argument("--priority", type=int, default=0)
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--valid-until", help="ISO-8601: nothing is sent after it")
        parser.add_argument(
            "--window", help="sending window in each recipient's local time, e.g. 09:00-20:00"
        )
        parser.add_argument("--days", default="", help="weekdays of the window, e.g. mon-fri")
        parser.add_argument(
            "--frequency-cap", default="", help="marketing messages per person, e.g. 2/7d, or off"
        )
        parser.add_argument(
            "--plan",
            action="store_true",
            help="create nothing: print the launch plan (skips by reason, budget waves, time "
            "zones, ETA, cost)",
        )
        parser.add_argument(
            "--canary", default="", help="send this share of the rows first, e.g. 2%%"
        )
        parser.add_argument(
            "--canary-rate", type=float, help="the canary's rate in messages per second, e.g. 1"
        )
        parser.add_argument(
            "--max-failure-rate",
            default="",
            help="pause above this share of recipient failures (canary and circuit breaker), "
            "e.g. 20%% (default POLICY_MAX_FAILURE_RATE)",
        )
        parser.add_argument(
            "--max-opt-out-rate",
            default="",
            help="pause a canary above this share of opt-outs, e.g. 2%% "
            "(default POLICY_MAX_OPT_OUT_RATE)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = text_option("--name", options["name"], model=Campaign, field="name")
        if not PRIORITY_MIN <= options["priority"] <= PRIORITY_MAX:
            raise CommandError(
                f"--priority {options['priority']}: must be between {PRIORITY_MIN} and "
                f"{PRIORITY_MAX}"
            )
        phone_number_id = text_option(
            "--sender", options["sender"], model=SenderNumber, field="phone_number_id"
        )
        sender = (
            SenderNumber.objects.select_related("account")
            .filter(phone_number_id=phone_number_id)
            .first()
        )
        if sender is None:
            raise CommandError(f"unknown sender {options['sender']!r}: add it with add_sender")
        templates = [_template(sender, spec) for spec in options["template"]]
        start_now, start_at = _start(options["start"])
        policy = _policy(options)
        # The same check the import service makes, said before the file is read.
        problem = campaign_settings_problem(
            name=name, priority=options["priority"], weights=[w for _, w in templates]
        )
        if problem:
            raise CommandError(problem)
        if options["plan"]:
            self._plan(options, sender, templates, policy, start_at)
            return
        try:
            result = create_campaign_from_csv(
                name=name,
                csv_file=options["csv"],
                sender=sender,
                templates=templates,
                start_now=start_now,
                start_at=start_at,
                default_region=options["region"],
                priority=options["priority"],
                policy=policy,
            )
        except CsvImportError as exc:
            where = "" if str(exc).startswith(options["csv"]) else f"{options['csv']}: "
            raise CommandError(f"{where}{exc}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        campaign = result.campaign
        assert campaign is not None
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "id": campaign.pk,
                        "queued": result.queued,
                        "rejected": result.rejected,
                        "duplicates": result.duplicates,
                        "suppressed": result.suppressed,
                        "status": campaign.status,
                    }
                )
            )
            return
        self.stdout.write(
            f"campaign {campaign.pk} ({campaign.name}) {campaign.status}: "
            f"{result.queued} queued, {result.rejected} rejected, "
            f"{result.duplicates} duplicates, {result.suppressed} suppressed"
        )
        for rejection in result.rejections[:10]:
            self.stdout.write(
                f"  row {rejection.row_number}: {rejection.value!r}: {rejection.reason}"
            )
        if result.rejected > 10:
            self.stdout.write("  … the full list is the campaign's rejection report in admin")

    def _plan(
        self,
        options: dict[str, Any],
        sender: SenderNumber,
        templates: list[tuple[MessageTemplate, int]],
        policy: dict[str, Any],
        start_at: datetime | None,
    ) -> None:
        """The launch plan of the file, from the import preview: nothing is written."""
        try:
            plan, preview = plan_import(
                csv_file=options["csv"],
                sender=sender,
                templates=templates,
                default_region=options["region"],
                policy=policy,
                start_at=start_at,
            )
        except CsvImportError as exc:
            where = "" if str(exc).startswith(options["csv"]) else f"{options['csv']}: "
            raise CommandError(f"{where}{exc}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps({"plan": plan.as_json(), "queued": preview.queued}))
            return
        for line in plan_lines(plan):
            self.stdout.write(line)


def _policy(options: dict[str, Any]) -> dict[str, Any]:
    """--valid-until, --window, --days and --frequency-cap as the campaign's policy fields,
    read by the policy's own parsers (one reading for the command, the wizard and the
    engine)."""
    valid_until = None
    if options["valid_until"]:
        valid_until = parse_datetime(options["valid_until"].strip())
        if valid_until is None:
            raise CommandError(f"--valid-until {options['valid_until']!r}: expected ISO-8601")
    try:
        fields = campaign_policy(
            valid_until=valid_until,
            window=options["window"] or "",
            days=options["days"],
            cap=options["frequency_cap"],
        )
    except PolicyFieldError as exc:
        flag = {"valid_until": "--valid-until", "days": "--days", "cap": "--frequency-cap"}
        if exc.field == "valid_until":
            raise CommandError(f"--valid-until {options['valid_until']!r}: {exc}") from None
        if exc.field == "days" and not options["window"]:
            raise CommandError("--days needs --window") from None
        raise CommandError(f"{flag.get(exc.field, '--window')}: {exc}") from None
    fields.update(_canary(options))
    return fields


def _canary(options: dict[str, Any]) -> dict[str, Any]:
    """--canary, --canary-rate and the thresholds, read and checked by the policy's own
    functions (messaging.policy.canary)."""
    fields: dict[str, Any] = {}
    try:
        if options["canary"]:
            fields["canary_percent"] = parse_percent(options["canary"])
        if options["canary_rate"] is not None:
            fields["canary_rate"] = options["canary_rate"]
        if options["max_failure_rate"]:
            fields["max_failure_rate"] = parse_share(
                options["max_failure_rate"], "--max-failure-rate"
            )
        if options["max_opt_out_rate"]:
            fields["max_opt_out_rate"] = parse_share(
                options["max_opt_out_rate"], "--max-opt-out-rate"
            )
    except CanaryError as exc:
        raise CommandError(str(exc)) from None
    problem = settings_problem(fields)
    if problem:
        raise CommandError(problem)
    return fields


def _template(sender: SenderNumber, spec: str) -> tuple[MessageTemplate, int]:
    match = _TEMPLATE.match(spec.strip())
    if match is None or any(not ch.isprintable() for ch in spec):
        raise CommandError(f"--template {spec[:80]!r}: expected NAME[:LANG][@WEIGHT]")
    weight_text = match["weight"] or "1"
    if not weight_text.isdigit() or not 1 <= int(weight_text) <= MAX_TEMPLATE_WEIGHT:
        raise CommandError(
            f"--template {spec[:80]!r}: the weight must be a whole number 1..{MAX_TEMPLATE_WEIGHT}"
        )
    found = MessageTemplate.objects.filter(account=sender.account, name=match["name"])
    if match["lang"]:
        found = found.filter(language=match["lang"])
    candidates = list(found)
    if not candidates:
        raise CommandError(
            f"--template {spec[:80]!r}: no such template for WABA {sender.account.waba_id} "
            "(load them with load_templates)"
        )
    if len(candidates) > 1:
        languages = ", ".join(sorted(t.language for t in candidates))
        raise CommandError(
            f"--template {spec!r} exists in several languages ({languages}): "
            f"write {match['name']}:LANG"
        )
    return candidates[0], int(weight_text)


def _start(value: str | None) -> tuple[bool, datetime | None]:
    if value is None:
        return False, None
    if value.strip().lower() == "now":
        return True, None
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CommandError(
            f"--start {value!r}: expected 'now' or an ISO-8601 date-time, "
            "e.g. 2026-05-01T09:00+01:00"
        ) from None
    at = timezone.make_aware(at) if timezone.is_naive(at) else at
    if problem := start_time_problem(at):
        raise CommandError(f"--start {value!r}: {problem} (use 'now' to start at once)")
    return False, at
