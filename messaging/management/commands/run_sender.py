"""Run the paced sender in the foreground: every active sender number, in this process."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

from django.core.management.base import BaseCommand, CommandError

from messaging.maintenance import active_sender_ids, run_maintenance
from messaging.sender import run_number

MAINTENANCE_INTERVAL = 5.0


class Command(BaseCommand):
    help = "Send due messages of running campaigns at each number's rate (foreground engine)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--until-idle", action="store_true", help="exit when nothing runs")
        parser.add_argument("--max-seconds", type=float, default=24 * 3600)
        parser.add_argument("--worker-id", default="", help="name in claimed_by (default host:pid)")

    def handle(self, *args, until_idle: bool, max_seconds: float, worker_id: str, **options):
        if max_seconds <= 0:
            raise CommandError("--max-seconds must be positive")
        worker = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        deadline = time.monotonic() + max_seconds
        loops: dict[int, threading.Thread] = {}
        next_maintenance = 0.0
        while not stop.is_set() and time.monotonic() < deadline:
            if time.monotonic() >= next_maintenance:
                run_maintenance()
                next_maintenance = time.monotonic() + MAINTENANCE_INTERVAL
            for sender_id in active_sender_ids():
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
            alive = [t for t in loops.values() if t.is_alive()]
            if until_idle and not alive and not active_sender_ids() and not _scheduled_soon():
                break
            stop.wait(0.5)
        stop.set()
        for thread in loops.values():
            thread.join()


def _scheduled_soon() -> bool:
    from campaigns.models import Campaign

    return Campaign.objects.filter(status=Campaign.Status.SCHEDULED).exists()
