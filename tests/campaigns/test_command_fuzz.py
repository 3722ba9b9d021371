"""Every management command with bad arguments: one line on stderr, a non-zero exit, never a
traceback, and nothing written."""

import json

import pytest
from django.core.management import execute_from_command_line, get_commands, load_command_class

from campaigns.commands import SafeCommand
from campaigns.models import Campaign, MessageTemplate, SenderNumber, WhatsAppAccount
from tests.factories import SenderFactory, TemplateFactory

# run_from_argv closes the connections when it ends, so no test transaction can wrap it.
pytestmark = pytest.mark.django_db(transaction=True)

LONG = "x" * 700
SENDER_ID = "1065403522"
OK_SENDER = ["--phone-number-id", "1065", "--waba-id", "1020", "--display-number", "+15550783881"]


def _campaign(*extra, template="hello", csv="{csv}"):
    base = {"--name": "Spring", "--csv": csv, "--sender": SENDER_ID, "--template": template}
    args = dict(base)
    flags = list(extra)
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        args[flag] = value
    return ["create_campaign", *[x for pair in args.items() for x in pair]]


CASES = [
    ["add_sender"],
    ["add_sender", *OK_SENDER[:1], LONG[:65], *OK_SENDER[2:]],
    ["add_sender", *OK_SENDER[:3], "1 2", *OK_SENDER[4:]],
    ["add_sender", *OK_SENDER[:5], "12"],
    ["add_sender", *OK_SENDER, "--rate", "0"],
    ["add_sender", *OK_SENDER, "--rate", "abc"],
    ["add_sender", *OK_SENDER, "--rate", "3000000000"],
    ["add_sender", *OK_SENDER, "--name", LONG],
    ["add_sender", *OK_SENDER, "--name", "tab\there"],
    ["campaign_status", "abc"],
    ["campaign_status", "9" * 30],
    ["campaign_status", "999999"],
    ["create_campaign"],
    _campaign("--name", LONG),
    _campaign("--name", "   "),
    _campaign("--priority", "40000"),
    _campaign("--priority", "-32769"),
    _campaign("--priority", "high"),
    _campaign(template="hello@3000000000"),
    _campaign(template="hello@0"),
    _campaign(template=LONG),
    _campaign(template="hello:" + "x" * 40),
    _campaign(template="numeric"),
    _campaign("--start", "2000-01-01T00:00"),
    _campaign("--start", "tomorrow"),
    _campaign(csv="/dev/zero"),
    _campaign(csv="/nonexistent.csv"),
    _campaign("--sender", "nope"),
    _campaign("--sender", LONG),
    _campaign("--region", "ZZ"),
    ["load_templates", "/dev/zero", "--waba-id", "1020"],
    ["load_templates", "/nonexistent.json", "--waba-id", "1020"],
    ["load_templates", "{tmp}", "--waba-id", "1020"],
    ["load_templates", "{numeric_json}", "--waba-id", "1020"],
    ["load_templates", "{long_name_json}", "--waba-id", "1020"],
    ["load_templates", "{deep_json}", "--waba-id", "1020"],
    ["load_templates", "{numeric_json}", "--waba-id", LONG[:65]],
    ["load_templates", "{numeric_json}", "--waba-id", "../x"],
    ["sync_templates", "--waba-id", "../x"],
    ["sync_templates", "--waba-id", LONG[:65]],
    ["sync_numbers", "--waba-id", "../x"],
    ["sync_numbers", "../x"],
    ["sync_numbers", LONG[:65]],
    ["sync_numbers", "424242"],
    ["demo", "--error-rate", "bad"],
    ["demo", "--error-rate", "131000=2"],
    ["demo", "--error-rate", "nonsense=0.1"],
    ["demo", "--contacts", "0"],
    ["demo", "--rate", "x"],
    ["demo", "--latency-ms", "-5"],
    ["demo", "--max-seconds", "nan"],
    ["run_sender", "--max-seconds", "0"],
    ["run_sender", "--max-seconds", "nan"],
    ["run_sender", "--worker-id", LONG],
    ["simulate_whatsapp", "--port", "99999"],
    ["simulate_whatsapp", "--port", "-1"],
    ["simulate_whatsapp", "--host", "bad host"],
    ["simulate_whatsapp", "--mps", "-1"],
    ["simulate_whatsapp", "--log-level", "LOUD"],
    ["simulate_whatsapp", "--error-rate", "131000=x"],
    ["demo", "--port", "0"],
    ["demo", "--reply-rate", "2"],
    ["forget_contact", "abc"],
    ["forget_contact", "+14155550123", "--region", "ZZ"],
    ["forget_contact"],
    ["purge", "--batch-size", "0"],
    ["purge", "--batch-size", "many"],
    ["apply_webhooks", "--batch-size", "0"],
    ["apply_webhooks", "--batch-size", str(10**12)],
    ["apply_webhooks", "--max-seconds", "-1"],
    _campaign("--valid-until", "yesterday"),
    _campaign("--valid-until", "2000-01-01T00:00"),
    _campaign("--window", "9-20"),
    _campaign("--window", "09:00-25:00"),
    _campaign("--window", "09:00-20:00", "--days", "funday"),
    _campaign("--days", "mon-fri"),
    _campaign("--frequency-cap", "lots"),
    ["suppress"],
    ["suppress", "12ab"],
    ["suppress", "+14155550123", "--region", "ZZ"],
    ["suppress", "+14155550123", "--reason", LONG],
]


