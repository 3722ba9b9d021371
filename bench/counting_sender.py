"""`manage.py run_sender` with counters, for bench/engine.py (never used in production).

    python -m bench.counting_sender --until-idle --max-seconds S --worker-id W

Installed at import time, before the command runs, without touching the engine's code:
- every SQL statement that goes through a Django cursor (`CursorWrapper.execute` /
  `executemany`, so every thread's connection) and every transaction commit is counted;
- every Redis command (the pacing scripts included) is counted;
- the start time of every accepted send (`GraphApiClient.send`) goes into a histogram of 10 ms
  buckets on the machine-wide CLOCK_MONOTONIC, counted from WAC_BENCH_T0, so the parent can
  merge the histograms of several processes. The array is allocated once, before the run, so
  it does not show up as growth in the peak RSS.

With WAC_BENCH_SEND_TIMES set, the wall-clock start of every accepted send is also kept per
callback data ("out:<row id>"), for bench/transactional.py.

At exit the process writes its figures as JSON to WAC_BENCH_OUT: CPU (user+sys) and peak RSS of
the run itself (after Django's start-up) and of the whole process, statement counts by kind.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from array import array
from collections import Counter

BUCKET_S = 0.01
# Fixed, so a long run and a short one carry the same array (peak RSS stays comparable).
HISTOGRAM_SECONDS = 4000


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import redis
    from django.core.management import call_command
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper

    from messaging.graph_api import GraphApiClient, OutcomeKind

    t0 = float(os.environ["WAC_BENCH_T0"])
    histogram = array("I", bytes(4 * int(HISTOGRAM_SECONDS / BUCKET_S)))
    lock = threading.Lock()
    statements: Counter[str] = Counter()
    counts = {"commits": 0, "redis": 0, "accepted": 0, "other_outcomes": 0}

    def kind(sql: str) -> str:
        # The statement's first words are enough to tell the engine's few statements apart.
        words = " ".join(str(sql).split()[:6])
        return words[:80]

    execute, executemany = CursorWrapper.execute, CursorWrapper.executemany

    def counted_execute(self, sql, params=None):
        with lock:
            statements[kind(sql)] += 1
        return execute(self, sql, params)

    def counted_executemany(self, sql, param_list):
        with lock:
            statements[kind(sql)] += 1
        return executemany(self, sql, param_list)

    commit = BaseDatabaseWrapper.commit

    def counted_commit(self):
        with lock:
            counts["commits"] += 1
        return commit(self)

    execute_command = redis.Redis.execute_command

    def counted_redis(self, *args, **options):
        with lock:
            counts["redis"] += 1
        return execute_command(self, *args, **options)

    send = GraphApiClient.send
    send_times: dict[str, float] | None = {} if os.environ.get("WAC_BENCH_SEND_TIMES") else None

    def timed_send(self, **kwargs):
        started = time.monotonic()
        wall_start = time.time()
        outcome = send(self, **kwargs)
        with lock:
            if outcome.kind == OutcomeKind.ACCEPTED:
                counts["accepted"] += 1
                if send_times is not None:
                    callback = kwargs["payload"].get("biz_opaque_callback_data", "")
                    send_times[callback] = wall_start
                index = int((started - t0) / BUCKET_S)
                if 0 <= index < len(histogram):
                    histogram[index] += 1
            else:
                counts["other_outcomes"] += 1
        return outcome

    from messaging.sender import NumberSender

    run = NumberSender.run
    runs: list[dict] = []

    def kept_run(self, **kwargs):
        stats = run(self, **kwargs)
        with lock:
            runs.append(
                {
                    "sent": stats.sent,
                    "skipped_slots": stats.skipped_slots,
                    "released": stats.released,
                }
            )
        return stats

    NumberSender.run = kept_run
    CursorWrapper.execute = counted_execute
    CursorWrapper.executemany = counted_executemany
    BaseDatabaseWrapper.commit = counted_commit
    redis.Redis.execute_command = counted_redis
    GraphApiClient.send = timed_send

    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic()
    try:
        call_command("run_sender", *argv)
    finally:
        after = resource.getrusage(resource.RUSAGE_SELF)
        result = {
            "pid": os.getpid(),
            "run_cpu_s": _cpu(after) - _cpu(before),
            "process_cpu_s": _cpu(after),
            "run_wall_s": time.monotonic() - wall,
            "maxrss_kb": after.ru_maxrss,
            "statements": sum(statements.values()),
            "statement_kinds": dict(statements.most_common()),
            **counts,
            "sender_runs": runs,
            "histogram": [(i, n) for i, n in enumerate(histogram) if n],
        }
        with open(os.environ["WAC_BENCH_OUT"], "w", encoding="utf-8") as out:
            json.dump(result, out)
        if send_times is not None:
            with open(os.environ["WAC_BENCH_SEND_TIMES"], "w", encoding="utf-8") as out:
                json.dump(send_times, out)


if __name__ == "__main__":
    main(sys.argv[1:])
