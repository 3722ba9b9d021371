"""Request handling: the Graph API routes the sender uses, plus the /_sim/ control routes."""

from __future__ import annotations

import copy
import json
import random
import re
import time
from typing import Any

from messaging.simulator.config import ErrorCode, SimConfig
from messaging.simulator.errors import BARE_HTTP_ERRORS, error_body, http_status_for
from messaging.simulator.limits import ECOSYSTEM_CODE, is_us_number
from messaging.simulator.protocol import Request, Response
from messaging.simulator.state import SimState
from messaging.simulator.templates import approved_keys, parameter_mismatch, template_page
from messaging.simulator.webhooks import WebhookDispatcher

JSON = "application/json; charset=UTF-8"
_TO = re.compile(r"^\+?\d{6,15}$")
MAX_CALLBACK_CHARS = 512


_UNSENDABLE_TEMPLATE_CODES = {"PAUSED": 132015, "DISABLED": 132016}
_TEMPLATE_STATUSES = frozenset({"APPROVED", "PAUSED", "DISABLED", "REINSTATED", "REJECTED"})
_QUALITY_SCORES = frozenset({"GREEN", "YELLOW", "RED", "UNKNOWN"})
_NUMBER_EVENTS = frozenset({"FLAGGED", "UNFLAGGED", "DOWNGRADE", "UPGRADE", "THROUGHPUT_UPGRADE"})


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
        self.initial_templates = copy.deepcopy(templates)
        self._set_templates(copy.deepcopy(templates))
        self.rng = random.Random(config.seed)
        self.state = SimState()
        self.webhooks = WebhookDispatcher(
            state=self.state, config=lambda: self.config, rng=self.rng, workers=webhook_workers
        )
        # Set by the server once it is bound; used for paging.next links.
        self.base_url = ""

    def _set_templates(self, templates: list[dict[str, Any]]) -> None:
        self.templates = templates
        self.approved = approved_keys(templates)
        self.by_key = {(t["name"], t["language"]): t for t in templates}

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
        if len(parts) == 2 and request.method == "GET":
            if self._is_business_account(parts[1], request):
                return self._business_account(parts[1], request)
            return self._phone_number(parts[1], request)
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
        if template:
            known = self.by_key.get((template["name"], template["language"]["code"]))
            status = known.get("status") if known else None
            if status in _UNSENDABLE_TEMPLATE_CODES:
                return self._error(_UNSENDABLE_TEMPLATE_CODES[status], f"template {status}", delay)
            mismatch = parameter_mismatch(known, template) if known else None
            if mismatch is not None:
                return self._error(mismatch[0], mismatch[1], delay)
        now = time.monotonic()
        if not state.window(phone_number_id).admits(now, cfg.mps_for(phone_number_id)):
            return self._error(130429, "Cloud API message throughput has been reached.", delay)
        refusal = self._over_limit(phone_number_id, message, now)
        if refusal is not None and cfg.limit_errors_via == "response":
            return self._error(refusal[0], refusal[1], delay)
        if refusal is not None:
            return self._accept(phone_number_id, message, now, delay, fail_code=refusal[0])
        injected: ErrorCode | None = self._draw(cfg.error_rates)
        if isinstance(injected, str):
            state.record_error(injected)
            status, body, content_type = BARE_HTTP_ERRORS[injected]
            return Response(status, body, content_type, delay=delay)
        if injected is not None:
            return self._error(injected, "injected by the simulator", delay)
        return self._accept(phone_number_id, message, now, delay)

    def _is_marketing(self, message: dict[str, Any]) -> bool:
        template = message.get("template")
        if not template:
            return False
        known = self.by_key.get((template["name"], template["language"]["code"]))
        return known is not None and str(known.get("category", "")).upper() == "MARKETING"

    def _over_limit(
        self, phone_number_id: str, message: dict[str, Any], now: float
    ) -> tuple[int, str] | None:
        """(code, details) when one of Meta's limits refuses this send, else None."""
        cfg, state = self.config, self.state
        to = message["to"].lstrip("+")
        marketing = self._is_marketing(message)
        if marketing and cfg.us_marketing_blocked and is_us_number(to):
            return ECOSYSTEM_CODE, "marketing templates are not delivered to US numbers"
        if (
            marketing
            and cfg.marketing_cap
            and not state.marketing_sent.admits(
                to, now=now, cap=cfg.marketing_cap, window_s=cfg.marketing_cap_window_s
            )
        ):
            return ECOSYSTEM_CODE, "per-user marketing limit reached"
        if cfg.portfolio_limit and message.get("template"):
            portfolio = cfg.portfolio_of(phone_number_id)
            if not state.portfolio_recipients.admits(
                portfolio, to, now=now, limit=cfg.portfolio_limit, window_s=cfg.portfolio_window_s
            ):
                return cfg.portfolio_limit_code, f"portfolio {portfolio} messaging limit reached"
        return None

    def _count_toward_limits(
        self, phone_number_id: str, message: dict[str, Any], now: float
    ) -> None:
        cfg, state = self.config, self.state
        if not message.get("template"):
            return  # only template (business-initiated) messages count
        to = message["to"].lstrip("+")
        state.portfolio_recipients.record(cfg.portfolio_of(phone_number_id), to, now=now)
        if self._is_marketing(message):
            state.marketing_sent.record(to, now=now)

    def _accept(
        self,
        phone_number_id: str,
        message: dict[str, Any],
        now: float,
        delay: float,
        *,
        fail_code: int | None = None,
    ) -> Response:
        cfg, state = self.config, self.state
        to = message["to"]
        callback = message.get("biz_opaque_callback_data")
        wamid = state.new_wamid()
        state.record_accept(phone_number_id=phone_number_id, to=to, callback=callback, now=now)
        if fail_code is None:
            self._count_toward_limits(phone_number_id, message, now)
        else:
            state.limit_failures[str(fail_code)] += 1
        self.webhooks.schedule_message(
            phone_number_id=phone_number_id,
            wamid=wamid,
            to=to,
            callback=callback,
            fail_code=fail_code if fail_code is not None else self._draw(cfg.webhook_error_rates),
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

    def _phone_number(self, phone_number_id: str, request: Request) -> Response:
        """GET /{PHONE_NUMBER_ID}?fields=…: the fields asked for (all we know without)."""
        cfg = self.config
        if not self._authorized(request, cfg):
            return self._error(190, "Invalid OAuth access token - Cannot parse access token", 0.0)
        known: dict[str, Any] = {
            "id": phone_number_id,
            "display_phone_number": cfg.display_phone_number,
            "verified_name": cfg.verified_name,
            "name_status": "APPROVED",
            "quality_rating": cfg.quality_rating,
            "status": cfg.number_status,
            "whatsapp_business_manager_messaging_limit": cfg.messaging_tier,
            "throughput": {"level": "HIGH" if cfg.mps_for(phone_number_id) > 80 else "STANDARD"},
        }
        override = dict(cfg.numbers.get(phone_number_id, {}))
        if "error" in override:
            code = int(override["error"])
            return self._error(code, f"Object with ID '{phone_number_id}' cannot be read", 0.0)
        if "messaging_tier" in override:
            override["whatsapp_business_manager_messaging_limit"] = override.pop("messaging_tier")
        known.update(override)
        fields = _query_value(request.query, "fields")
        if fields:
            asked = {f.strip() for f in fields.split(",") if f.strip()}
            known = {k: v for k, v in known.items() if k in asked or k == "id"}
        return Response(200, json.dumps(known).encode(), JSON)

    def _is_business_account(self, node_id: str, request: Request) -> bool:
        """A GET of a node the simulator knows as a WABA, or one asking a WABA's field (every
        other node is a phone number)."""
        asked = {f.strip() for f in _query_value(request.query, "fields").split(",")}
        return node_id in self.config.businesses or "owner_business_info" in asked

    def _business_account(self, waba_id: str, request: Request) -> Response:
        """GET /{WABA_ID}?fields=id,name,owner_business_info: the account's owning business
        (its portfolio), from `businesses`."""
        cfg = self.config
        if not self._authorized(request, cfg):
            return self._error(190, "Invalid OAuth access token - Cannot parse access token", 0.0)
        business = dict(cfg.businesses.get(waba_id, {}))
        if "error" in business:
            code = int(business["error"])
            return self._error(code, f"Object with ID '{waba_id}' cannot be read", 0.0)
        known: dict[str, Any] = {"id": waba_id, "name": f"{cfg.verified_name} account"}
        if business:
            known["owner_business_info"] = {
                "id": str(business["id"]),
                "name": str(business.get("name", "")),
            }
        fields = _query_value(request.query, "fields")
        if fields:
            asked = {f.strip() for f in fields.split(",") if f.strip()}
            known = {k: v for k, v in known.items() if k in asked or k == "id"}
        return Response(200, json.dumps(known).encode(), JSON)

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
            if route == ("POST", "/_sim/template_event"):
                return _json(200, self._template_event(patch))
            if route == ("POST", "/_sim/number_event"):
                return _json(200, self._number_event(patch))
            if route == ("POST", "/_sim/capability_event"):
                return _json(200, self._capability_event(patch))
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        return _json(404, {"error": f"no control route {request.method} {request.path}"})

    def reset(self, *, config: bool = False) -> None:
        """Clear counters, windows and pending webhooks; `config=True` restores start options."""
        self.state.reset()
        self.webhooks.clear()
        if config:
            self.config = self.initial_config
            self._set_templates(copy.deepcopy(self.initial_templates))
            self.rng.seed(self.config.seed)

    def _template_event(self, patch: dict[str, Any]) -> dict[str, Any]:
        """Change a template's status or quality, as Meta would, and send its webhook.

        {"name", "language", "status": "PAUSED", "reason"?} or {"name", "language", "quality"}.
        A PAUSED or DISABLED template then refuses sends (132015 / 132016); a REINSTATED one
        is APPROVED again.
        """
        key = (str(patch.get("name", "")), str(patch.get("language", "")))
        template = self.by_key.get(key)
        if template is None:
            raise ValueError(f"no template {key[0]!r} in language {key[1]!r}")
        status, quality = patch.get("status"), patch.get("quality")
        if (status is None) == (quality is None):
            raise ValueError('give exactly one of "status" (e.g. PAUSED) or "quality" (e.g. RED)')
        ids = {
            "message_template_id": int(template.get("id") or 0),
            "message_template_name": key[0],
            "message_template_language": key[1],
        }
        if status is not None:
            status = str(status).upper()
            if status not in _TEMPLATE_STATUSES:
                raise ValueError(f"status {status!r}: expected one of {sorted(_TEMPLATE_STATUSES)}")
            # REINSTATED is the webhook's event only: the template GET lists it APPROVED again.
            template["status"] = "APPROVED" if status == "REINSTATED" else status
            value = {"event": status, **ids, "reason": str(patch.get("reason") or "NONE")}
            field_name = "message_template_status_update"
        else:
            quality = str(quality).upper()
            if quality not in _QUALITY_SCORES:
                raise ValueError(f"quality {quality!r}: expected one of {sorted(_QUALITY_SCORES)}")
            previous = template.get("quality_score", {}).get("score", "UNKNOWN")
            template["quality_score"] = {"score": quality}
            value = {"previous_quality_score": previous, "new_quality_score": quality, **ids}
            field_name = "message_template_quality_update"
        self._set_templates(self.templates)
        self.webhooks.post_event(field_name, value)
        return {"field": field_name, "value": value}

    def _number_event(self, patch: dict[str, Any]) -> dict[str, Any]:
        """Send a phone_number_quality_update: {"event": "FLAGGED", "current_limit"?,
        "quality_rating"?}. A limit or rating given also becomes what the number GET says."""
        event = str(patch.get("event", "")).upper()
        if event not in _NUMBER_EVENTS:
            raise ValueError(f"event {event!r}: expected one of {sorted(_NUMBER_EVENTS)}")
        value = {
            "display_phone_number": str(
                patch.get("display_phone_number") or self.config.display_phone_number
            ),
            "event": event,
            "current_limit": str(patch.get("current_limit") or "TIER_2K"),
        }
        changes: dict[str, Any] = {}
        if patch.get("current_limit") and event in {"DOWNGRADE", "UPGRADE"}:
            value["old_limit"] = self.config.messaging_tier
            changes["messaging_tier"] = value["current_limit"]
        if patch.get("quality_rating"):
            value["quality_rating"] = str(patch["quality_rating"]).upper()
            changes["quality_rating"] = value["quality_rating"]
        if event == "FLAGGED":
            changes["number_status"] = "FLAGGED"
        elif event == "UNFLAGGED":
            changes["number_status"] = "CONNECTED"
        self.webhooks.post_event("phone_number_quality_update", value)
        if changes:
            self.config = self.config.replace(**changes)
        return {"field": "phone_number_quality_update", "value": value}

    def _capability_event(self, patch: dict[str, Any]) -> dict[str, Any]:
        """Send a business_capability_update with the portfolio's new limit:
        {"max_daily_conversations_per_business": 2000} (-1 = unlimited); the number GET
        reports the same tier from then on."""
        limit = patch.get("max_daily_conversations_per_business")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit == 0 or limit < -1:
            raise ValueError("max_daily_conversations_per_business: a positive integer or -1")
        value = {
            "max_daily_conversations_per_business": limit,
            "max_phone_numbers_per_business": int(patch.get("max_phone_numbers_per_business", 2)),
        }
        tier = "TIER_UNLIMITED" if limit < 0 else _tier_name(limit)
        self.webhooks.post_event("business_capability_update", value)
        self.config = self.config.replace(messaging_tier=tier)
        return {"field": "business_capability_update", "value": value}

    def _stats(self, *, full: bool) -> dict[str, Any]:
        data = self.state.stats(full=full)
        data["portfolio_recipients"] = self.state.portfolio_recipients.counts(
            now=time.monotonic(), window_s=self.config.portfolio_window_s
        )
        data["webhooks"]["pending"] = self.webhooks.pending()
        data["webhooks"]["in_flight"] = self.webhooks.in_flight()
        data["config"] = self.config.as_json()
        return data


def _tier_name(limit: int) -> str:
    return f"TIER_{limit // 1000}K" if limit >= 1000 and limit % 1000 == 0 else f"TIER_{limit}"


def _query_value(query: str, name: str) -> str:
    from urllib.parse import parse_qs

    values = parse_qs(query).get(name)
    return values[0] if values else ""


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(status, json.dumps(payload).encode(), JSON)


def _validate_components(components: object) -> None:
    """A template's components as the API takes them: an array of objects with a `type`,
    each one's `parameters` (if any) an array of objects with a `type` (a string where an
    array belongs, e.g. JSON text sent as a string, is refused with 100)."""
    if not isinstance(components, list):
        raise Invalid(100, "Param template['components'] must be an array")
    for component in components:
        if not isinstance(component, dict) or not isinstance(component.get("type"), str):
            raise Invalid(100, "Each of template['components'] must be an object with a type")
        parameters = component.get("parameters", [])
        if not isinstance(parameters, list) or not all(
            isinstance(p, dict) and isinstance(p.get("type"), str) for p in parameters
        ):
            raise Invalid(100, "Param components[]['parameters'] must be an array of objects")


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
        _validate_components(template.get("components", []))
    elif kind == "text":
        text = message.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str):
            raise Invalid(100, "The parameter text.body is required")
        if not text["body"].strip():
            raise Invalid(100, "The parameter text.body is required")
    elif not isinstance(kind, str) or not isinstance(message.get(kind), dict):
        raise Invalid(100, f"The parameter {str(kind)[:40]} is required for type {kind!r}")
    return message
