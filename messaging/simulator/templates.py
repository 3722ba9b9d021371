"""The template list served at GET /{version}/{waba_id}/message_templates, with Graph paging."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

DEFAULT_LIMIT = 25
MAX_LIMIT = 1000

DEMO_TEMPLATES: list[dict[str, Any]] = [
    {
        "id": "1000000000000001",
        "name": "spring_promo",
        "language": "en_US",
        "status": "APPROVED",
        "category": "MARKETING",
        "parameter_format": "POSITIONAL",
        "quality_score": {"score": "GREEN"},
        "components": [
            {
                "type": "BODY",
                "text": "Hi {{1}}, everything in store is {{2}} off this week!",
                "example": {"body_text": [["Ana", "20%"]]},
            },
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop promotions"}]},
        ],
    },
    {
        "id": "1000000000000002",
        "name": "spring_promo",
        "language": "pt_BR",
        "status": "APPROVED",
        "category": "MARKETING",
        "parameter_format": "POSITIONAL",
        "quality_score": {"score": "GREEN"},
        "components": [
            {
                "type": "BODY",
                "text": "Oi {{1}}, tudo na loja com {{2}} de desconto esta semana!",
                "example": {"body_text": [["Ana", "20%"]]},
            },
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Parar promoções"}]},
        ],
    },
    {
        "id": "1000000000000003",
        "name": "order_update",
        "language": "en_US",
        "status": "APPROVED",
        "category": "UTILITY",
        "parameter_format": "NAMED",
        "quality_score": {"score": "UNKNOWN"},
        "components": [
            {
                "type": "BODY",
                "text": "Hello {{first_name}}, your order {{order_id}} has shipped.",
                "example": {
                    "body_text_named_params": [
                        {"param_name": "first_name", "example": "Ana"},
                        {"param_name": "order_id", "example": "A-1042"},
                    ]
                },
            }
        ],
    },
    {
        "id": "1000000000000004",
        "name": "winter_sale",
        "language": "en_US",
        "status": "PAUSED",
        "category": "MARKETING",
        "parameter_format": "POSITIONAL",
        "quality_score": {"score": "RED"},
        "components": [{"type": "BODY", "text": "Winter sale: {{1}} off!"}],
    },
]


def load_templates(path: str | Path | None) -> list[dict[str, Any]]:
    """Templates from a `{"data": [...]}` JSON file, or the demo set when `path` is None."""
    if path is None:
        return list(DEMO_TEMPLATES)
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"templates file {path}: {exc}") from exc
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise ValueError(f'templates file {path}: expected an object {{"data": [...]}}')
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not item.get("name") or not item.get("language"):
            raise ValueError(f"templates file {path}: data[{index}] needs a name and a language")
    return data


def approved_keys(templates: list[dict[str, Any]]) -> frozenset[tuple[str, str]]:
    return frozenset(
        (t["name"], t["language"]) for t in templates if t.get("status", "APPROVED") == "APPROVED"
    )


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def _body(components: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((c for c in components if str(c.get("type", "")).upper() == "BODY"), None)


def demo_template(name: str, language: str = "en_US") -> dict[str, Any]:
    return next(t for t in DEMO_TEMPLATES if (t["name"], t["language"]) == (name, language))


def example_components(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The `components` of a send that fits `template`, from its own example values (the
    simulator's tests and benchmark send these)."""
    body = _body(template.get("components", []))
    example = body.get("example", {}) if body else {}
    if "body_text_named_params" in example:
        parameters = [
            {"type": "text", "text": item["example"], "parameter_name": item["param_name"]}
            for item in example["body_text_named_params"]
        ]
    else:
        parameters = [{"type": "text", "text": v} for v in (example.get("body_text") or [[]])[0]]
    return [{"type": "body", "parameters": parameters}] if parameters else []


def parameter_mismatch(known: dict[str, Any], sent: dict[str, Any]) -> tuple[int, str] | None:
    """(code, details) when a send's body parameters do not fit the template it names, as
    the API answers: the wrong number of them 132000, a NAMED template's parameter without
    the `parameter_name` of one of its variables 132012. None when they fit (or the
    template's body is not known)."""
    body = _body(known.get("components", []))
    if body is None:
        return None
    variables = list(dict.fromkeys(_PLACEHOLDER.findall(str(body.get("text", "")))))
    sent_body = _body(sent.get("components", []))  # checked by _validate: typed objects
    given: list[dict[str, Any]] = sent_body.get("parameters", []) if sent_body else []
    if len(given) != len(variables):
        return 132000, (
            f"Number of parameters does not match the expected number of params: body of "
            f"{known['name']} takes {len(variables)}, got {len(given)}"
        )
    if str(known.get("parameter_format", "POSITIONAL")).upper() == "NAMED":
        names = [p.get("parameter_name") for p in given]
        if sorted(map(str, names)) != sorted(variables):
            return 132012, (
                f"Parameter format does not match format in the created template: "
                f"{known['name']} names {variables}, got {names}"
            )
    return None


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"sim:{index}".encode()).decode().rstrip("=")


def _index(cursor: str) -> int:
    padded = cursor + "=" * (-len(cursor) % 4)
    text = base64.urlsafe_b64decode(padded.encode()).decode()
    if not text.startswith("sim:"):
        raise ValueError(cursor)
    return int(text[4:])


def template_page(
    templates: list[dict[str, Any]], *, query: str, base_url: str
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for one page. Supports `limit`, `after`, `status`, `name`."""
    params = {key: values[-1] for key, values in parse_qs(query).items()}
    try:
        limit = min(int(params.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
        start = _index(params["after"]) + 1 if params.get("after") else 0
    except (ValueError, UnicodeDecodeError):
        return 400, {"message": "(#100) Invalid parameter: limit or after", "code": 100}
    if limit < 1:
        return 400, {"message": "(#100) Invalid parameter: limit must be positive", "code": 100}
    selected = [
        t
        for t in templates
        if ("status" not in params or t.get("status") == params["status"])
        and ("name" not in params or t.get("name") == params["name"])
    ]
    page = selected[start : start + limit]
    body: dict[str, Any] = {"data": page}
    if page:
        after = _cursor(start + len(page) - 1)
        body["paging"] = {"cursors": {"before": _cursor(start), "after": after}}
        if start + len(page) < len(selected):
            next_params = {k: v for k, v in params.items() if k != "after"}
            next_params.update(limit=str(limit), after=after)
            body["paging"]["next"] = f"{base_url}?{urlencode(next_params)}"
    return 200, body
