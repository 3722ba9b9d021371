"""`create_campaign --plan [--json]`: the launch plan of a file, and nothing written."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command

from campaigns.models import TemplatePrice
from tests import factories

pytestmark = pytest.mark.django_db

CSV = (
    "phone,name,timezone\n"
    "+351912300001,Ann,\n"
    "+351912300002,Bob,America/Sao_Paulo\n"
    "+351912300001,Ann again,\n"
    "+14155552671,US,\n"
    "12,bad,\n"
)


def _rows() -> dict[str, int]:
    """Rows of every model of the apps an import could write to."""
    return {
        model._meta.label: model.objects.count()
        for label in ("campaigns", "messaging")
        for model in apps.get_app_config(label).get_models()
    }


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def marketing(sender):
    return factories.TemplateFactory(
        account=sender.account, name="spring", category="MARKETING", components=[]
    )


def test_plan_json_writes_nothing(sender, marketing, tmp_path):
    TemplatePrice.objects.create(country="PT", category="MARKETING", price="0.05")
    path = tmp_path / "list.csv"
    path.write_text(CSV)
    before = _rows()

    out = _run(
        "create_campaign",
        "--name=Spring",
        f"--csv={path}",
        f"--sender={sender.phone_number_id}",
        "--template=spring",
        "--window=09:00-20:00",
        "--days=mon-fri",
        "--valid-until=2099-01-01T00:00Z",
        "--plan",
        "--json",
    )

    assert _rows() == before
    data = json.loads(out)
    plan = data["plan"]
    assert data["queued"] == 2
    assert (plan["audience"], plan["to_send"]) == (2, 2)
    assert {k: v for k, v in plan["skipped"].items() if v} == {
        "invalid": 1,
        "duplicate": 1,
        "us_marketing": 1,
    }
    assert plan["window"] == "09:00-20:00 mon,tue,wed,thu,fri"
    assert {z["zone"] for z in plan["zones"]} == {
        "Atlantic/Azores/Europe/Lisbon",
        "America/Sao_Paulo",
    }
    assert plan["cost"]["totals"] == {"USD": "0.10000"}
    assert plan["eta"] is not None and plan["waves"]


def test_plan_as_text_lists_what_is_not_priced(sender, marketing, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text(CSV)
    before = _rows()

    out = _run(
        "create_campaign",
        "--name=Spring",
        f"--csv={path}",
        f"--sender={sender.phone_number_id}",
        "--template=spring",
        "--plan",
    )

    assert _rows() == before
    assert "2 to queue, 2 sent" in out
    assert "skipped: 1 duplicate numbers" in out
    assert "not priced: 2 to PT (MARKETING)" in out
