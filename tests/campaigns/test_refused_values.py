"""What WhatsApp would refuse is refused at import, row by row, with the reason; file errors
name the real row and stay short; a broken row anywhere is found before any row is used."""

from __future__ import annotations

import pytest

from campaigns.csv_import import CsvFile, CsvImportError, value_problem
from campaigns.csv_import.rendering import MAX_VARIABLE_CHARS, value_problem_sql
from campaigns.models import ImportRejection
from messaging.campaign_import import create_campaign_from_csv
from messaging.campaign_import.audience import CsvAudience
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def image_template(account):
    return factories.TemplateFactory(
        account=account,
        name="with_image",
        components=[
            {"type": "HEADER", "format": "IMAGE"},
            {"type": "BODY", "text": "Hi {{1}}"},
        ],
    )


def test_values_whatsapp_refuses_are_rejected_with_the_reason(sender, image_template, write_csv):
    long_text = "x" * (MAX_VARIABLE_CHARS + 1)
    csv = (
        "phone,first,header_media\n"
        "+14155552671,Ann,https://cdn.example.com/a.jpg\n"  # row 2: fine
        f"+14155552672,{long_text},https://cdn.example.com/b.jpg\n"  # row 3: 1,025 characters
        "+14155552673,Cy,javascript:alert(1)\n"  # row 4
        "+14155552674,Di,file:///etc/passwd\n"  # row 5
        "+18005550199,Ed,1037543291543636\n"  # row 6: toll-free
        "+19005550100,Flo,https://cdn.example.com/f.jpg\n"  # row 7: premium-rate
        "+14155552677,Gil,1037543291543636\n"  # row 8: an uploaded media id is fine
    )
    result = create_campaign_from_csv(
        name="Refusals",
        csv_file=write_csv(csv),
        sender=sender,
        templates=[(image_template, 1)],
    )
    assert result.queued == 2
    reasons = dict(ImportRejection.objects.values_list("row_number", "reason"))
    assert reasons[3].startswith(f"column 'first' is longer than {MAX_VARIABLE_CHARS} characters")
    assert reasons[4].startswith("column 'header_media' is neither an http(s) link nor")
    assert reasons[5].startswith("column 'header_media' is neither an http(s) link nor")
    assert reasons[6] == "a toll-free number, which WhatsApp cannot message"
    assert reasons[7] == "a premium-rate number, which WhatsApp cannot message"
    assert set(reasons) == {3, 4, 5, 6, 7}


@pytest.mark.parametrize(
    ("value", "column"),
    [
        ("ok", ""),
        ("x" * MAX_VARIABLE_CHARS, ""),
        ("x" * (MAX_VARIABLE_CHARS + 1), ""),
        ("https://cdn.example.com/a.jpg", "header_media"),
        ("HTTP://cdn.example.com/a b.jpg", "header_image"),
        ("javascript:alert(1)", "header_media"),
        ("https://", "header_media"),
        ("1037543291543636", "header_video"),
        ("", "header_media"),
    ],
)
def test_the_sql_check_says_what_value_problem_says(value, column):
    from django.db import connection

    sql, params = value_problem_sql("%s::text", [value], column)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", params)
        assert (cursor.fetchone()[0] or "") == value_problem(value, column)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'"phone"x,name\n+14155552671,Ann\n', "row 1 (header): "),
        (b'\n\n"phone"x,name\n+14155552671,Ann\n', "row 3 (header): "),
        (b"\n\nphone,name,name\n+14155552671,Ann,B\n", "row 3 (header): column 'name'"),
        (b"\nname,city\nAnn,Paris\n", "row 2 (header): no phone column"),
    ],
)
def test_header_errors_name_the_header_row(write_csv, content, message):
    with pytest.raises(CsvImportError) as error:
        CsvFile(write_csv(content))
    assert str(error.value).startswith(message)
    assert "row 0" not in str(error.value)


def test_a_missing_phone_column_in_a_very_wide_file_is_a_short_message(write_csv):
    header = ",".join(f"col{i}" for i in range(10_000))
    with pytest.raises(CsvImportError) as error:
        CsvFile(write_csv(header + "\n" + ",".join("v" * 10_000) + "\n"))
    text = str(error.value)
    assert len(text) < 400
    assert text.endswith("'col9' and 9,990 more")


def test_a_broken_row_at_the_end_is_found_when_the_file_is_opened(write_csv, settings):
    # (A file for a parse process is checked beside its import: test_import_parse_process.)
    settings.IMPORT_PARSE_PROCESS_FROM_ROWS = 100_000
    rows = "".join(f"+1415555{i:04d},N{i}\n" for i in range(5_000))
    path = write_csv("phone,name\n" + rows + "+14155550000,too,many\n")
    with pytest.raises(CsvImportError, match="row 5002: expected 2 fields, got 3"):
        CsvAudience(path).__enter__()  # before a single row is handed to the import
