"""plan_json (the JSON text the PostgreSQL import COPYs) says what render_plan says."""

from __future__ import annotations

import json

import pytest

from campaigns.csv_import import compile_template, plan_json, render_plan
from tests import factories

pytestmark = pytest.mark.django_db

TEMPLATES = [
    ("POSITIONAL", [{"type": "BODY", "text": "Hi {{1}}, code {{2}}"}]),
    ("NAMED", [{"type": "BODY", "text": "Hi {{first_name}}, see {{city}}"}]),
    ("POSITIONAL", [{"type": "BODY", "text": "Hello!"}]),
    (
        "POSITIONAL",
        [
            {"type": "HEADER", "format": "TEXT", "text": "Offer for {{1}}"},
            {"type": "BODY", "text": "Hello {{1}} {{2}}"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Stop"},
                    {"type": "URL", "text": "Open", "url": "https://shop.example/o/{{1}}"},
                    {"type": "COPY_CODE", "example": "SAVE10"},
                ],
            },
        ],
    ),
    ("POSITIONAL", [{"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "{{1}}"}]),
    ("POSITIONAL", [{"type": "HEADER", "format": "DOCUMENT"}]),
]
COLUMNS = ["phone", "name", "first_name", "city", "code", "header_1", "button_1", "button_2"]
ROWS = [
    {
        "name": 'Ann "the" \\ Ünïcødé ✓',
        "first_name": "Zoë",
        "city": "São Paulo",
        "code": "A1</script>",
        "header_1": "VIPs",
        "button_1": "abc123",
        "button_2": "SAVE10",
        "header_media": "HTTPS://cdn.example/a.jpg",
    },
    {
        "name": "Bob",
        "first_name": "B",
        "city": "Rome",
        "code": "\u2028 and \x7f",
        "header_1": "x",
        "button_1": "y",
        "button_2": "z",
        "header_media": "1037543291543636",
    },
]


@pytest.mark.parametrize(("fmt", "components"), TEMPLATES)
def test_the_json_text_is_render_plans_components(account, fmt, components):
    template = factories.TemplateFactory(
        account=account, components=components, parameter_format=fmt
    )
    media = any(c.get("format") in ("IMAGE", "DOCUMENT") for c in components)
    plan = compile_template(template, [*COLUMNS, "header_media"] if media else COLUMNS)
    render = plan_json(plan)
    for values in ROWS:
        assert json.loads(render(values)) == render_plan(plan, values)
