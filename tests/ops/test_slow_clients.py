"""The documented deployment (scripts/serve: nginx in front of gunicorn) keeps answering while
clients announce bodies they never send, and takes a correctly signed chunked webhook.

Everything runs on loopback; every socket has a timeout and every wait a bound.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from webhooks.signature import sign

ROOT = Path(__file__).resolve().parents[2]
SECRET = "slow-client-secret"
SLOW_CLIENTS = 20
CLIENT_TIMEOUT = 3  # nginx drops a stalled client after this many seconds

# The server writes to the test database from its own processes: no test transaction here.
# nginx comes from scripts/test (scripts/debian.sh): a missing one fails, never skips.
pytestmark = pytest.mark.django_db(transaction=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str, timeout: float = 20.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _wait_until_up(port: int, server: subprocess.Popen, bound: float = 60.0) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        assert server.poll() is None, "scripts/serve exited"
        try:
            if _get(port, "/health/", timeout=2) == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("the deployment did not answer /health/ in time")


@pytest.fixture
def deployment(django_db_setup):
    from django.db import connection

    db = connection.settings_dict
    run_dir = Path(tempfile.mkdtemp(prefix="wac-serve-", dir="/tmp"))
    os.chmod(run_dir, 0o755)  # nginx's workers (nobody, when run as root) reach their buffers
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:"
        f"{db['PORT']}/{db['NAME']}",
        "DEBUG": "false",
        "SECRET_KEY": "slow-client-test-" + "k" * 40,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "WHATSAPP_APP_SECRET": SECRET,
        "WEBHOOK_KICK_SECONDS": "0",
        "STATIC_ROOT": str(run_dir / "static"),
        "WAC_RUN_DIR": str(run_dir / "nginx"),
        "WAC_CLIENT_TIMEOUT": str(CLIENT_TIMEOUT),
        # Fewer threads than slow clients: without the proxy they would all be held.
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "2",
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    port, app_port = _free_port(), _free_port()
    env |= {"WAC_LISTEN": f"127.0.0.1:{port}", "WAC_APP_BIND": f"127.0.0.1:{app_port}"}
    server = subprocess.Popen([str(ROOT / "scripts" / "serve")], cwd=ROOT, env=env)
    try:
        _wait_until_up(port, server)
        yield port, app_port
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        shutil.rmtree(run_dir, ignore_errors=True)


def _stalled_client(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /webhooks/whatsapp/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"object"'
    )
    return sock


def test_stalled_bodies_neither_block_the_server_nor_stay_open(deployment):
    port, _ = deployment
    stalled = [_stalled_client(port) for _ in range(SLOW_CLIENTS)]
    try:
        for _ in range(3):
            assert _get(port, "/health/") == 200
            assert _get(port, "/admin/login/") == 200
        # nginx drops every stalled client by itself (408, then close): nothing waits forever.
        for sock in stalled:
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:80]
    finally:
        for sock in stalled:
            sock.close()


def _post_chunked(port: int, body: bytes, signature: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        pieces = [body[i : i + 37] for i in range(0, len(body), 37)]
        conn.request(
            "POST",
            "/webhooks/whatsapp/",
            body=iter(pieces),
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
            encode_chunked=True,
        )
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_signed_chunked_body_is_accepted_through_nginx_and_by_gunicorn_alone(deployment):
    from webhooks.models import RawEvent

    port, app_port = deployment
    for target in (port, app_port):
        body = json.dumps(
            {"object": "whatsapp_business_account", "entry": [{"id": str(target), "changes": []}]}
        ).encode()
        assert _post_chunked(target, body, sign(body, SECRET)) == 200
        assert _post_chunked(target, body, sign(body + b" ", SECRET)) == 403
    stored = sorted(json.loads(bytes(r.body))["entry"][0]["id"] for r in RawEvent.objects.all())
    assert stored == sorted([str(port), str(app_port)])
