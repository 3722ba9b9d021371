"""Retention and erasure tests reuse the import tests' CSV writer."""

from tests.campaigns.conftest import write_csv  # noqa: F401
