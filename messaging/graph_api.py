"""The Graph API client: the only module that talks HTTP to WhatsApp.

The send path uses urllib3's connection pool directly (what `requests` is built on): it costs
about half the CPU per request of a `requests.Session` (docs/engine-notes.md §5), which is what
lets one process pace 1,000 msg/s. Template sync, rarely called, uses `requests`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from messaging.errors import ErrorRule, classify


class OutcomeKind(StrEnum):
    ACCEPTED = "accepted"
    # The API answered with an error: we know it did not take the message.
    ERROR = "error"
    # We never reached the API (refused, connect timeout): safe to retry at once.
    NOT_SENT = "not_sent"
    # The request may have been accepted but we saw no answer (timeout, reset): never resend
    # blindly; wait for a status webhook or the reconciliation window.
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    kind: OutcomeKind
    wamid: str = ""
    message_status: str = ""
    http_status: int | None = None
    error_code: int | None = None
    detail: str = ""
    rule: ErrorRule | None = None


def access_token(waba_id: str) -> str:
    """Tokens come from the environment only: a per-account override, else the default."""
    return os.environ.get(f"WHATSAPP_ACCESS_TOKEN_{waba_id}") or settings.WHATSAPP_ACCESS_TOKEN


def template_payload(
    *, to: str, template_name: str, language: str, components: list, callback_data: str
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "biz_opaque_callback_data": callback_data,
        "template": {"name": template_name, "language": {"code": language}},
    }
    if components:
        payload["template"]["components"] = components
    return payload


def text_payload(
    *, to: str, body: str, preview_url: bool = False, callback_data: str = ""
) -> dict[str, Any]:
    """A free-form text message (only inside the user's 24 h customer service window)."""
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to.lstrip("+"),
        "type": "text",
        "text": {"preview_url": preview_url, "body": body[:4096]},
    }
    if callback_data:
        payload["biz_opaque_callback_data"] = callback_data
    return payload


def queued_message_payload(
    *, to: str, template: tuple[str, str] | None, parameters: Any, callback_data: str
) -> dict[str, Any]:
    """The payload of one queue row: its template, or free-form text for a row without one.

    A text row's `parameters` hold the Graph API's `text` object ({"body", "preview_url"}).
    """
    if template is None:
        text = parameters if isinstance(parameters, dict) else {}
        return text_payload(
            to=to,
            body=str(text.get("body", "")),
            preview_url=bool(text.get("preview_url", False)),
            callback_data=callback_data,
        )
    name, language = template
    return template_payload(
        to=to.lstrip("+"),
        template_name=name,
        language=language,
        components=parameters,
        callback_data=callback_data,
    )


def send_once(*, phone_number_id: str, waba_id: str, payload: dict[str, Any]) -> SendOutcome:
    """One send outside the paced sender (auto-replies): a short-lived client of its own."""
    client = GraphApiClient(max_connections=1)
    try:
        return client.send(
            phone_number_id=phone_number_id, token=access_token(waba_id), payload=payload
        )
    finally:
        client.close()


def parse_send_response(http_status: int, body: bytes) -> SendOutcome:
    """Map an HTTP answer of the send endpoint to one outcome."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if 200 <= http_status < 300:
        messages = data.get("messages") or []
        if messages and isinstance(messages[0], dict) and messages[0].get("id"):
            return SendOutcome(
                OutcomeKind.ACCEPTED,
                wamid=str(messages[0]["id"]),
                message_status=str(messages[0].get("message_status", "accepted")),
                http_status=http_status,
            )
        # A 2xx without a wamid: the API may have taken it; treat like a lost answer.
        return SendOutcome(OutcomeKind.AMBIGUOUS, http_status=http_status, detail="2xx without id")
    error: dict[str, Any] = data["error"] if isinstance(data.get("error"), dict) else {}
    code = error.get("code")
    # The queue row's error_code is a 32-bit column: a code beyond it is no code we know.
    code = code if isinstance(code, int) and -(2**31) <= code < 2**31 else None
    details = (
        error.get("error_data", {}).get("details")
        if isinstance(error.get("error_data"), dict)
        else None
    )
    detail = str(details or error.get("message") or f"HTTP {http_status}")[:500]
    return SendOutcome(
        OutcomeKind.ERROR,
        http_status=http_status,
        error_code=code,
        detail=detail,
        rule=classify(code, http_status),
    )


class GraphApiClient:
    """One client per sender process; its pool is sized to the in-flight cap."""

    def __init__(self, *, base_url: str | None = None, max_connections: int = 64) -> None:
        base = urlsplit(base_url or settings.WHATSAPP_API_BASE_URL)
        self.base_url = f"{base.scheme}://{base.netloc}"
        self.version = settings.WHATSAPP_API_VERSION
        timeout = urllib3.Timeout(
            connect=settings.WHATSAPP_CONNECT_TIMEOUT, read=settings.WHATSAPP_READ_TIMEOUT
        )
        # retries=False: urllib3 must never resend a POST on its own (no idempotency key).
        self.pool = urllib3.connection_from_url(
            self.base_url, maxsize=max_connections, block=True, timeout=timeout, retries=False
        )

    def send(self, *, phone_number_id: str, token: str, payload: dict[str, Any]) -> SendOutcome:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        url = f"/{self.version}/{phone_number_id}/messages"
        try:
            response = self.pool.urlopen(
                "POST", url, body=body, headers=headers, preload_content=True, release_conn=True
            )
        except (NewConnectionError, ConnectTimeoutError) as exc:
            return SendOutcome(OutcomeKind.NOT_SENT, detail=f"{type(exc).__name__}"[:500])
        except (ReadTimeoutError, ProtocolError, HTTPError, OSError) as exc:
            return SendOutcome(OutcomeKind.AMBIGUOUS, detail=f"{type(exc).__name__}: {exc}"[:500])
        return parse_send_response(response.status, response.data)

    def close(self) -> None:
        self.pool.close()


def fetch_templates(
    *, waba_id: str, base_url: str | None = None, page_size: int = 100
) -> list[dict[str, Any]]:
    """All templates of a business account, following `paging.next` (management API).
    Raises GraphError with Meta's code and message."""
    base = (base_url or settings.WHATSAPP_API_BASE_URL).rstrip("/")
    url = f"{base}/{settings.WHATSAPP_API_VERSION}/{waba_id}/message_templates"
    params: dict[str, Any] | None = {
        "fields": "id,name,language,status,category,parameter_format,components,quality_score",
        "limit": page_size,
    }
    templates: list[dict[str, Any]] = []
    with requests.Session() as session:
        session.trust_env = False
        for _page in range(1000):  # bounded: 100,000 templates is 400× Meta's cap
            data = _management_get(session, url, params=params, waba_id=waba_id)
            items = data.get("data", [])
            templates.extend(items if isinstance(items, list) else [])
            paging = data.get("paging")
            next_page = paging.get("next") if isinstance(paging, dict) else None
            params = None
            if not next_page:
                break
            url = str(next_page)
    return templates


