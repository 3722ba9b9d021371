"""The paced sender of one sender number: claim → pace → send → record, until told to stop.

Three threads share the work so that database round trips never delay a send slot:
- the pacer (the caller's thread) reserves slots from the number's bucket and hands each
  claimed row to an HTTP thread at its slot time; the bucket's guard never hands out
  more slots than the number's cap in a second, and a send that cannot start on time gives its
  slot up;
- the feeder keeps a few seconds of claimed rows ready, refreshes which campaigns are running
  (a pause or cancel is seen within a second) and gives back rows it must not send;
- the flusher writes outcomes back once a second (one statement per batch) and applies the
  side effects the error table asks for;
- with Redis, the waker claims a transactional send the moment it is committed (a Redis
  message), into a lane in hand ahead of the campaign rows (messaging.lanes).

How many sends are in flight follows Little's law: the rate this worker gets × the p95 of its
recent answer times × IN_FLIGHT_MARGIN, within SENDER_MAX_IN_FLIGHT (the thread and
connection pools are that big, and only grow as used). So one worker holds its rate from tens
of milliseconds to seconds of API latency.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from campaigns.models import Campaign, CampaignTemplate, MessageTemplate, SenderNumber
from messaging import queue, redis_client, state_version
from messaging.errors import Action, Category, ErrorRule
from messaging.graph_api import (
    GraphApiClient,
    OutcomeKind,
    SendOutcome,
    access_token,
    queued_message_payload,
)
from messaging.lanes import Lanes
from messaging.models import OutboundStatus
from messaging.outcomes import decide, record_answers
from messaging.pacing import Bucket, bucket_for, starting_rate
from messaging.policy import gate
from messaging.policy.actions import Effects, apply_effects
from messaging.policy.budget import ledger_for
from messaging.policy.gate import CampaignRules
from messaging.policy.optout import SUPPRESSED_DETAIL, suppressed_among
from messaging.queue import ClaimedMessage
from messaging.services import complete_if_finished
from messaging.transient import Backoff, GaveUp, retry_transient

logger = logging.getLogger(__name__)

# Seconds of this worker's own sending claimed at once. Its own rate, not the number's: with
# several workers sharing a number each gets a share of the slots, and rows held beyond
# what it can send wait idle (and are in doubt if the worker dies). A worker starts from its
# expected share: the number's rate ÷ the workers serving it (their heartbeats in Redis).
CLAIM_HORIZON = 3.0  # at most; less when the lease is short (see send_window)
LEASE_MARGIN = 1.0
HEARTBEAT_INTERVAL = 1.0
SHARE_SMOOTHING = 0.3
# Running campaigns are re-read when the state version in Redis moves (checked every feeder
# tick, 0.1 s), and on this timer: the only trigger without Redis, a backstop with it.
REFRESH_INTERVAL = 0.8
REFRESH_BACKSTOP = 10.0
RETRY_CLAIM_INTERVAL = 1.0  # the first retry of a transient error is due after ~1 s
FLUSH_INTERVAL = 1.0
FLUSH_INTERVAL_IDLE = 0.25  # nothing left to send: outcomes (and so retries) go back sooner
TAIL_CLAIM_INTERVAL = 0.25
# The waker: at most one claim of higher-priority rows per this long (a burst of API sends is
# claimed in a few statements, not one each); after a Redis error it subscribes again after
# WAKER_RETRY (the feeder's look at the counter covers the gap).
WAKER_MIN_INTERVAL = 0.01
WAKER_RETRY = 2.0
# A campaign with nothing due brings its transient retries forward while the API is healthy:
# fewer than this share of this worker's recent answers were transient errors.
HEALTHY_TRANSIENT_SHARE = 0.1
HEALTH_SAMPLES = 200
FLUSH_MAX_ROWS = 1000
CHUNK_SECONDS = 0.05  # slots reserved per bucket call
# A slot missed by more than this is skipped, never bunched into a burst: checked by the
# pacer when it hands a send over, and again by the HTTP thread when it starts it (a starved
# thread pool would otherwise start queued sends together).
LATE_SLOT = 0.02
LATE_START = 0.02
# In flight = rate × p95 latency × margin (+ a few); latency assumed until measured.
ASSUMED_LATENCY = 0.3
IN_FLIGHT_MARGIN = 1.25
IN_FLIGHT_SPARE = 4
LATENCY_SAMPLES = 512
# With the database gone at shutdown, outcomes and unsent rows wait this long for it; after
# that the rows are left to their lease (they become "unknown" and are reconciled).
SHUTDOWN_PATIENCE = 15.0


def send_window() -> float:
    """Seconds after its claim within which a row's send may start: its answer (or timeout)
    must be in before the lease lets maintenance hand the row to another worker."""
    timeouts = settings.WHATSAPP_CONNECT_TIMEOUT + settings.WHATSAPP_READ_TIMEOUT
    lease = settings.SENDER_LEASE_SECONDS
    return max(lease / 4, lease - timeouts - LEASE_MARGIN)


@dataclass
class RunStats:
    sent: int = 0
    accepted: int = 0
    released: int = 0
    released_late: int = 0  # held so long its lease could have run out (a stalled worker)
    skipped_slots: int = 0


@dataclass(frozen=True)
class ActiveCampaign:
    id: int
    priority: int
    valid_until: datetime | None
    rules: CampaignRules
    standing: bool = False  # a transactional stream: runs for good, never "done"


class NumberSender:
    """Sends the running campaigns of one sender number. Safe to run in many processes."""

    def __init__(
        self,
        sender_id: int,
        *,
        worker_id: str,
        stop: threading.Event | None = None,
        client: GraphApiClient | None = None,
        clock: Callable[[], datetime] = timezone.now,
    ) -> None:
        self.number = SenderNumber.objects.select_related("account").get(pk=sender_id)
        self.worker_id = worker_id
        # Wall-clock time for the send policy (windows, caps, budget, validity); injectable.
        self.clock = clock
        self.stop = stop or threading.Event()
        self.target = self.number.rate_mps * settings.SENDER_RATE_HEADROOM
        self.bucket: Bucket = bucket_for(
            sender_id=sender_id,
            target=self.target,
            cap=self.number.rate_mps,
            initial=self.number.learned_rate,
            worker_id=worker_id,
        )
        self.rate = starting_rate(self.number)
        self.pool_size = max(IN_FLIGHT_SPARE, settings.SENDER_MAX_IN_FLIGHT)
        self.send_window = send_window()
        self.claim_horizon = min(CLAIM_HORIZON, self.send_window / 2)
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.latency_p95 = ASSUMED_LATENCY
        self.recent_transient: deque[bool] = deque(maxlen=HEALTH_SAMPLES)
        self.client = client or GraphApiClient(max_connections=self.pool_size)
        self.token = access_token(self.number.account.waba_id)
        # Claimed rows in hand, highest priority first: a transactional row claimed after
        # seconds of campaign rows goes at the next slot.
        self.pending = Lanes()
        self.to_release: deque[ClaimedMessage] = deque()
        self.results: deque[tuple[ClaimedMessage, SendOutcome]] = deque()
        self.active: dict[int, ActiveCampaign] = {}
        # Campaigns stopped by an error answer, until the flusher has paused them in the DB.
        self.halted: set[int] = set()
        self.templates: dict[int, tuple[str, str]] = {}
        # Claimed rows the policy withdrew after the claim (an opt-out landed): never sent.
        self.withdrawn: set[int] = set()
        self.to_cancel: deque[ClaimedMessage] = deque()
        # Claimed rows whose own validity ended while they waited in hand: never sent.
        self.to_expire: deque[ClaimedMessage] = deque()
        self.in_flight = 0
        self.in_flight_lock = threading.Lock()
        self.next_claim = 0.0
        self.next_retry_claim = 0.0
        self.claim_again = False
        self._seen_urgent: int | None = None  # the urgent counter last acted on
        self.at_tail = False  # the last claim found less due than it could send
        # Sends/s this worker achieves, smoothed; starts at its expected share of the rate.
        self.workers_serving = max(1, self.bucket.serving(self.worker_id))
        self.own_rate = self.rate / self.workers_serving
        self.max_in_flight = self._in_flight_for(self.own_rate)
        self._rate_sample = (time.monotonic(), 0)
        self._next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL
        self.claiming = threading.Event()  # set once the feeder has looked at least once
        self.draining = threading.Event()  # no more claims: finish what is in hand
        self.done = threading.Event()  # everything sent: the flusher does its last flush
        self.stats = RunStats()
        self._effects_due: Effects | None = None

    # --- the pacer -------------------------------------------------------------------------
    def run(self, *, max_seconds: float, until_idle: bool = True) -> RunStats:
        """Send until `max_seconds` pass, `stop` is set, or (until_idle) nothing is running."""
        deadline = time.monotonic() + max_seconds
        feeder = threading.Thread(target=self._guard, args=(self._feed, deadline, until_idle))
        flusher = threading.Thread(target=self._guard, args=(self._flush_loop,))
        waker = threading.Thread(target=self._wake_loop, name="waker")
        executor = ThreadPoolExecutor(self.pool_size, thread_name_prefix="send")
        feeder.start()
        flusher.start()
        if settings.REDIS_URL:
            waker.start()
        try:
            self.claiming.wait(timeout=10)
            backoff = Backoff(f"sender {self.number.pk}: pacer")
            while not self.draining.is_set():
                if not self.pending:
                    time.sleep(0.02)
                    continue
                try:
                    retry_transient(
                        lambda: self._send_chunk(executor), backoff=backoff, stop=self.draining
                    )
                except GaveUp:
                    break
        finally:
            self.draining.set()
            feeder.join()
            if waker.is_alive():
                waker.join()  # before the release: rows it claimed go back too
            executor.shutdown(wait=True)  # in-flight requests finish and are recorded
            self._release_pending()
            self.done.set()
            flusher.join()
            self.client.close()
        return self.stats

    def _send_chunk(self, executor: ThreadPoolExecutor) -> None:
        wanted = min(len(self.pending), max(1, round(self.rate * CHUNK_SECONDS)))
        reservation = self.bucket.reserve(wanted)
        self.rate = reservation.rate
        now = time.monotonic()
        for offset in reservation.offsets:
            slot = now + offset
            wait = slot - time.monotonic()
            if wait > 0:
                if self.draining.wait(wait):
                    return
            elif wait < -LATE_SLOT:
                self.stats.skipped_slots += 1
                continue
            message = self._next_sendable()
            if message is None:
                return
            with self.in_flight_lock:
                full = self.in_flight >= self.max_in_flight
                if not full:
                    self.in_flight += 1
            if full:
                self.pending.appendleft(message)  # no connection free: this slot is lost
                self.stats.skipped_slots += 1
                # The latency is longer than measured (or not measured yet): grow now,
                # Little's law sizes it again once answers come back.
                self.max_in_flight = min(self.pool_size, math.ceil(self.max_in_flight * 1.25))
                continue
            self.stats.sent += 1
            executor.submit(self._send_one, message, slot)

    def _next_sendable(self) -> ClaimedMessage | None:
        while True:
            try:
                # Not `while self.pending: popleft()`: the feeder may take the last row between
                # the check and the pop (_release_unsendable), which raised IndexError here.
                message = self.pending.popleft()
            except IndexError:
                return None
            if message.id in self.withdrawn:
                self.to_cancel.append(message)
            elif message.valid_until is not None and gate.past(message.valid_until, self.clock()):
                self.to_expire.append(message)
            elif self._too_old(message):
                self.to_release.append(message)  # back to the queue, its attempt given back
                self.stats.released_late += 1
            elif message.campaign_id in self.active:
                return message
            else:
                self.to_release.append(message)  # paused or cancelled since it was claimed

    def _send_one(self, message: ClaimedMessage, slot: float) -> None:
        if message.id in self.withdrawn or self._too_old(message):  # the last look
            (self.to_cancel if message.id in self.withdrawn else self.to_release).append(message)
            self.stats.sent -= 1
            with self.in_flight_lock:
                self.in_flight -= 1
            return
        try:
            template = None
            if message.template_id is not None:
                template = self.templates[message.template_id]
            payload = queued_message_payload(
                to=message.phone,
                template=template,
                parameters=message.parameters,
                callback_data=f"out:{message.id}",
            )
            # Its slot has passed: the row waits for another (never a burst, and the guard's
            # window allows for this much lateness only).
            if time.monotonic() - slot > LATE_START:
                self._give_slot_back(message)
                return
            started = time.monotonic()
            outcome = self.client.send(
                phone_number_id=self.number.phone_number_id, token=self.token, payload=payload
            )
            self.latencies.append(time.monotonic() - started)
        except Exception as exc:  # never lose a row to a bug in this thread
            logger.exception("send of message %s crashed", message.id)
            outcome = SendOutcome(OutcomeKind.AMBIGUOUS, detail=f"crash: {exc}"[:500])
        if outcome.rule is not None:
            self._react(message, outcome.rule)
        transient = outcome.kind == OutcomeKind.NOT_SENT or (
            outcome.rule is not None and outcome.rule.category == Category.TRANSIENT
        )
        self.recent_transient.append(transient)
        if not (transient and self._retried_in_hand(message, outcome)):
            self.results.append((message, outcome))
        with self.in_flight_lock:
            self.in_flight -= 1

    def _retried_in_hand(self, message: ClaimedMessage, outcome: SendOutcome) -> bool:
        """At a campaign's tail, send a transient failure again at the next slot, from memory.

        The table round trip (flush, due time, claim) would make the last rows wait while the
        number has capacity to spare. The policy still decides: only a row `decide` would
        retry goes again, and the new try counts as an attempt, as a claim would count it.
        """
        if not self.at_tail or not self._api_healthy():
            return False
        campaign = self.active.get(message.campaign_id)
        if campaign is None:
            return False
        row = decide(
            message,
            outcome,
            sender_id=self.number.pk,
            valid_until=gate.deadline(campaign.valid_until, message.valid_until),
            effects=Effects(),
        )
        if row.status != OutboundStatus.RETRY:
            return False
        message.attempts = row.attempts + 1
        self.pending.append(message)
        return True

    def _give_slot_back(self, message: ClaimedMessage) -> None:
        self.pending.appendleft(message)
        self.stats.sent -= 1
        self.stats.skipped_slots += 1
        with self.in_flight_lock:
            self.in_flight -= 1

    def _react(self, message: ClaimedMessage, rule: ErrorRule) -> None:
        """Act on a stop or slow-down signal at once; the flusher records it durably."""
        if rule.action == Action.SLOW_DOWN:
            try:
                self.rate = self.bucket.throttled(latency=self.latency_p95)
            except redis.RedisError:
                logger.warning("sender %s: throttled, but Redis is away", self.number.pk)
        elif rule.action in (Action.FAIL_PAUSE_CAMPAIGN, Action.PAUSE_CAMPAIGN):
            self.halted.add(message.campaign_id)
            self.active.pop(message.campaign_id, None)
        elif rule.action == Action.PAUSE_ACCOUNT:
            self.halted.update(self.active)
            self.active = {}

    # --- the feeder ------------------------------------------------------------------------
    def _guard(self, target: Callable[..., object], *args: Any) -> None:
        """Thread body wrapper: each thread has its own DB connection and closes it."""
        try:
            target(*args)
        except GaveUp as exc:
            logger.warning(
                "sender thread %s stopped while a connection was lost: %s", target.__name__, exc
            )
            self.draining.set()
        except Exception:
            logger.exception("sender thread %s failed", target.__name__)
            self.draining.set()
        finally:
            connection.close()

    def _feed(self, deadline: float, until_idle: bool) -> None:
        backoff = Backoff(f"sender {self.number.pk}: feeder")
        self._next_refresh = 0.0
        self._seen_version: int | None = None
        self._seen_opt_outs: int | None = None
        self._seen_urgent = state_version.current(state_version.urgent_key(self.number.pk))
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                step = lambda: self._feed_once(until_idle)  # noqa: E731
                if retry_transient(step, backoff=backoff, stop=self.stop, deadline=deadline):
                    break
                self.stop.wait(0.1)
        finally:
            self.draining.set()
            self.claiming.set()

    def _feed_once(self, until_idle: bool) -> bool:
        """One feeder tick; returns whether there is nothing left to do."""
        now = time.monotonic()
        urgent = state_version.current(state_version.urgent_key(self.number.pk))
        if urgent != self._seen_urgent:  # a transactional send the waker has not claimed
            self._seen_urgent = urgent
            self._claim_ahead()
            self.next_claim = 0.0
        version, opt_outs = state_version.both()
        if now >= self._next_refresh or version != self._seen_version:
            self._refresh_active()
            self._seen_version = version
            self._next_refresh = now + (REFRESH_INTERVAL if version is None else REFRESH_BACKSTOP)
            if version is None:
                self._seen_opt_outs = -1  # no Redis: re-check on the refresh timer
        if opt_outs != self._seen_opt_outs:
            self._withdraw_suppressed()
            self._seen_opt_outs = opt_outs
        self._release_unsendable()
        self._measure_own_rate(now)
        low = len(self.pending) < self.own_rate * self.claim_horizon / 2
        if low and now >= self.next_claim and not self._claim() and not self.claim_again:
            # Nothing due: don't poll the table hot, unless answers still to come may bring
            # retries (the campaign's tail).
            self.next_claim = now + (TAIL_CLAIM_INTERVAL if self._answers_due() else 1.0)
        self.claim_again = False
        self.claiming.set()
        # A transactional stream runs for good: only other campaigns keep an until_idle run.
        working = any(not c.standing for c in self.active.values())
        nothing_due = self.next_claim > time.monotonic()
        if until_idle and not working and not self.pending and nothing_due and self._idle():
            return True
        return not self.active and not until_idle and not self.pending

    def _answers_due(self) -> bool:
        return self.in_flight > 0 or bool(self.results)

    def _idle(self) -> bool:
        return self.in_flight == 0 and not self.results

    def _refresh_active(self) -> None:
        campaigns = [
            c
            for c in Campaign.objects.filter(
                sender_id=self.number.pk, status=Campaign.Status.RUNNING
            )
            if c.pk not in self.halted
        ]
        categories: dict[int, dict[int, str]] = {c.pk: {} for c in campaigns}
        links = CampaignTemplate.objects.filter(campaign__in=campaigns).select_related("template")
        for link in links:
            template = link.template
            self.templates[template.pk] = (template.name, template.language)
            categories[link.campaign_id][template.pk] = template.category
        ledger = ledger_for(self.number.pk) if campaigns else None
        self.active = {
            c.pk: ActiveCampaign(
                c.pk,
                c.priority,
                c.valid_until,
                gate.rules_for(c, categories=categories[c.pk], ledger=ledger),
                c.kind == Campaign.Kind.TRANSACTIONAL,
            )
            for c in campaigns
        }

    def _withdraw_suppressed(self) -> None:
        """An opt-out landed: rows in hand to those numbers are never sent (cancelled)."""
        held = list(self.pending)
        suppressed = suppressed_among(m.phone for m in held)
        if suppressed:
            self.withdrawn.update(m.id for m in held if m.phone in suppressed)

    def _measure_own_rate(self, now: float) -> None:
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + HEARTBEAT_INTERVAL
            serving = max(1, self.bucket.serving(self.worker_id))
            if serving > self.workers_serving:  # a worker joined: our share shrinks now
                self.own_rate = min(self.own_rate, self.rate / serving)
            self.workers_serving = serving
        since, sent_then = self._rate_sample
        if now - since < 1.0:
            return
        if self.pending:  # only a worker with work in hand shows what share it gets
            measured = (self.stats.sent - sent_then) / (now - since)
            blended = SHARE_SMOOTHING * measured + (1 - SHARE_SMOOTHING) * self.own_rate
            # Never below the expected share, so a worker that was starved of slots for a
            # moment still claims enough to take them when they come.
            floor = self.rate / self.workers_serving
            self.own_rate = min(self.rate, max(1.0, floor, blended))
        self._rate_sample = (now, self.stats.sent)
        self._size_in_flight()

    def _size_in_flight(self) -> None:
        """Little's law on the latencies measured since the last look."""
        samples = sorted(self.latencies)
        if len(samples) < 20:
            return  # too few answers yet: keep the assumed (or grown) size
        self.latency_p95 = samples[int(len(samples) * 0.95) - 1]
        self.max_in_flight = self._in_flight_for(self.own_rate)

    def _in_flight_for(self, rate: float) -> int:
        wanted = math.ceil(rate * self.latency_p95 * IN_FLIGHT_MARGIN) + IN_FLIGHT_SPARE
        return max(IN_FLIGHT_SPARE, min(self.pool_size, wanted))

    def _claim(self) -> bool:
        """Top up the pending rows; returns whether anything was claimed."""
        budget = math.ceil(self.own_rate * self.claim_horizon) - len(self.pending)
        if budget <= 0 or not self.active:
            return False
        claimed_any = False
        retries = time.monotonic() >= self.next_retry_claim
        if retries:
            interval = TAIL_CLAIM_INTERVAL if self.at_tail else RETRY_CLAIM_INTERVAL
            self.next_retry_claim = time.monotonic() + interval
            self.at_tail = False
        # Highest priority first; campaigns of equal priority share the budget equally and
        # their rows are interleaved, so two campaigns on one number progress side by side.
        by_priority: dict[int, list[int]] = {}
        for campaign in self.active.values():
            by_priority.setdefault(campaign.priority, []).append(campaign.id)
        now = self.clock()
        for campaign in list(self.active.values()):
            if campaign.rules.expired(now):
                gate.expire_campaign(campaign.id, now=now)
                self.active.pop(campaign.id, None)
        for priority in sorted(by_priority, reverse=True):
            ids = [c for c in by_priority[priority] if c in self.active]
            if not ids:
                continue
            share = math.ceil(budget / len(ids))
            batches = [self._claim_campaign(self.active[c], share, retries, now) for c in ids]
            for c, batch in zip(ids, batches, strict=True):
                if not batch and retries:
                    # Rows in hand are still "sending", so this cannot complete too early.
                    complete_if_finished(campaign_id=c)
                if retries and len(batch) < share and self._api_healthy():
                    # Less is due than we could send: the campaign's tail. Its transient
                    # retries need not sit out their backoffs; claim them now.
                    self.at_tail = True
                    if queue.bring_forward_retries(campaign_id=c, now=now):
                        self.next_retry_claim, self.claim_again = 0.0, True
            claimed = [m for group in _interleave(batches) for m in group]
            self._load_templates(claimed)
            self.pending.extend(claimed)
            claimed_any = claimed_any or bool(claimed)
            budget -= len(claimed)
            if budget <= 0:
                break
        return claimed_any

    # --- the waker ------------------------------------------------------------------------
    def _wake_loop(self) -> None:
        """Claim higher-priority rows as soon as a transactional send is committed.

        The feeder looks at the urgent counter only between its own steps, and one of those
        (a claim of a second or more of campaign rows, a refresh) can take a good part of a
        second on a loaded machine: this thread waits on the counter's Redis channel instead
        and claims at once, on its own connection. A failure here is only a delay: the
        feeder's look at the counter still claims the row.
        """
        channel = state_version.urgent_key(self.number.pk)
        self.claiming.wait(timeout=10)  # the feeder has read the running campaigns
        try:
            while not self.draining.is_set():
                pubsub = redis_client.get_redis().pubsub(ignore_subscribe_messages=True)
                try:
                    pubsub.subscribe(channel)
                    self._wake_on_messages(pubsub)
                except (redis.RedisError, OSError, DatabaseError) as exc:
                    logger.warning("sender %s: waker paused: %s", self.number.pk, exc)
                    connection.close()  # a fresh one next time, if the database went away
                    self.draining.wait(WAKER_RETRY)
                except Exception:
                    logger.exception("sender %s: waker failed", self.number.pk)
                    connection.close()
                    self.draining.wait(WAKER_RETRY)
                finally:
                    pubsub.close()
        finally:
            connection.close()

    def _wake_on_messages(self, pubsub: Any) -> None:
        while not self.draining.is_set():
            message = pubsub.get_message(timeout=0.2)
            if message is None:
                continue
            value = int(message["data"])
            while (more := pubsub.get_message(timeout=0)) is not None:  # a burst: one claim
                value = max(value, int(more["data"]))
            self._claim_ahead()
            if self._seen_urgent is None or value > self._seen_urgent:
                self._seen_urgent = value  # the feeder need not claim these again
            self.draining.wait(WAKER_MIN_INTERVAL)

    def _claim_ahead(self) -> None:
        """Rows of a higher-priority campaign (a transactional send) go before those in hand."""
        active = list(self.active.values())
        if not active:
            return
        lowest = min(c.priority for c in active)
        # The stream too when it runs alone (an idle number): its send goes now, not at the
        # feeder's next poll of the table.
        ahead = [c for c in active if c.priority > lowest or c.standing]
        limit = max(1, math.ceil(self.own_rate))
        now = self.clock()
        batches = [self._claim_campaign(c, limit, False, now) for c in ahead]
        claimed = [m for group in _interleave(batches) for m in group]
        self._load_templates(claimed)
        self.pending.extend(claimed)  # their lane goes before the campaign rows in hand

    def _load_templates(self, claimed: list[ClaimedMessage]) -> None:
        """Templates a transactional stream uses are not linked to it: look up new ones."""
        missing = {m.template_id for m in claimed if m.template_id is not None}
        missing -= set(self.templates)
        for t in MessageTemplate.objects.filter(pk__in=missing):
            self.templates[t.pk] = (t.name, t.language)

    def _api_healthy(self) -> bool:
        """Most recent answers were not transient errors (no outage to wait out)."""
        answers = list(self.recent_transient)
        return bool(answers) and sum(answers) < HEALTHY_TRANSIENT_SHARE * len(answers)

    def _claim_campaign(
        self, campaign: ActiveCampaign, limit: int, retries: bool, now: datetime
    ) -> list[ClaimedMessage]:
        rules = campaign.rules
        started = time.monotonic()
        claimed = queue.claim_due(
            campaign_id=campaign.id,
            limit=limit,
            worker=self.worker_id,
            retries=retries,
            now=now,
            screen=lambda rows: gate.screen(rows, rules, now=now),
            with_timezone=rules.needs_timezone,
        )
        for message in claimed:
            message.claim_started = started
            message.priority = campaign.priority
        return claimed

    def _too_old(self, message: ClaimedMessage) -> bool:
        """Whether the row's lease could run out before the answer to a send started now comes
        back: another worker may then be given the row, so a stalled worker must not send it."""
        return time.monotonic() - message.claim_started > self.send_window

    def _release_unsendable(self) -> None:
        if not self.active:
            # Taken in one step: the pacer pops from the same lanes meanwhile, and a check of
            # `self.pending` then a popleft() raised IndexError here when it took the last row
            # in between (the feeder thread died and the whole run drained).
            self.to_release.extend(self.pending.take_all())
        batch = []
        while self.to_release:
            batch.append(self.to_release.popleft())
        if batch:
            try:
                self.stats.released += queue.release(batch)
            except BaseException:
                self.to_release.extendleft(reversed(batch))  # one transaction: nothing moved
                raise
        cancelled = []
        while self.to_cancel:
            cancelled.append(self.to_cancel.popleft())
        if cancelled:
            try:
                queue.cancel_claimed(cancelled, detail=SUPPRESSED_DETAIL)
            except BaseException:
                self.to_cancel.extendleft(reversed(cancelled))
                raise
        expired = []
        while self.to_expire:
            expired.append(self.to_expire.popleft())
        if expired:
            try:
                queue.cancel_claimed(
                    expired, detail=gate.ROW_EXPIRED_DETAIL, status=OutboundStatus.EXPIRED
                )
            except BaseException:
                self.to_expire.extendleft(reversed(expired))
                raise

    def _release_pending(self) -> None:
        self.to_release.extend(self.pending.take_all())
        backoff = Backoff(f"sender {self.number.pk}: release")
        try:
            patience = time.monotonic() + SHUTDOWN_PATIENCE
            retry_transient(self._release_unsendable, backoff=backoff, deadline=patience)
        except GaveUp:
            logger.warning("%d claimed rows left to their lease", len(self.to_release))
        finally:
            connection.close()

    # --- the flusher -----------------------------------------------------------------------
    def _flush_loop(self) -> None:
        backoff = Backoff(f"sender {self.number.pk}: flusher")
        while True:
            finished = self.done.is_set()
            try:
                if finished:
                    patience = time.monotonic() + SHUTDOWN_PATIENCE
                    retry_transient(self._flush, backoff=backoff, deadline=patience)
                    return
                retry_transient(self._flush, backoff=backoff, stop=self.done)
            except GaveUp:
                if finished:
                    raise  # outcomes not written: the rows are left to their lease
                continue  # told to finish while the database was away: the last flush retries
            self.done.wait(FLUSH_INTERVAL if self.pending else FLUSH_INTERVAL_IDLE)

    def _flush(self) -> None:
        if self._effects_due is not None:  # recorded, but applying its effects failed
            self._apply(self._effects_due)
        batch: list[tuple[ClaimedMessage, SendOutcome]] = []
        while self.results and len(batch) < FLUSH_MAX_ROWS * 10:
            batch.append(self.results.popleft())
        if batch:
            try:
                effects = self._record(batch)
            except BaseException:
                # record_outcomes is one statement: on failure nothing was written, so the
                # outcomes go back to be written on the next try.
                self.results.extendleft(reversed(batch))
                raise
            self._apply(effects)
        new_rate = self.bucket.recover()
        if new_rate is not None:
            self._store_rate(new_rate)

    def _record(self, batch: list[tuple[ClaimedMessage, SendOutcome]]) -> Effects:
        valid_until = {c.id: c.valid_until for c in self.active.values()}
        moved, effects = record_answers(
            batch, sender_id=self.number.pk, valid_until=valid_until, now=self.clock()
        )
        self.stats.accepted += sum(1 for _id, _c, status in moved if status == 10)
        self._effects_due = effects
        return effects

    def _apply(self, effects: Effects) -> None:
        # The live bucket was slowed as the answer came in (_react): record the rate.
        apply_effects(effects, throttle=lambda _id: self._store_rate(self.rate, throttled=True))
        if effects.pause_campaigns or effects.pause_accounts:
            self.halted.clear()  # the database says paused now; a resume is staff's
            self._refresh_active()
        self._effects_due = None

    def _store_rate(self, rate: float, *, throttled: bool = False) -> None:
        self.rate = rate
        SenderNumber.objects.filter(pk=self.number.pk).update(
            learned_rate=rate, learned_rate_at=timezone.now()
        )
        if throttled:
            logger.warning("sender %s throttled: rate now %.1f/s", self.number.pk, rate)


def _interleave(batches: list[list[ClaimedMessage]]) -> list[list[ClaimedMessage]]:
    """[[a1,a2],[b1]] -> [[a1,b1],[a2]]: one row of each campaign in turn."""
    longest = max((len(b) for b in batches), default=0)
    return [[b[i] for b in batches if i < len(b)] for i in range(longest)]


def run_number(
    sender_id: int,
    *,
    worker_id: str,
    max_seconds: float,
    until_idle: bool,
    stop: threading.Event | None = None,
) -> RunStats:
    """Entry point shared by the django-q2 slice task and the run_sender command."""
    close_old_connections()
    started = time.monotonic()
    sender = retry_transient(
        lambda: NumberSender(sender_id, worker_id=worker_id, stop=stop),
        backoff=Backoff(f"sender {sender_id}: start"),
        stop=stop,
        deadline=started + max_seconds,
    )
    remaining = max_seconds - (time.monotonic() - started)
    return sender.run(max_seconds=remaining, until_idle=until_idle)
