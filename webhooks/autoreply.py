"""Auto-reply (off unless AUTO_REPLY_ENABLED): keyword rules first, then an optional LLM hook.

Runs in the cluster (`webhooks.tasks.auto_reply`), never in the webhook request. Answers only
inside the 24-hour customer service window and at most AUTO_REPLY_MAX_PER_USER_PER_DAY times
per user and number in any 24 hours. The reply row is written before the HTTP call, so a
crash or a second run of the task never answers the same message twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import requests
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from campaigns.models import SenderNumber
from messaging.graph_api import OutcomeKind, send_once, text_payload
from webhooks.inbox import window_is_open
from webhooks.models import AutoReply, AutoReplyRule, InboundMessage

logger = logging.getLogger(__name__)

CONTEXT_MESSAGES = 10
SYSTEM_PROMPT = (
    "You answer customers of a business on WhatsApp. Be brief and polite. "
    "If you cannot help, say a person will follow up."
)


class SendError(Exception):
    """The Graph API refused or never answered the free-form message."""


def send_text(*, sender: SenderNumber, to: str, body: str) -> str:
    """Send a free-form text message through the shared Graph API client; returns its wamid."""
    outcome = send_once(
        phone_number_id=sender.phone_number_id,
        waba_id=sender.account.waba_id,
        payload=text_payload(to=to, body=body),
    )
    if outcome.kind != OutcomeKind.ACCEPTED:
        raise SendError(f"{outcome.kind}: code {outcome.error_code}, {outcome.detail}")
    return outcome.wamid


def llm_reply(*, history: list[dict[str, str]]) -> str:
    """Ask the OpenAI-compatible chat completions endpoint for an answer ("" if none)."""
    url = settings.AUTO_REPLY_LLM_URL.rstrip("/")
    if not url.endswith("/chat/completions"):
        url += "/chat/completions"
    response = requests.post(
        url,
        json={
            "model": settings.AUTO_REPLY_LLM_MODEL,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, *history],
        },
        headers={"Authorization": f"Bearer {settings.AUTO_REPLY_LLM_KEY}"},
        timeout=(3.05, 30),
    )
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"] or "").strip()


def _history(inbound: InboundMessage) -> list[dict[str, str]]:
    """The conversation's recent turns, oldest first: their messages and our auto-replies."""
    theirs = InboundMessage.objects.filter(
        sender_id=inbound.sender_id, user_phone=inbound.user_phone, timestamp__lte=inbound.timestamp
    ).order_by("-timestamp")[:CONTEXT_MESSAGES]
    ours = AutoReply.objects.filter(
        sender_id=inbound.sender_id, user_phone=inbound.user_phone, error=""
    ).order_by("-created_at")[:CONTEXT_MESSAGES]
    turns = [(m.timestamp, "user", m.text or f"[{m.type}]") for m in theirs]
    turns += [(r.created_at, "assistant", r.text) for r in ours]
    turns.sort(key=lambda t: t[0])
    return [{"role": role, "content": text} for _, role, text in turns[-CONTEXT_MESSAGES:]]


def _choose(inbound: InboundMessage) -> tuple[str, str]:
    text = " ".join(inbound.text.split())
    if text:
        for rule in AutoReplyRule.objects.filter(active=True, keyword__iexact=text)[:1]:
            return rule.reply, "rule"
    if settings.AUTO_REPLY_LLM_URL and text:
        try:
            return llm_reply(history=_history(inbound)), "llm"
        except (requests.RequestException, ValueError, KeyError, IndexError, TypeError) as exc:
            logger.warning("auto-reply LLM failed for inbound %s: %s", inbound.pk, exc)
    return "", ""


def _reserve(inbound: InboundMessage, text: str, source: str) -> AutoReply | None:
    with transaction.atomic():
        # Serialise replies to one user so two tasks cannot both pass the daily limit.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                [f"autoreply:{inbound.sender_id}:{inbound.user_phone}"],
            )
        sent_today = AutoReply.objects.filter(
            sender_id=inbound.sender_id,
            user_phone=inbound.user_phone,
            created_at__gte=timezone.now() - timedelta(days=1),
        ).count()
        if sent_today >= settings.AUTO_REPLY_MAX_PER_USER_PER_DAY:
            return None
        try:
            with transaction.atomic():
                return AutoReply.objects.create(
                    sender_id=inbound.sender_id,
                    user_phone=inbound.user_phone,
                    inbound=inbound,
                    text=text,
                    source=source,
                )
        except IntegrityError:
            return None  # this message was answered already (task ran twice)


def answer(*, inbound_id: int) -> str:
    """Reply to one inbound message if allowed; returns what happened, for the task result."""
    if not settings.AUTO_REPLY_ENABLED:
        return "disabled"
    inbound = InboundMessage.objects.select_related("sender__account").get(pk=inbound_id)
    if not inbound.user_phone.startswith("+"):
        return "no phone number"  # username-only user: the API needs a wa_id to answer
    if not window_is_open(sender_id=inbound.sender_id, user_phone=inbound.user_phone):
        return "window closed"
    if AutoReply.objects.filter(inbound_id=inbound.pk).exists():
        return "already answered"
    text, source = _choose(inbound)
    if not text:
        return "nothing to say"
    reply = _reserve(inbound, text, source)
    if reply is None:
        return "limit reached"
    try:
        reply.wamid = send_text(sender=inbound.sender, to=inbound.user_phone, body=text)
    except SendError as exc:
        reply.error = str(exc)[:500]
        logger.warning("auto-reply %s to inbound %s failed: %s", reply.pk, inbound.pk, exc)
    reply.save(update_fields=["wamid", "error"])
    return "sent" if reply.wamid else "failed"
