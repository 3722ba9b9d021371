"""Fixtures for the CSV import tests: a sender with three approved templates, CSV writers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import factories


@pytest.fixture
def templates(account):
    """Three approved templates of the sender's account, each with two body variables."""
    return [
        factories.TemplateFactory(
            account=account,
            name=f"offer_{i}",
            components=[{"type": "BODY", "text": f"T{i}: hi {{{{1}}}}, code {{{{2}}}}"}],
        )
        for i in range(3)
    ]


@pytest.fixture
def write_csv(tmp_path: Path):
    """Write text (or bytes) to a fresh file and return its path."""
    counter = {"n": 0}

    def write(content: str | bytes, *, encoding: str = "utf-8") -> Path:
        counter["n"] += 1
        path = tmp_path / f"upload_{counter['n']}.csv"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode(encoding))
        return path

    return write
