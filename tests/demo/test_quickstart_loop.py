"""The quickstart's demo on SQLite, end to end: webhooks applied, replies, an opt-out, a user.

The demo runs as a subprocess on its own SQLite file (the suite's database stays PostgreSQL),
as `scripts/quickstart` runs it, against the real simulator over loopback.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from django.conf import settings


def test_the_sqlite_demo_shows_the_whole_loop(tmp_path: Path):
    database = tmp_path / "demo.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "DEBUG": "1",
        "REDIS_URL": "",
    }
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "demo",
            "--contacts=400",
            "--rate=300",
            "--latency-ms=10",
            "--error-rate=131026=0.01",
            "--reply-rate=0.1",
            "--opt-out-rate=0.05",
            "--max-seconds=120",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for label in ("accepted", "delivered", "read", "replied", "failed", "opted out"):
        assert f"  {label}" in out
    assert "Admin user 'demo', password " in out

    db = sqlite3.connect(database)
    total, sent, delivered, read, failed = db.execute(
        "SELECT total, sent, delivered, read, failed FROM campaigns_campaign"
    ).fetchone()
    assert total == 400
    assert 0 < read <= delivered <= sent <= total
    assert failed > 0
    # Webhook failures carry their code; the status log holds every status applied.
    codes = {c for (c,) in db.execute("SELECT DISTINCT error_code FROM messaging_outboundmessage")}
    assert 131026 in codes
    assert db.execute("SELECT count(*) FROM webhooks_statuslog").fetchone()[0] >= delivered + read
    assert (
        db.execute("SELECT count(*) FROM webhooks_rawevent WHERE applied_at IS NULL").fetchone()[0]
        == 0
    )
    replies = db.execute(
        "SELECT count(*) FROM webhooks_inboundmessage WHERE campaign_id IS NOT NULL"
    ).fetchone()[0]
    assert replies > 0
    opted_out = db.execute(
        "SELECT count(*) FROM campaigns_suppression WHERE source = 'keyword'"
    ).fetchone()[0]
    assert opted_out > 0
    assert db.execute("SELECT is_staff FROM auth_user WHERE username = 'demo'").fetchone() == (1,)
