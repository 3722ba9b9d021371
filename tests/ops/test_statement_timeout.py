"""DATABASE_STATEMENT_TIMEOUT_MS: every PostgreSQL connection of the process runs with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import django
django.setup()
from django.db import connection
from django.db.utils import OperationalError
with connection.cursor() as cursor:
    cursor.execute("SHOW statement_timeout")
    print(cursor.fetchone()[0])
    try:
        cursor.execute("SELECT pg_sleep(0.5)")
        print("finished")
    except OperationalError as exc:
        print("cancelled:", exc)
"""


def probe(**env: str) -> list[str]:
    # The server's own `postgres` database: the probe needs a connection, not our tables.
    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DATABASE_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\n", 1)


def test_the_statement_timeout_cancels_a_longer_statement():
    shown, outcome = probe(DATABASE_STATEMENT_TIMEOUT_MS="100")
    assert shown == "100ms"
    assert outcome.startswith("cancelled:") and "statement timeout" in outcome


def test_no_statement_timeout_by_default():
    shown, outcome = probe(DATABASE_STATEMENT_TIMEOUT_MS="0")
    assert shown == "0"
    assert outcome.strip() == "finished"
