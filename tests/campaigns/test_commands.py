"""The operator commands: output, JSON, and a non-zero exit with a clear message on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from campaigns.models import Campaign, MessageTemplate, SenderNumber, WhatsAppAccount
from messaging.models import OutboundMessage, OutboundStatus
from tests import factories

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
CSV = "phone,name,code\n+14155552671,Ann,A1\n+14155552672,Bob,B2\n12345,X,Y\n+14155552673,Cy,C3\n"


def run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def manage(*args: str) -> subprocess.CompletedProcess:
    """manage.py in a child process, against the test database (committed data only)."""
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- create_campaign -----------------------------------------------------------------------


def test_create_campaign_prints_id_and_counts(sender, templates, write_csv):
    out = run(
        "create_campaign",
        "--name=Spring",
        f"--csv={write_csv(CSV)}",
        f"--sender={sender.phone_number_id}",
        "--template=offer_0",
        "--template=offer_1:en_US@2",
    )
    campaign = Campaign.objects.get()
    assert out.startswith(f"campaign {campaign.pk} (Spring) draft: 3 queued, 1 rejected")
    assert "row 4: '12345': too short for US" in out
    weights = dict(campaign.template_links.values_list("template__name", "weight"))
    assert weights == {"offer_0": 1, "offer_1": 2}


def test_create_campaign_json_and_start_now(sender, templates, write_csv):
    out = run(
        "create_campaign",
        "--name=Now",
        f"--csv={write_csv(CSV)}",
        f"--sender={sender.phone_number_id}",
        "--template=offer_2",
        "--start=now",
        "--json",
    )
    data = json.loads(out)
    campaign = Campaign.objects.get()
    assert data == {
        "id": campaign.pk,
        "queued": 3,
        "rejected": 1,
        "duplicates": 0,
        "suppressed": 0,
        "status": "running",
    }


def test_create_campaign_schedules_with_an_iso_start(sender, templates, write_csv):
    out = run(
        "create_campaign",
        "--name=Later",
        f"--csv={write_csv(CSV)}",
        f"--sender={sender.phone_number_id}",
        "--template=offer_0",
        "--start=2099-01-02T09:00:00+01:00",
        "--json",
    )
    assert json.loads(out)["status"] == "scheduled"
    assert Campaign.objects.get().start_at.isoformat() == "2099-01-02T08:00:00+00:00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sender=999"], "unknown sender '999'"),
        (["--template=nope"], "--template 'nope': no such template"),
        (["--template=offer_0@0"], "the weight must be a whole number"),
        (["--start=tomorrow"], "expected 'now' or an ISO-8601"),
        (["--region=XX"], "unknown default region 'XX'"),
    ],
)
def test_create_campaign_bad_arguments(sender, templates, write_csv, args, message):
    base = {
        "--name": "x",
        "--csv": str(write_csv(CSV)),
        "--sender": sender.phone_number_id,
        "--template": "offer_0",
    }
    for arg in args:
        key, _, value = arg.partition("=")
        base[key] = value
    with pytest.raises(CommandError, match=message):
        run("create_campaign", *[f"{k}={v}" for k, v in base.items()])
    assert not Campaign.objects.exists()


def test_create_campaign_asks_for_a_language_when_ambiguous(sender, templates, write_csv):
    factories.TemplateFactory(account=sender.account, name="offer_0", language="pt_BR")
    with pytest.raises(CommandError, match=r"several languages \(en_US, pt_BR\)"):
        run(
            "create_campaign",
            "--name=x",
            f"--csv={write_csv(CSV)}",
            f"--sender={sender.phone_number_id}",
            "--template=offer_0",
        )


def test_create_campaign_bad_csv_names_file_and_row(sender, templates, write_csv):
    path = write_csv("phone,name,code\n+14155552671,Ann\n")
    with pytest.raises(CommandError, match=rf"{path}: row 2: expected 3 fields, got 2"):
        run(
            "create_campaign",
            "--name=x",
            f"--csv={path}",
            f"--sender={sender.phone_number_id}",
            "--template=offer_0",
        )


@pytest.mark.django_db(transaction=True)
def test_create_campaign_exit_codes(sender, templates, write_csv, tmp_path):
    ok = manage(
        "create_campaign",
        "--name=Proc",
        f"--csv={write_csv(CSV)}",
        f"--sender={sender.phone_number_id}",
        "--template=offer_0",
        "--json",
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["queued"] == 3
    missing = manage(
        "create_campaign",
        "--name=Proc",
        f"--csv={tmp_path / 'missing.csv'}",
        f"--sender={sender.phone_number_id}",
        "--template=offer_0",
    )
    assert missing.returncode == 1
    assert "no such file" in missing.stderr
    assert Campaign.objects.count() == 1


# --- campaign_status -----------------------------------------------------------------------


def test_campaign_status_json_has_counters_and_every_queue_state(sender, templates, write_csv):
    run(
        "create_campaign",
        "--name=S",
        f"--csv={write_csv(CSV)}",
        f"--sender={sender.phone_number_id}",
        "--template=offer_0",
    )
    campaign = Campaign.objects.get()
    first = OutboundMessage.objects.order_by("id").first()
    OutboundMessage.objects.filter(pk=first.pk).update(status=OutboundStatus.DELIVERED)
    Campaign.objects.filter(pk=campaign.pk).update(sent=1, delivered=1)
    data = json.loads(run("campaign_status", str(campaign.pk), "--json"))
    assert {"id", "name", "status", "total", "sent", "delivered", "read", "failed", "queue"} <= (
        data.keys()
    )
    assert (data["id"], data["name"], data["status"]) == (campaign.pk, "S", "draft")
    assert (data["total"], data["sent"], data["delivered"], data["read"], data["failed"]) == (
        3,
        1,
        1,
        0,
        0,
    )
    assert data["queue"] == {s.label: 0 for s in OutboundStatus} | {"queued": 2, "delivered": 1}
    assert data["rejected"] == 1


def test_campaign_status_text(sender, templates, write_csv):
    run(
        "create_campaign",
        "--name=S",
        f"--csv={write_csv(CSV)}",
        f"--sender={sender.phone_number_id}",
        "--template=offer_0",
    )
    campaign = Campaign.objects.get()
    out = run("campaign_status", str(campaign.pk))
    assert f"campaign {campaign.pk} (S): draft" in out
    assert "queue: queued 3, retry 0" in out


@pytest.mark.django_db(transaction=True)
def test_campaign_status_unknown_id_exits_non_zero():
    result = manage("campaign_status", "424242", "--json")
    assert result.returncode == 1
    assert "no campaign with id '424242'" in result.stderr
    assert result.stdout == ""


# --- add_sender ----------------------------------------------------------------------------


def test_add_sender_creates_account_and_sender_then_updates_it():
    out = run(
        "add_sender",
        "--phone-number-id=106540352242922",
        "--waba-id=102290129340398",
        "--display-number=+1 555 078 3881",
        "--name=Acme",
    )
    assert "added" in out and "(new account)" in out
    sender = SenderNumber.objects.get()
    assert (sender.display_number, sender.rate_mps, sender.account.name) == (
        "+15550783881",
        80,
        "Acme",
    )
    out = run(
        "add_sender",
        "--phone-number-id=106540352242922",
        "--waba-id=102290129340398",
        "--display-number=+15550783882",
        "--rate=250",
    )
    assert "updated" in out
    sender.refresh_from_db()
    assert (sender.display_number, sender.rate_mps) == ("+15550783882", 250)
    assert (SenderNumber.objects.count(), WhatsAppAccount.objects.count()) == (1, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate=0"], "between 1 and 1000"),
        (["--rate=1001"], "between 1 and 1000"),
        (["--display-number=5550783881"], "E.164"),
        (["--display-number=+0123456789"], "E.164"),
        (["--phone-number-id=12 34"], "expected a Graph id"),
    ],
)
def test_add_sender_refuses_bad_values(args, message):
    base = {
        "--phone-number-id": "106540352242922",
        "--waba-id": "102290129340398",
        "--display-number": "+15550783881",
    }
    for arg in args:
        key, _, value = arg.partition("=")
        base[key] = value
    with pytest.raises(CommandError, match=message):
        run("add_sender", *[f"{k}={v}" for k, v in base.items()])
    assert not SenderNumber.objects.exists()


def test_add_sender_refuses_moving_a_number_to_another_account(sender):
    with pytest.raises(CommandError, match="belongs to WABA"):
        run(
            "add_sender",
            f"--phone-number-id={sender.phone_number_id}",
            "--waba-id=999",
            "--display-number=+15550783881",
        )


# --- load_templates ------------------------------------------------------------------------

GRAPH_LIST = {
    "data": [
        {
            "id": "1625063511800527",
            "name": "spring_promo_v2",
            "language": "pt_BR",
            "status": "APPROVED",
            "category": "MARKETING",
            "parameter_format": "POSITIONAL",
            "components": [
                {"type": "HEADER", "format": "IMAGE"},
                {"type": "BODY", "text": "Oi {{1}}, tudo por {{2}}!"},
            ],
        },
        {
            "id": "77",
            "name": "welcome",
            "language": "en_US",
            "status": "PENDING",
            "category": "UTILITY",
            "parameter_format": "NAMED",
            "components": [{"type": "BODY", "text": "Hi {{first_name}}"}],
        },
    ],
    "paging": {"cursors": {"before": "a", "after": "b"}},
}


def write_json(tmp_path: Path, content) -> Path:
    path = tmp_path / "templates.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_load_templates_upserts_by_name_and_language(tmp_path):
    path = write_json(tmp_path, GRAPH_LIST)
    out = run("load_templates", str(path), "--waba-id=102290129340398")
    assert "2 template(s) loaded" in out and "2 created" in out
    promo = MessageTemplate.objects.get(name="spring_promo_v2", language="pt_BR")
    assert (promo.graph_id, promo.status, promo.category) == (
        "1625063511800527",
        "APPROVED",
        "MARKETING",
    )
    assert promo.components[1]["text"] == "Oi {{1}}, tudo por {{2}}!"
    assert promo.synced_at is not None
    assert MessageTemplate.objects.get(name="welcome").parameter_format == "NAMED"

    GRAPH_LIST["data"][1]["status"] = "APPROVED"
    try:
        out = run(
            "load_templates", str(write_json(tmp_path, GRAPH_LIST)), "--waba-id=102290129340398"
        )
    finally:
        GRAPH_LIST["data"][1]["status"] = "PENDING"
    assert "0 created, 2 updated" in out
    assert MessageTemplate.objects.count() == 2
    assert MessageTemplate.objects.get(name="welcome").status == "APPROVED"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"data": [', r"not valid JSON \(line 1"),
        ('["x"]', 'expected an object with a "data" list'),
        ({"data": [{"name": "x", "language": "en_US"}]}, r"data\[0\]: missing status, components"),
        (
            {"data": [{"name": "x", "language": "en", "status": "APPROVED", "components": "no"}]},
            "'components' must be a list",
        ),
    ],
)
def test_load_templates_refuses_bad_files(tmp_path, content, message):
    with pytest.raises(CommandError, match=message):
        run("load_templates", str(write_json(tmp_path, content)), "--waba-id=1")
    assert not MessageTemplate.objects.exists()


def test_load_templates_missing_file(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        run("load_templates", str(tmp_path / "none.json"), "--waba-id=1")
