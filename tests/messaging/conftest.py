"""Fixtures of the queue tests."""

from tests.campaigns.conftest import write_csv  # noqa: F401
