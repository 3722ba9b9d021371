"""The recipients export: outcome filter, reply time, formula cells neutralised."""

from __future__ import annotations

import csv
import io

import pytest

from campaigns.csv_export import csv_lines, neutralise_cell
from messaging.cohorts import Outcome
from messaging.exports import EXPORT_HEADER, recipient_rows

pytestmark = pytest.mark.django_db


def exported(campaign, outcome=None) -> list[dict[str, str]]:
    text = "".join(
        csv_lines(EXPORT_HEADER, recipient_rows(campaign_id=campaign.pk, outcome=outcome))
    )
    return list(csv.DictReader(io.StringIO(text)))


def test_every_recipient_with_outcome_times_and_reply(finished, template):
    rows = exported(finished)
    assert [r["name"] for r in rows] == list(finished.rows)
    replied = rows[3]
    assert replied["status"] == "read"
    assert replied["template"] == str(template)
    assert replied["replied_at"].startswith(
        finished.rows["read_replied"].read_at.date().isoformat()
    )
    assert replied["read_at"] and replied["delivered_at"] and replied["accepted_at"]
    assert rows[0]["replied_at"] == "" and rows[0]["read_at"] == ""
    failed = rows[5]
    assert (failed["status"], failed["error_code"]) == ("failed", "131026")
    # A formula in a cell is shown as text, the phone stays a number.
    assert failed["error_title"] == '\'=HYPERLINK("http://x")'
    assert failed["phone"] == finished.rows["failed_final"].phone


def test_the_export_filters_by_outcome(finished, settings):
    settings.DEBUG = False
    assert [r["name"] for r in exported(finished, Outcome.FAILED)] == [
        "failed_retryable",
        "failed_final",
    ]
    assert [r["name"] for r in exported(finished, Outcome.REPLIED)] == ["read_replied"]
    with pytest.raises(ValueError, match="unknown outcome 'bogus'"):
        list(recipient_rows(campaign_id=finished.pk, outcome="bogus"))


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("=1+2", "'=1+2"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("+14155552671", "+14155552671"),
        ("-1.5", "-1.5"),
        ("Ann", "Ann"),
        (None, ""),
        (131026, 131026),
    ],
)
def test_neutralise_cell(value, shown):
    assert neutralise_cell(value) == shown
