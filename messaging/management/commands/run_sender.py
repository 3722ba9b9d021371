"""Run the paced sender in the foreground: every active sender number, in this process."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Any

from django.core.management.base import CommandParser

from campaigns.commands import SafeCommand, number_option, text_option
from messaging.maintenance import Supervisor
from messaging.models import OutboundMessage
from messaging.sender import run_number
from messaging.transient import Backoff, GaveUp, retry_transient


class Command(SafeCommand):
    help = "Send due messages of running campaigns at each number's rate (foreground engine)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--until-idle", action="store_true", help="exit when nothing runs")
        parser.add_argument("--max-seconds", type=float, default=24 * 3600)
        parser.add_argument("--worker-id", default="", help="name in claimed_by (default host:pid)")

    def handle(
        self, *args: Any, until_idle: bool, max_seconds: float, worker_id: str, **options: Any
    ) -> None:
        number_option("--max-seconds", max_seconds, open_lo=True)
        worker_id = text_option(
            "--worker-id", worker_id, model=OutboundMessage, field="claimed_by", required=False
        )
        worker = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        deadline = time.monotonic() + max_seconds
        supervisor = Supervisor()
        backoff = Backoff("run_sender supervisor")
        loops: dict[int, threading.Thread] = {}
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                # The database or Redis away: keep the number loops we have, try again.
                active = retry_transient(
                    supervisor.tick, backoff=backoff, stop=stop, deadline=deadline
                )
            except GaveUp:
                break
            for sender_id in active:
                if sender_id not in loops or not loops[sender_id].is_alive():
                    loops[sender_id] = threading.Thread(
                        target=run_number,
                        args=(sender_id,),
                        kwargs={
                            "worker_id": worker,
                            "max_seconds": deadline - time.monotonic(),
                            "until_idle": True,
                            "stop": stop,
                        },
                        name=f"sender-{sender_id}",
                    )
                    loops[sender_id].start()
            busy = any(t.is_alive() for t in loops.values())
            if until_idle and not busy and supervisor.idle:
                break
            stop.wait(0.5)
        stop.set()
        for thread in loops.values():
            thread.join()
