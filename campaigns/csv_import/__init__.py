"""Reading a campaign CSV: format checks, E.164 normalisation and template rendering.

Pure functions over a byte stream; nothing here touches the database. The importer in
`messaging/campaign_import/` drives them and writes the rows.

Row numbers count the header as row 1, as a spreadsheet shows them.
"""

from __future__ import annotations

from campaigns.csv_import.errors import CsvImportError, TemplateVariableError
from campaigns.csv_import.interleave import interleave_pattern
from campaigns.csv_import.phones import check_region, normalise_phone, recipient_phone
from campaigns.csv_import.reader import (
    DELIMITERS,
    NAME_HEADER,
    PHONE_HEADERS,
    CsvFile,
    CsvLayout,
)
from campaigns.csv_import.rendering import (
    ComponentPlan,
    Slot,
    TemplatePlan,
    compile_template,
    is_link,
    plan_json,
    render_components,
    render_plan,
    required_columns,
    value_problem,
    value_problem_sql,
)
from campaigns.csv_import.rows import CsvRow, check_row, parse_rows

__all__ = [
    "DELIMITERS",
    "NAME_HEADER",
    "PHONE_HEADERS",
    "ComponentPlan",
    "CsvFile",
    "CsvImportError",
    "CsvLayout",
    "CsvRow",
    "Slot",
    "TemplatePlan",
    "TemplateVariableError",
    "check_region",
    "check_row",
    "compile_template",
    "interleave_pattern",
    "is_link",
    "normalise_phone",
    "parse_rows",
    "plan_json",
    "recipient_phone",
    "render_components",
    "render_plan",
    "required_columns",
    "value_problem",
    "value_problem_sql",
]
