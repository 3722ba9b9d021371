"""What every benchmark needs first: the services up, a database of its own, Django set up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
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


# --- CPU of other processes (servers the benchmark does not own: gunicorn, PostgreSQL) ------
_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def child_pids(ppid: int) -> list[int]:
    """The live children of `ppid` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) and int(fields[1]) == ppid:
            out.append(int(entry))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + sys CPU seconds of these live processes so far (an exited one counts 0)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def postgres_cpu_seconds(database_url: str) -> float:
    """CPU seconds of the database so far: the postmaster, its live children, and the children
    it has reaped (a backend whose connection closed counts too, through cutime/cstime)."""
    pids = postgres_pids(database_url)
    fields = _stat_fields(pids[0])
    reaped = (int(fields[13]) + int(fields[14])) / _TICKS if fields else 0.0
    return cpu_seconds(pids) + reaped


def postgres_pids(database_url: str) -> list[int]:
    """The postmaster of scripts/services.sh's cluster for this URL's port, and its children
    (backends, autovacuum, checkpointer…): the database's whole CPU, for this helper's own
    cluster only."""
    port = urlsplit(database_url).port
    directory = Path(os.environ.get("WAC_PG_DIR", f"/tmp/wacampaigns-pg-{port}"))
    postmaster = int((directory / "postmaster.pid").read_text().split()[0])
    return [postmaster, *child_pids(postmaster)]


def copy_rows(
    cursor: Any,
    table: str,
    *,
    prototype: int,
    series: tuple[int, int],
    overrides: dict[str, str],
) -> None:
    """Insert one copy of row `prototype` of `table` per g in the inclusive `series`, with SQL
    expressions (which may use g) for the `overrides` columns. The column list is read from
    the catalogue, so a column a later migration adds is copied with the prototype's value
    instead of breaking the benchmark's seed."""
    cursor.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
        "AND column_name <> 'id' ORDER BY ordinal_position",
        [table],
    )
    columns = [name for (name,) in cursor.fetchall()]
    values = [overrides.get(c, f'p."{c}"') for c in columns]
    names = ", ".join(f'"{c}"' for c in columns)
    cursor.execute(
        f"INSERT INTO {table} ({names}) SELECT {', '.join(values)} "
        f"FROM {table} AS p, generate_series(%s, %s) AS g WHERE p.id = %s",
        [series[0], series[1], prototype],
    )


def start_gunicorn(*, port: int, workers: int, threads: int, env: dict[str, str]) -> Any:
    """gunicorn serving config.wsgi on 127.0.0.1:`port` (gthread workers), as production runs
    it; the caller stops the returned Popen."""
    return subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            "config.wsgi",
            "-k",
            "gthread",
            "-w",
            str(workers),
            "--threads",
            str(threads),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )


def start_redis(port: str) -> None:
    """A throwaway Redis on loopback (no persistence), daemonised; stop it with SHUTDOWN."""
    subprocess.run(
        [
            "redis-server",
            "--port",
            port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def request_schedule(seconds: float, rate: float) -> Iterator[tuple[int, float]]:
    """(n, scheduled start) of a load client's requests for `seconds`: back to back when
    `rate` is 0 (closed loop), else at n / rate after the start (open loop, sleeping until
    each one's time; latency is measured from `scheduled`, so queueing counts)."""
    start = time.perf_counter()
    deadline = start + seconds
    n = 0
    while True:
        now = time.perf_counter()
        if now >= deadline:
            return
        scheduled = now
        if rate:
            scheduled = start + n / rate
            if scheduled >= deadline:
                return
            if scheduled > now:
                time.sleep(scheduled - now)
        yield n, scheduled
        n += 1