@pytest.fixture
def files(tmp_path):
    sender = SenderFactory(phone_number_id=SENDER_ID)
    TemplateFactory(account=sender.account, name="hello")
    # Stored before load_templates checked texts (or edited by hand): BODY text is a number.
    TemplateFactory(
        account=sender.account, name="numeric", components=[{"type": "BODY", "text": 12}]
    )
    csv = tmp_path / "contacts.csv"
    csv.write_text("phone,name\n+14155550123,Ana\n")
    numeric = tmp_path / "numeric.json"
    item = {"name": "n", "language": "en", "status": "APPROVED"}
    numeric.write_text(
        json.dumps({"data": [{**item, "components": [{"type": "BODY", "text": 3}]}]})
    )
    long_name = tmp_path / "long.json"
    long_name.write_text(json.dumps({"data": [{**item, "name": LONG, "components": []}]}))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    return {
        "csv": str(csv),
        "tmp": str(tmp_path),
        "numeric_json": str(numeric),
        "long_name_json": str(long_name),
        "deep_json": str(deep),
    }


def _counts():
    return [m.objects.count() for m in (Campaign, MessageTemplate, SenderNumber, WhatsAppAccount)]


@pytest.mark.parametrize("argv", CASES, ids=lambda a: " ".join(a)[:60])
def test_bad_arguments_give_one_line_and_a_non_zero_exit(argv, files, capsys):
    argv = [a.format(**files) for a in argv]
    before = _counts()
    with pytest.raises(SystemExit) as exit_info:
        execute_from_command_line(["manage.py", *argv])
    out, err = capsys.readouterr()
    assert exit_info.value.code not in (0, None)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert len(lines[0]) < 400, lines[0]
    assert _counts() == before


PROJECT_APPS = ("campaigns", "messaging", "webhooks")


def test_every_project_command_is_a_safe_command_with_bad_cases_above():
    """A new command joins the table: it gets one-line errors and at least one bad case."""
    ours = {name: app for name, app in get_commands().items() if app in PROJECT_APPS}
    assert ours, "no project commands found"
    for name, app in ours.items():
        assert isinstance(load_command_class(app, name), SafeCommand), name
    assert set(ours) <= {argv[0] for argv in CASES}, set(ours) - {argv[0] for argv in CASES}
