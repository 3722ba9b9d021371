"""The two ways a campaign CSV fails: the whole file, or one row's template variable."""

from __future__ import annotations


class CsvImportError(ValueError):
    """The file cannot be imported at all; str() says what and where."""


class TemplateVariableError(ValueError):
    """A template variable has no value (a row that cannot be rendered)."""
