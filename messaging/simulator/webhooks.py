"""Status webhooks: decide each accepted message's statuses, then POST them, signed, in batches.

Sending is off the request path: accepting a message only pushes its future statuses on a heap.
A pump moves due statuses into batches and a few workers POST them over keep-alive connections,
with a timeout and bounded retries. Everything pending is capped (MAX_PENDING); overflow is
dropped and counted, never allowed to slow down or block sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from messaging.simulator.config import SimConfig
from messaging.simulator.errors import webhook_error
from messaging.simulator.state import SimState
from messaging.simulator.webhook_client import WebhookClient, WebhookClientError

logger = logging.getLogger(__name__)

MAX_PENDING = 200_000
PUMP_INTERVAL_S = 0.02
RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0)


def sign(body: bytes, app_secret: str) -> str:
    """The X-Hub-Signature-256 header value for `body` (§4.2)."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDispatcher:
    def __init__(
        self,
        *,
        state: SimState,
        config: Callable[[], SimConfig],
        rng: random.Random,
        workers: int = 4,
    ) -> None:
        self._state = state
        self._config = config
        self._rng = rng
        self._heap: list[tuple[float, int, str, dict[str, Any]]] = []
        self._seq = itertools.count()
        # Items are (generation, batch): a reset bumps the generation, so batches planned
        # before it are neither sent nor counted after it.
        # A batch is (generation, payload, statuses in it); account events carry no statuses.
        self._batches: asyncio.Queue[tuple[int, dict[str, Any], int]] = asyncio.Queue(
            maxsize=workers * 4
        )
        self._generation = 0
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight = 0

    def pending(self) -> int:
        return len(self._heap) + self._batches.qsize() * self._config().webhook_batch_size

    def in_flight(self) -> int:
        """POSTs being made right now (a reset stops the rest, not these)."""
        return self._in_flight

    def clear(self) -> None:
        self._generation += 1
        self._heap.clear()
        while not self._batches.empty():
            self._batches.get_nowait()

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._pump(), name="webhook-pump"))
        for n in range(self._workers):
            self._tasks.append(asyncio.create_task(self._work(), name=f"webhook-worker-{n}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def schedule_message(
        self,
        *,
        phone_number_id: str,
        wamid: str,
        to: str,
        callback: str | None,
        fail_code: int | None,
    ) -> None:
        """Plan the statuses of one accepted message (sent / delivered / read, or failed)."""
        cfg = self._config()
        if not cfg.webhook_url:
            return
        rng = self._rng
        now = time.time()
        step = cfg.webhook_delay_ms / 1000.0
        base: dict[str, Any] = {"id": wamid, "recipient_id": to.lstrip("+")}
        if callback is not None:
            base["biz_opaque_callback_data"] = callback
        if fail_code is not None:
            planned: list[tuple[str, int, dict[str, Any]]] = [
                ("failed", 1, {"errors": [webhook_error(fail_code)]})
            ]
        else:
            planned = [("sent", 1, {"pricing": _PRICING})]
            draw = rng.random()
            read = draw < min(cfg.read_rate, cfg.delivered_rate)
            if draw < cfg.delivered_rate and not (
                read and rng.random() < cfg.read_skips_delivered_rate
            ):
                planned.append(("delivered", 2, {}))
            if read:
                planned.append(("read", 3, {}))
                self._plan_answer(cfg, phone_number_id, wamid, to, now + 4 * step)
        for status, steps, extra in planned:
            event_at = now + steps * step
            # Shuffled: arrival time no longer follows the event time, so order is lost.
            arrive_at = now + rng.uniform(0, 3 * step) if cfg.webhook_shuffle else event_at
            item = {**base, "status": status, "timestamp": str(int(event_at)), **extra}
            self._push(arrive_at, phone_number_id, item)
            if cfg.webhook_duplicate_rate and rng.random() < cfg.webhook_duplicate_rate:
                self._push(arrive_at + rng.uniform(0, 2 * step), phone_number_id, item)

    def _plan_answer(
        self, cfg: SimConfig, phone_number_id: str, wamid: str, to: str, at: float
    ) -> None:
        """The user answers a read message now and then: a reply, or STOP (an opt-out)."""
        draw = self._rng.random()
        if draw >= cfg.reply_rate + cfg.opt_out_rate:
            return
        text = "STOP" if draw < cfg.opt_out_rate else self._rng.choice(_REPLIES)
        wa_id = to.lstrip("+")
        message = {
            "from": wa_id,
            "id": f"wamid.in.{wamid.removeprefix('wamid.')}",
            "timestamp": str(int(at)),
            "type": "text",
            "text": {"body": text},
            "context": {"from": cfg.display_phone_number, "id": wamid},
        }
        self._push(at, phone_number_id, {_INBOUND: True, "message": message, "wa_id": wa_id})

    def post_event(self, field: str, value: dict[str, Any]) -> None:
        """Queue one account-level webhook (template status or quality, number quality) now."""
        cfg = self._config()
        if not cfg.webhook_url:
            raise ValueError("no webhook_url is configured: there is nowhere to send the event")
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": cfg.waba_id,
                    "time": int(time.time()),
                    "changes": [{"field": field, "value": value}],
                }
            ],
        }
        item = (self._generation, payload, 0)
        asyncio.get_running_loop().create_task(self._batches.put(item))

    def _push(self, at: float, phone_number_id: str, item: dict[str, Any]) -> None:
        if len(self._heap) >= MAX_PENDING:
            self._state.webhook_statuses_dropped += 1
            return
        heapq.heappush(self._heap, (at, next(self._seq), phone_number_id, item))
        self._state.webhook_statuses_queued += 1

    async def _pump(self) -> None:
        while True:
            await asyncio.sleep(PUMP_INTERVAL_S)
            cfg = self._config()
            generation = self._generation
            now = time.time()
            due: list[tuple[str, dict[str, Any]]] = []
            while self._heap and self._heap[0][0] <= now:
                _, _, number, item = heapq.heappop(self._heap)
                due.append((number, item))
            if cfg.webhook_shuffle:
                self._rng.shuffle(due)
            for start in range(0, len(due), cfg.webhook_batch_size):
                batch = due[start : start + cfg.webhook_batch_size]
                await self._batches.put((generation, _payload(cfg, batch), len(batch)))

    async def _work(self) -> None:
        client: WebhookClient | None = None
        try:
            while True:
                generation, payload, statuses = await self._batches.get()
                cfg = self._config()
                if generation != self._generation:
                    continue
                if not cfg.webhook_url:
                    self._state.webhook_statuses_dropped += statuses
                    continue
                if client is None or client.url != cfg.webhook_url:
                    if client is not None:
                        await client.close()
                    client = WebhookClient(cfg.webhook_url, timeout=cfg.webhook_timeout_s)
                self._in_flight += 1
                try:
                    await self._deliver(client, cfg, generation, payload, statuses)
                finally:
                    self._in_flight -= 1
        finally:
            if client is not None:
                await client.close()

    async def _deliver(
        self,
        client: WebhookClient,
        cfg: SimConfig,
        generation: int,
        payload: dict[str, Any],
        statuses: int,
    ) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "X-Hub-Signature-256": sign(body, cfg.app_secret),
            "User-Agent": "facebookexternalua",
        }
        for attempt in range(cfg.webhook_retries + 1):
            if attempt:
                await asyncio.sleep(RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S)) - 1])
            if generation != self._generation:
                return  # reset meanwhile: this batch belongs to the counters that were cleared
            if attempt:
                self._state.webhook_post_retries += 1
            try:
                status = await client.post(body, headers)
            except WebhookClientError as exc:
                logger.warning("Webhook POST to %s failed: %s", cfg.webhook_url, exc)
                continue
            if generation != self._generation:
                return
            self._state.webhook_posts += 1
            if 200 <= status < 300:
                self._state.webhook_statuses_delivered += statuses
                self._state.webhook_events_delivered += 0 if statuses else 1
                return
            logger.warning("Webhook POST to %s answered HTTP %s", cfg.webhook_url, status)
        self._state.webhook_post_failures += 1
        self._state.webhook_statuses_dropped += statuses


_REPLIES = ("Thanks!", "Is this still valid?", "Great, see you there", "How do I use the code?")
# Marks a queued item that is a user's message rather than a status (never sent as a field).
_INBOUND = "_inbound"
_PRICING = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "marketing"}


def _payload(cfg: SimConfig, batch: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    by_number: dict[str, list[dict[str, Any]]] = {}
    for number, item in batch:
        by_number.setdefault(number, []).append(item)
    changes = []
    for number, items in by_number.items():
        value: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": cfg.display_phone_number,
                "phone_number_id": number,
            },
        }
        statuses = [item for item in items if _INBOUND not in item]
        inbound = [item for item in items if _INBOUND in item]
        if statuses:
            value["statuses"] = statuses
        if inbound:
            value["contacts"] = [
                {"profile": {"name": "Simulated user"}, "wa_id": item["wa_id"]} for item in inbound
            ]
            value["messages"] = [item["message"] for item in inbound]
        changes.append({"field": "messages", "value": value})
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": cfg.waba_id, "changes": changes}],
    }