# What sync_numbers reads of a phone number (docs/whatsapp-api.md, "Messaging limits").
PHONE_NUMBER_FIELDS = (
    "display_phone_number",
    "verified_name",
    "name_status",
    "quality_rating",
    "status",
    "whatsapp_business_manager_messaging_limit",
)
# What sync_numbers reads of a business account: its owning business is the portfolio whose
# messaging limit its numbers share (docs/whatsapp-api.md, "Messaging limits").
BUSINESS_ACCOUNT_FIELDS = ("id", "name", "owner_business_info")


class GraphError(Exception):
    """A management call the API refused or never answered; the message says which and why."""

    def __init__(self, message: str, *, code: int | None = None, http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.http_status = http_status

    @property
    def rule(self) -> ErrorRule | None:
        """The error table's rule for Meta's answer; None when the API never answered."""
        if self.code is None and self.http_status is None:
            return None
        return classify(self.code, self.http_status)


def _management_get(
    session: requests.Session, url: str, *, params: dict[str, Any] | None, waba_id: str
) -> dict[str, Any]:
    """One management GET: its JSON object, or GraphError with Meta's code and message."""
    try:
        response = session.get(
            url,
            params=params,
            headers={"Authorization": f"Bearer {access_token(waba_id)}"},
            timeout=(3.05, 30),
        )
    except requests.RequestException as exc:
        raise GraphError(f"no answer from the Graph API ({type(exc).__name__})") from None
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise GraphError(
            f"HTTP {response.status_code} without a JSON object", http_status=response.status_code
        )
    error = data.get("error")
    if response.status_code >= 400 or isinstance(error, dict):
        error = error if isinstance(error, dict) else {}
        code = error.get("code") if isinstance(error.get("code"), int) else None
        message = str(error.get("message") or f"HTTP {response.status_code}")[:300]
        label = f"error {code}: " if code is not None else ""
        raise GraphError(f"{label}{message}", code=code, http_status=response.status_code)
    return data


def _get_node(
    node_id: str, fields: tuple[str, ...], *, waba_id: str, base_url: str | None
) -> dict[str, Any]:
    base = (base_url or settings.WHATSAPP_API_BASE_URL).rstrip("/")
    url = f"{base}/{settings.WHATSAPP_API_VERSION}/{node_id}"
    with requests.Session() as session:
        session.trust_env = False
        return _management_get(session, url, params={"fields": ",".join(fields)}, waba_id=waba_id)


def fetch_phone_number(
    *, phone_number_id: str, waba_id: str, base_url: str | None = None
) -> dict[str, Any]:
    """`GET /{PHONE_NUMBER_ID}?fields=…`: the number's name, quality, status and messaging
    limit, as the API gives them. Raises GraphError with Meta's code and message."""
    return _get_node(phone_number_id, PHONE_NUMBER_FIELDS, waba_id=waba_id, base_url=base_url)


def fetch_business_account(*, waba_id: str, base_url: str | None = None) -> dict[str, Any]:
    """`GET /{WABA_ID}?fields=id,name,owner_business_info`: the account and the business
    portfolio that owns it ({"id", "name"}). Raises GraphError with Meta's code and message."""
    return _get_node(waba_id, BUSINESS_ACCOUNT_FIELDS, waba_id=waba_id, base_url=base_url)
