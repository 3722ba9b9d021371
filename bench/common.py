"""What every benchmark needs first: the services up, a database of its own, Django set up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def services_env(*, db_name: str, redis_db: int = 0) -> dict[str, str]:
    """Start scripts/services.sh's PostgreSQL and Redis if needed; their URLs, pointed at the
    benchmark's own database and Redis db (so a run never touches the tests' data)."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "services.sh")],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "WAC_DB_NAME": db_name, "WAC_REDIS_DB": str(redis_db)},
    ).stdout
    env = {}
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    db = urlsplit(env["DATABASE_URL"])
    env["DATABASE_URL"] = urlunsplit(db._replace(path=f"/{db_name}"))
    redis = urlsplit(env["REDIS_URL"])
    env["REDIS_URL"] = urlunsplit(redis._replace(path=f"/{redis_db}"))
    return env


def fresh_database(url: str) -> None:
    """Drop and re-create the database `url` names (each run starts from an empty schema)."""
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def setup_django(env: dict[str, str], *, migrate: bool = True) -> None:
    """Configure this process for `env` (production settings module), set Django up, migrate."""
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
