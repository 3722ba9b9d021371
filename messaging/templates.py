"""Message templates as Meta reports them: the one rule for what a template's new status does
(whoever reports it: the status webhook or sync_templates), and the sync from the Graph API
that the command and the cluster's Schedule run (docs/webhooks.md, "Account events")."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.db.models import F, Min

from campaigns.models import MessageTemplate, WhatsAppAccount
from campaigns.template_sync import SyncResult, TemplateDataError, describe, upsert_templates
from messaging.graph_api import GraphError, fetch_templates
from messaging.integrations import lookup_cache
from messaging.integrations.events.payloads import publish_template_change
from messaging.policy.actions import failed_tokens, management_error, skipped_tokens_line
from messaging.services import pause_active_campaigns

logger = logging.getLogger(__name__)

# The scheduled sync starts no account after this long: one more account's pages can take
# their read timeouts, and the cluster kills a task at Q_CLUSTER["timeout"] (60 s).
SCHEDULED_SYNC_SECONDS = 20.0


def record_template_status(*, template: MessageTemplate, status: str, reason: str = "") -> None:
    """Meta says `template` is now `status`: store it, announce it (the outbound event), and
    pause the running and scheduled campaigns that use it unless the status still sends
    (MessageTemplate.status_sends: APPROVED or REINSTATED)."""
    MessageTemplate.objects.filter(pk=template.pk).update(status=status)
    lookup_cache.changed()  # the send API refuses (or accepts) it from its next request
    publish_template_change(template, kind="status", status=status, reason=reason)
    if not MessageTemplate.status_sends(status):
        text = f"Template {template} is {status}" + (f" ({reason})" if reason else "")
        logger.warning("template %s: %s", template.pk, text)
        pause_active_campaigns(reason=text[:255], templates=template.pk)


@dataclass
class TemplateSync:
    result: SyncResult
    count: int  # templates Meta listed
    changed: list[str] = field(default_factory=list)  # "name:language OLD -> NEW"

    def lines(self) -> list[str]:
        return [describe(self.result, count=self.count)] + [
            f"status changed: {change}" for change in self.changed
        ]


def sync_templates(*, waba_id: str) -> TemplateSync:
    """Every template of the account from the Graph API, upserted. A template already stored
    whose status changed is recorded as the status webhook records it
    (`record_template_status`), so a webhook that never came is caught here; an unchanged one
    does nothing more, so campaigns staff resumed stay running. Nor does a move from one status
    that sends to another: the Graph API lists a template the webhook said was REINSTATED as
    APPROVED, and that is no news for staff or subscribers. Raises GraphError (its
    account-wide action, e.g. a 190 failing the token, applied as for a send) or
    TemplateDataError (nothing stored)."""
    try:
        items = fetch_templates(waba_id=waba_id)
    except GraphError as exc:
        management_error(exc.rule, code=exc.code, waba_id=waba_id)
        raise
    before = dict(
        MessageTemplate.objects.filter(account__waba_id=waba_id).values_list("pk", "status")
    )
    result = upsert_templates(waba_id=waba_id, items=items, source="Graph API")
    sync = TemplateSync(result, len(items))
    stored = MessageTemplate.objects.filter(pk__in=list(before)).order_by("name", "language")
    for template in stored:
        old = before[template.pk]
        if template.status == old or (MessageTemplate.status_sends(old) and template.is_sendable):
            continue
        record_template_status(template=template, status=template.status)
        sync.changed.append(f"{template.name}:{template.language} {old} -> {template.status}")
    return sync


def sync_all_templates() -> str:
    """The cluster's Schedule (hourly, messaging migration 0016): every account, the one
    synced longest ago first, none started after SCHEDULED_SYNC_SECONDS, so a run cut short is
    resumed by the next one rather than starting over. Accounts whose token failed are left
    out, and named (actions.failed_tokens)."""
    deadline = time.monotonic() + SCHEDULED_SYNC_SECONDS
    failed_token = failed_tokens()
    accounts = list(
        WhatsAppAccount.objects.exclude(waba_id__in=list(failed_token))
        .annotate(synced=Min("templates__synced_at"))
        .order_by(F("synced").asc(nulls_first=True), "pk")
        .values_list("waba_id", flat=True)
    )
    synced = failed = skipped = 0
    for waba_id in accounts:
        if time.monotonic() >= deadline:
            skipped += 1
            continue
        try:
            sync = sync_templates(waba_id=waba_id)
        except (GraphError, TemplateDataError) as exc:
            failed += 1
            logger.warning("sync_templates: account %s: %s", waba_id, exc)
            continue
        synced += 1
        for change in sync.changed:
            logger.info("sync_templates: account %s: %s", waba_id, change)
    left = f", {skipped} left for the next run" if skipped else ""
    unasked = f"; {skipped_tokens_line(failed_token)}" if failed_token else ""
    return f"{synced} of {synced + failed} account(s) synced{left}{unasked}"
