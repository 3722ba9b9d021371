"""Production settings pass `manage.py check --deploy`; the development defaults do not."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def deploy_check(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_pass_the_deploy_check():
    result = deploy_check(
        SECRET_KEY=secrets.token_urlsafe(50),
        SUPPRESSION_HASH_PEPPER=secrets.token_urlsafe(32),
        DEBUG="false",
        ALLOWED_HOSTS="wa.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_the_development_secret_key_fails_the_deploy_check():
    result = deploy_check(DEBUG="false", ALLOWED_HOSTS="wa.example.com")
    assert result.returncode != 0
    assert "security.W009" in result.stderr
