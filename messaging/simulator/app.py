"""Request handling: the Graph API routes the sender uses, plus the /_sim/ control routes."""

from __future__ import annotations

import json
import random
import re
import time
from typing import Any

from messaging.simulator.config import ErrorCode, SimConfig
from messaging.simulator.errors import BARE_HTTP_ERRORS, error_body, http_status_for
from messaging.simulator.protocol import Request, Response
from messaging.simulator.state import SimState
from messaging.simulator.templates import approved_keys, template_page
from messaging.simulator.webhooks import WebhookDispatcher

JSON = "application/json; charset=UTF-8"
_TO = re.compile(r"^\+?\d{6,15}$")
MAX_CALLBACK_CHARS = 512


class Invalid(Exception):
    def __init__(self, code: int, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class SimulatorApp:
    def __init__(
        self, config: SimConfig, templates: list[dict[str, Any]], *, webhook_workers: int = 4
    ) -> None:
        config.validate()
        self.initial_config = config
        self.config = config
        self.templates = templates
        self.approved = approved_keys(templates)
        self.rng = random.Random(config.seed)
        self.state = SimState()
        self.webhooks = WebhookDispatcher(
            state=self.state, config=lambda: self.config, rng=self.rng, workers=webhook_workers
        )
        # Set by the server once it is bound; used for paging.next links.
        self.base_url = ""

    def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/_sim/"):
            return self._control(request)
        self.state.requests += 1
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[2] == "messages" and request.method == "POST":
            return self._send(parts[1], request)
        if len(parts) == 3 and parts[2] == "message_templates" and request.method == "GET":
            return self._templates(request)
        self.state.record_error(100)
        return Response(404, error_body(100, f"Unknown path {request.method} {path}"), JSON)

    # -- Graph API ----------------------------------------------------------------------

    def _delay(self, cfg: SimConfig) -> float:
        if not cfg.latency_ms and not cfg.jitter_ms:
            return 0.0
        jitter = self.rng.uniform(-cfg.jitter_ms, cfg.jitter_ms) if cfg.jitter_ms else 0.0
        return max(0.0, cfg.latency_ms + jitter) / 1000.0

    def _error(self, code: int, details: str, delay: float) -> Response:
        self.state.record_error(code)
        return Response(http_status_for(code), error_body(code, details), JSON, delay=delay)

    def _draw(self, rates: dict[Any, float]) -> Any | None:
        """One code picked with the configured fractions, or None (most of the time)."""
        if not rates:
            return None
        draw = self.rng.random()
        for code, rate in rates.items():
            if draw < rate:
                return code
            draw -= rate
        return None

    def _authorized(self, request: Request, cfg: SimConfig) -> bool:
        return request.headers.get("authorization") == f"Bearer {cfg.token}"

    def _send(self, phone_number_id: str, request: Request) -> Response:
        cfg, state = self.config, self.state
        state.send_requests += 1
        if cfg.reset_rate and self.rng.random() < cfg.reset_rate:
            state.resets_before += 1
            return Response(0, drop=True)
        delay = self._delay(cfg)
        if not self._authorized(request, cfg):
            return self._error(190, "Invalid OAuth access token - Cannot parse access token", delay)
        try:
            message = _validate(request.body)
        except Invalid as exc:
            return self._error(exc.code, exc.details, delay)
        if message.get("status") == "read":
            return Response(200, b'{"success":true}', JSON, delay=delay)
        callback = message.get("biz_opaque_callback_data")
        if callback is not None:
            state.arrivals_by_callback[callback] += 1
        template = message.get("template")
        if (
            cfg.strict_templates
            and template
            and (template["name"], template["language"]["code"]) not in self.approved
        ):
            return self._error(132001, "template name or language is not approved", delay)
        now = time.monotonic()
        if not state.window(phone_number_id).admits(now, cfg.mps_for(phone_number_id)):
            return self._error(130429, "Cloud API message throughput has been reached.", delay)
        injected: ErrorCode | None = self._draw(cfg.error_rates)
        if isinstance(injected, str):
            state.record_error(injected)
            status, body, content_type = BARE_HTTP_ERRORS[injected]
            return Response(status, body, content_type, delay=delay)
        if injected is not None:
            return self._error(injected, "injected by the simulator", delay)
        return self._accept(phone_number_id, message, now, delay)

    def _accept(
        self, phone_number_id: str, message: dict[str, Any], now: float, delay: float
    ) -> Response:
        cfg, state = self.config, self.state
        to = message["to"]
        callback = message.get("biz_opaque_callback_data")
        wamid = state.new_wamid()
        state.record_accept(phone_number_id=phone_number_id, to=to, callback=callback, now=now)
        self.webhooks.schedule_message(
            phone_number_id=phone_number_id,
            wamid=wamid,
            to=to,
            callback=callback,
            fail_code=self._draw(cfg.webhook_error_rates),
        )
        drop = bool(cfg.reset_after_accept_rate) and self.rng.random() < cfg.reset_after_accept_rate
        if drop:
            state.resets_after_accept += 1
        # Built by hand: this is the hot path, and json.dumps of the dict costs more.
        body = (
            f'{{"messaging_product":"whatsapp","contacts":[{{"input":{json.dumps(to)},'
            f'"wa_id":"{to.lstrip("+")}"}}],"messages":[{{"id":"{wamid}",'
            '"message_status":"accepted"}]}'
        )
        return Response(200, body.encode(), JSON, delay=delay, drop=drop)

    def _templates(self, request: Request) -> Response:
        cfg = self.config
        if not self._authorized(request, cfg):
            return self._error(190, "Invalid OAuth access token - Cannot parse access token", 0.0)
        status, body = template_page(
            self.templates, query=request.query, base_url=self.base_url + request.path
        )
        if status != 200:
            return self._error(100, body["message"], 0.0)
        return Response(200, json.dumps(body).encode(), JSON)

    # -- control ------------------------------------------------------------------------

    def _control(self, request: Request) -> Response:
        route = (request.method, request.path.rstrip("/"))
        try:
            patch = json.loads(request.body) if request.body else {}
            if not isinstance(patch, dict):
                raise ValueError("the body must be a JSON object")
            if route == ("GET", "/_sim/stats"):
                full = "full=1" in request.query.split("&")
                return _json(200, self._stats(full=full))
            if route == ("GET", "/_sim/config"):
                return _json(200, self.config.as_json())
            if route == ("POST", "/_sim/config"):
                self.config = self.config.replace(**patch)
                if "seed" in patch:
                    self.rng.seed(self.config.seed)
                return _json(200, self.config.as_json())
            if route == ("POST", "/_sim/reset"):
                self.reset(config=bool(patch.get("config")))
                return _json(200, {"reset": True})
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        return _json(404, {"error": f"no control route {request.method} {request.path}"})

    def reset(self, *, config: bool = False) -> None:
        """Clear counters, windows and pending webhooks; `config=True` restores start options."""
        self.state.reset()
        self.webhooks.clear()
        if config:
            self.config = self.initial_config
            self.rng.seed(self.config.seed)

    def _stats(self, *, full: bool) -> dict[str, Any]:
        data = self.state.stats(full=full)
        data["webhooks"]["pending"] = self.webhooks.pending()
        data["config"] = self.config.as_json()
        return data


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(status, json.dumps(payload).encode(), JSON)


def _validate(raw: bytes) -> dict[str, Any]:
    """The parsed send body, or Invalid with the code Meta gives for that mistake."""
    try:
        message = json.loads(raw)
    except ValueError:
        raise Invalid(100, "The request body is not valid JSON") from None
    if not isinstance(message, dict):
        raise Invalid(100, "The request body must be a JSON object")
    if message.get("messaging_product") != "whatsapp":
        raise Invalid(100, "The parameter messaging_product is required and must be 'whatsapp'")
    if message.get("status") == "read":
        if not isinstance(message.get("message_id"), str):
            raise Invalid(100, "The parameter message_id is required")
        return message
    to = message.get("to")
    if not to:
        raise Invalid(100, "The parameter to is required")
    if not isinstance(to, str) or not _TO.match(to):
        raise Invalid(131009, f"Parameter value is not valid: to={str(to)[:40]!r}")
    callback = message.get("biz_opaque_callback_data")
    if callback is not None and (not isinstance(callback, str) or len(callback) > 512):
        raise Invalid(131009, "biz_opaque_callback_data must be a string of at most 512 chars")
    kind = message.get("type", "text")
    if kind == "template":
        template = message.get("template")
        if not isinstance(template, dict) or not isinstance(template.get("name"), str):
            raise Invalid(100, "The parameter template.name is required")
        language = template.get("language")
        if not isinstance(language, dict) or not isinstance(language.get("code"), str):
            raise Invalid(100, "The parameter template.language.code is required")
    elif kind == "text":
        text = message.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str):
            raise Invalid(100, "The parameter text.body is required")
    elif not isinstance(kind, str) or not isinstance(message.get(kind), dict):
        raise Invalid(100, f"The parameter {str(kind)[:40]} is required for type {kind!r}")
    return message
