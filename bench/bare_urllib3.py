"""The peer the engine is measured against: a bare urllib3 loop with no database, queue or lock.

    python -m bench.bare_urllib3 --messages N --rate R --threads T --phone-number-id ID

What a developer writes in an afternoon: a thread pool of T sending N template messages with
one urllib3 pool, one send started every 1/R s (a missed start is dropped, never caught up in a
burst), and every transient answer (131000 and other 5xx, 130429, a refused or reset
connection) put back to be sent again at the next free start. Nothing is stored, nothing
survives a crash. Prints one JSON line: outcomes, CPU (user+sys) of the send loop, the start
time of every accepted send in 10 ms buckets (for its mean rate, busiest second and wall time).
Every request goes to WHATSAPP_API_BASE_URL (the simulator on 127.0.0.1); the loop stops after
N acceptances or --max-seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor

import urllib3

BUCKET_S = 0.01
LATE = 0.02


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--phone-number-id", required=True)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()

    base_url = os.environ["WHATSAPP_API_BASE_URL"]
    assert base_url.startswith("http://127.0.0.1"), "loopback only"
    url = f"{base_url}/v23.0/{args.phone_number_id}/messages"
    headers = {
        "Authorization": f"Bearer {os.environ['WHATSAPP_ACCESS_TOKEN']}",
        "Content-Type": "application/json",
    }
    pool = urllib3.connection_from_url(
        base_url, maxsize=args.threads, block=True, retries=False, timeout=urllib3.Timeout(3, 15)
    )
    todo: deque[int] = deque(range(args.messages))
    outcomes: Counter[str] = Counter()
    histogram: Counter[int] = Counter()
    lock = threading.Lock()
    accepted = threading.Event()
    in_flight = threading.Semaphore(args.threads)
    t0 = time.monotonic()

    def send_one(n: int) -> None:
        body = json.dumps(
            {
                "messaging_product": "whatsapp",
                "to": f"1415{2000000 + n:07d}",
                "type": "template",
                "template": {
                    "name": ("bench_a", "bench_b", "bench_c")[n % 3],
                    "language": {"code": "en_US"},
                    "components": [
                        {"type": "body", "parameters": [{"type": "text", "text": f"n{n}"}]}
                    ],
                },
                "biz_opaque_callback_data": f"out:{n}",
            }
        ).encode()
        started = time.monotonic()
        try:
            response = pool.urlopen("POST", "/" + url.split("/", 3)[3], body=body, headers=headers)
            status, data = response.status, response.data
            key = "accepted" if status == 200 else str(json.loads(data)["error"]["code"])
        except (urllib3.exceptions.HTTPError, OSError, ValueError, KeyError):
            key = "connection"
        finally:
            in_flight.release()
        with lock:
            outcomes[key] += 1
            if key == "accepted":
                histogram[int((started - t0) / BUCKET_S)] += 1
                if outcomes["accepted"] >= args.messages:
                    accepted.set()
            else:
                todo.append(n)  # transient or throttled: again at the next free start

    before = resource.getrusage(resource.RUSAGE_SELF)
    deadline = t0 + args.max_seconds
    with ThreadPoolExecutor(args.threads) as executor:
        next_start = t0
        while not accepted.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            if next_start > now:
                time.sleep(next_start - now)
            elif now - next_start > LATE:
                next_start = now  # a missed start is dropped, not caught up
            next_start += 1 / args.rate
            with lock:
                n = todo.popleft() if todo else None
            if n is None:
                time.sleep(0.005)  # the last ones are in flight; their errors come back
                continue
            in_flight.acquire()
            executor.submit(send_one, n)
    after = resource.getrusage(resource.RUSAGE_SELF)
    pool.close()
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(
        json.dumps(
            {
                "outcomes": dict(outcomes),
                "cpu_s": cpu,
                "wall_s": time.monotonic() - t0,
                "histogram": sorted(histogram.items()),
            }
        )
    )


if __name__ == "__main__":
    main()
