"""The baseline for the sender's CPU: the same sends with no database, queue or bucket.

    python -m bench.bare_http --messages N --rate R --threads T --phone-number-id ID

Builds the same template payloads as the sender (`template_payload` with one body parameter
and `out:<n>` callback data) and sends them with `GraphApiClient.send` from a thread pool of
the sender's size, paced by a plain sleep at R per second, so the client does the same HTTP
work at the same concurrency as the sender. Prints one JSON line: accepted, CPU (user+sys) of
the send loop only (after start-up), wall time. Every request goes to WHATSAPP_API_BASE_URL
(the simulator on 127.0.0.1); the loop stops after N sends.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--phone-number-id", required=True)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings

    from messaging.graph_api import GraphApiClient, OutcomeKind, template_payload

    client = GraphApiClient(max_connections=args.threads)
    token = settings.WHATSAPP_ACCESS_TOKEN
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def send_one(n: int) -> None:
        payload = template_payload(
            to=f"1415{2000000 + n:07d}",
            template_name=("bench_a", "bench_b", "bench_c")[n % 3],
            language="en_US",
            components=[{"type": "body", "parameters": [{"type": "text", "text": f"n{n}"}]}],
            callback_data=f"out:{n}",
        )
        outcome = client.send(phone_number_id=args.phone_number_id, token=token, payload=payload)
        with lock:
            key = "accepted" if outcome.kind == OutcomeKind.ACCEPTED else str(outcome.error_code)
            outcomes[key] = outcomes.get(key, 0) + 1

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    with ThreadPoolExecutor(args.threads) as pool:
        for n in range(args.messages):
            wait = started + n / args.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            pool.submit(send_one, n)
    after = resource.getrusage(resource.RUSAGE_SELF)
    client.close()
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(
        json.dumps(
            {
                "outcomes": outcomes,
                "cpu_s": cpu,
                "wall_s": time.monotonic() - started,
                "maxrss_kb": after.ru_maxrss,
            }
        )
    )


if __name__ == "__main__":
    main()
