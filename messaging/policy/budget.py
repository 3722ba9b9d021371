"""The portfolio messaging limit: unique recipients of template messages outside an open
customer-service window, per portfolio, over a moving 24 h (docs/policy.md, "Budget").

Every worker on every machine shares one ledger per portfolio in Redis: a sorted set of
numbers scored by when they were last messaged. Admitting a batch is one Lua call, so two
workers can never both take the last slot. PostgreSQL stays the source of truth: a ledger that
is missing (Redis restarted or flushed) is built from the queue rows of the last 24 h before
anything is admitted, and a build only ever adds to what the ledger holds. While Redis cannot
be reached the ledger is read from PostgreSQL itself (`PostgresLedgers`, one worker at a time
per ledger), and the Redis copy, which missed those admissions, gets them added once Redis
answers again. Without Redis (the single-process demo) the ledger lives in memory.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, CharField, Count, F, Max, Q, Value, When
from django.db.models.functions import Coalesce

from campaigns.models import Contact, SenderNumber
from messaging.models import PENDING_STATUSES, OutboundMessage, OutboundStatus
from messaging.sql_paths import AnyOf

SEED_WAIT_STEPS = 100  # × 50 ms
_TIER = re.compile(r"^TIER_(\d+)(K?)$")
UNLIMITED = "TIER_UNLIMITED"
# Rows that count as messaged: in flight, in doubt, or accepted (whatever happened next).
COUNTED = (
    OutboundStatus.SENDING,
    OutboundStatus.UNKNOWN,
    OutboundStatus.ACCEPTED,
    OutboundStatus.SENT,
    OutboundStatus.DELIVERED,
    OutboundStatus.READ,
    OutboundStatus.FAILED,
)


def tier_limit(tier: str) -> int | None:
    """TIER_2K -> 2000; TIER_UNLIMITED, "" (never synced) or anything unreadable -> None."""
    match = _TIER.match((tier or "").strip().upper())
    if not match:
        return None
    return int(match.group(1)) * (1000 if match.group(2) else 1)


def tier_from_graph(value: object) -> str:
    """`whatsapp_business_manager_messaging_limit` ("TIER_2K"), or a webhook's number of
    recipients (2000, "2000"; -1 = unlimited), as our tier name; "" when it names no limit
    (TIER_NOT_SET, missing, unreadable)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = int(value)
        if number < 0:
            return UNLIMITED
        if number == 0:
            return ""
        return (
            f"TIER_{number // 1000}K" if number >= 1000 and number % 1000 == 0 else f"TIER_{number}"
        )
    text = str(value or "").strip().upper()
    if text == UNLIMITED or tier_limit(text) is not None:
        return text
    return ""


@dataclass(frozen=True)
class Ledger:
    """Whose budget a number draws on, and how big it is."""

    key: str
    limit: int | None  # None = no limit enforced
    sender_ids: tuple[int, ...]


def ledger_for(sender_id: int) -> Ledger:
    """The portfolio's ledger (or, for an account without one, the account's: its strictest
    number's tier). Read fresh: staff or a webhook may have changed the tier."""
    sender = SenderNumber.objects.select_related("account__portfolio").get(pk=sender_id)
    portfolio = sender.account.portfolio
    if portfolio is not None:
        ids = SenderNumber.objects.filter(account__portfolio_id=portfolio.pk).values_list(
            "pk", flat=True
        )
        return Ledger(f"portfolio:{portfolio.pk}", tier_limit(portfolio.messaging_tier), tuple(ids))
    numbers = list(
        SenderNumber.objects.filter(account_id=sender.account_id).values_list(
            "pk", "messaging_tier"
        )
    )
    limits = [limit for _pk, tier in numbers if (limit := tier_limit(tier)) is not None]
    return Ledger(
        f"account:{sender.account_id}",
        min(limits) if limits else None,
        tuple(pk for pk, _ in numbers),
    )


def all_ledgers() -> list[Ledger]:
    """Every ledger numbers draw on: one per portfolio with numbers, one per account without a
    portfolio (the gauge and the admin show what is left of each). One query."""
    numbers = SenderNumber.objects.values_list(
        "pk",
        "account_id",
        "account__portfolio_id",
        "account__portfolio__messaging_tier",
        "messaging_tier",
    ).order_by("pk")
    portfolios: dict[int, tuple[str, list[int]]] = {}
    accounts: dict[int, list[tuple[int, str]]] = {}
    for pk, account_id, portfolio_id, portfolio_tier, tier in numbers:
        if portfolio_id is not None:
            portfolios.setdefault(portfolio_id, (portfolio_tier, []))[1].append(pk)
        else:
            accounts.setdefault(account_id, []).append((pk, tier))
    result = [
        Ledger(f"portfolio:{pk}", tier_limit(tier), tuple(ids))
        for pk, (tier, ids) in sorted(portfolios.items())
    ]
    for account_id, rows in sorted(accounts.items()):
        limits = [limit for _n, tier in rows if (limit := tier_limit(tier)) is not None]
        result.append(
            Ledger(
                f"account:{account_id}", min(limits) if limits else None, tuple(n for n, _ in rows)
            )
        )
    return result


def left(ledger_list: list[Ledger], now: datetime) -> dict[str, int | None]:
    """Recipients each ledger may still reach now (None = no limit): what the admin, the
    gauge and the launch plan show."""
    counts = counted_now(ledger_list, now)
    return {
        ledger.key: remaining(ledger.limit, counts.get(ledger.key, 0)) for ledger in ledger_list
    }


def remaining(limit: int | None, used: int) -> int | None:
    """What a limit leaves after `used` recipients (a lowered limit can be below it)."""
    return None if limit is None else max(0, limit - used)


def counted_now(ledger_list: list[Ledger], now: datetime) -> dict[str, int]:
    """Unique recipients in the moving window now, per ledger with a limit. From the Redis
    ledger the engine admits against when it exists, else from PostgreSQL, which it would be
    rebuilt from."""
    limited = [ledger for ledger in ledger_list if ledger.limit is not None]
    counts: dict[str, int] = {}
    if limited and settings.REDIS_URL:
        from messaging.redis_client import get_redis

        horizon = (now - window()).timestamp()
        try:
            pipe = get_redis().pipeline()
            for ledger in limited:
                pipe.exists(f"wac:budget:{ledger.key}:seeded")
                pipe.zcount(f"wac:budget:{ledger.key}", f"({horizon}", "+inf")
            replies = pipe.execute()
        except redis.RedisError:
            replies = []
        for i, ledger in enumerate(limited):
            if replies and replies[2 * i]:
                counts[ledger.key] = int(replies[2 * i + 1])
    counts.update(_counted(([lg for lg in limited if lg.key not in counts]), now - window()))
    return counts


def _counted(ledger_list: list[Ledger], since: datetime) -> dict[str, int]:
    """Unique recipients per ledger since `since`, from the queue, in one query."""
    ledger_list = [ledger for ledger in ledger_list if ledger.sender_ids]
    counts = {ledger.key: 0 for ledger in ledger_list}
    if not ledger_list:
        return counts
    which = Case(
        *[When(sender_id__in=lg.sender_ids, then=Value(lg.key)) for lg in ledger_list],
        output_field=CharField(),
    )
    rows = (
        OutboundMessage.objects.filter(
            sender_id__in=[pk for lg in ledger_list for pk in lg.sender_ids],
            status__in=COUNTED,
        )
        .filter(Q(accepted_at__gte=since) | Q(accepted_at__isnull=True, claimed_at__gte=since))
        .annotate(ledger=which)
        .values("ledger")
        .annotate(n=Count("phone", distinct=True))
        .order_by()
    )
    counts.update({row["ledger"]: row["n"] for row in rows})
    return counts


def release_waiting(ledger: Ledger, now: datetime) -> int:
    """A limit went up: rows waiting for budget may go now, not when the old limit would
    have freed a slot. Returns how many were made due."""
    from messaging.policy.gate import WAIT_BUDGET

    return OutboundMessage.objects.filter(
        sender_id__in=ledger.sender_ids,
        status__in=PENDING_STATUSES,
        error_category=WAIT_BUDGET,
        next_attempt_at__gt=now,
    ).update(next_attempt_at=now)


def window() -> timedelta:
    return timedelta(seconds=settings.POLICY_BUDGET_WINDOW_SECONDS)


def in_service_window(phones: list[str], now: datetime) -> set[str]:
    """Numbers that wrote to us within 24 h: their window is open, so they cost no budget."""
    return set(
        Contact.objects.filter(
            AnyOf(F("phone"), phones), last_inbound_at__gte=now - timedelta(hours=24)
        ).values_list("phone", flat=True)
    )


def messaged_since(
    ledger: Ledger, since: datetime, *, excluding: list[int] | None = None
) -> dict[str, float]:
    """From PostgreSQL: each number messaged by the ledger's senders since `since`, and when
    (`excluding` the rows being judged right now, claimed in the caller's transaction)."""
    rows = (
        OutboundMessage.objects.filter(sender_id__in=ledger.sender_ids, status__in=COUNTED)
        .exclude(AnyOf(F("pk"), excluding or []))
        .filter(Q(accepted_at__gte=since) | Q(accepted_at__isnull=True, claimed_at__gte=since))
        .values("phone")
        .annotate(last=Max(Coalesce(F("accepted_at"), F("claimed_at"))))
    )
    return {r["phone"]: r["last"].timestamp() for r in rows}


@dataclass(frozen=True)
class Admission:
    admitted: set[str]
    # When the next slot frees (the oldest entry leaves the window), if any were refused.
    next_free: datetime | None


# KEYS[1] = ledger, KEYS[2] = "seeded" marker. ARGV = now, window s, limit, phones…
_ADMIT = """
if redis.call('EXISTS', KEYS[2]) == 0 then return {-1} end
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local admitted = {}
for i = 4, #ARGV do
  local phone = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], phone) then
    redis.call('ZADD', KEYS[1], now, phone)
    table.insert(admitted, phone)
  elseif count < limit then
    redis.call('ZADD', KEYS[1], now, phone)
    count = count + 1
    table.insert(admitted, phone)
  end
end
local ttl = math.ceil(window) + 3600
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {count, oldest[2] or '', unpack(admitted)}
"""


class RedisLedgers:
    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.script = client.register_script(_ADMIT)

    def admit(
        self, ledger: Ledger, phones: list[str], now: datetime, *, judging: list[int]
    ) -> Admission:
        try:
            return self._admit(ledger, phones, now, judging=judging)
        except redis.RedisError:
            _missed_by_redis.add(ledger.key)
            return _postgres.admit(ledger, phones, now, judging=judging)

    def _admit(
        self, ledger: Ledger, phones: list[str], now: datetime, *, judging: list[int]
    ) -> Admission:
        assert ledger.limit is not None
        keys = [f"wac:budget:{ledger.key}", f"wac:budget:{ledger.key}:seeded"]
        if ledger.key in _missed_by_redis:
            # Admitted from PostgreSQL while Redis was away: Redis' copy lacks those, so what
            # PostgreSQL knows is added to it (by whichever worker gets there first).
            self.client.delete(keys[1])
            _missed_by_redis.discard(ledger.key)
        args = [now.timestamp(), window().total_seconds(), ledger.limit, *phones]
        reply = self.script(keys=keys, args=args)
        for _ in range(SEED_WAIT_STEPS):
            if int(reply[0]) != -1:
                break
            if not self._seed(ledger, keys, now, judging):
                time.sleep(0.05)  # another worker is rebuilding the ledger: wait for it
            reply = self.script(keys=keys, args=args)
        else:
            return Admission(set(), now + timedelta(seconds=1))
        admitted = {p.decode() if isinstance(p, bytes) else p for p in reply[2:]}
        return Admission(
            admitted, _next_free(reply[1], now) if len(admitted) < len(phones) else None
        )

    def _seed(self, ledger: Ledger, keys: list[str], now: datetime, judging: list[int]) -> bool:
        """Build a missing ledger from PostgreSQL; False if another worker is at it.

        What PostgreSQL knows is added to what the ledger holds, never put in its place: an
        admission whose claim has not committed yet exists only in Redis (another worker may
        have built the ledger and admitted since this one found it missing, or admitted while
        this process could not reach Redis), and dropping it would admit past the limit. An
        entry with no row behind it only ages out of the window.
        """
        lock = f"{keys[1]}:lock"
        if not self.client.set(lock, "1", nx=True, ex=30):
            return False
        try:
            if self.client.exists(keys[1]):
                return True  # built by another worker since this one looked
            entries = messaged_since(ledger, now - window(), excluding=judging)
            pipe = self.client.pipeline()
            for start in range(0, len(entries), 5000):
                chunk = dict(list(entries.items())[start : start + 5000])
                pipe.zadd(keys[0], chunk, gt=True)  # a later admission keeps its time
            pipe.set(keys[1], "1", ex=int(window().total_seconds()) + 3600)
            pipe.execute()
        finally:
            self.client.delete(lock)
        return True


class PostgresLedgers:
    """While Redis is away: the ledger is the queue rows themselves.

    A transaction-level advisory lock per ledger, held until the claim that admits commits,
    makes workers on every machine judge one after another, each seeing the rows the last one
    claimed. It reads the whole 24 h of the ledger per claim: slower than Redis, never wrong.
    """

    def admit(
        self, ledger: Ledger, phones: list[str], now: datetime, *, judging: list[int]
    ) -> Admission:
        assert ledger.limit is not None
        from messaging.locks import ADVISORY_NAMESPACE, _advisory_id

        stamp = now.timestamp()
        with transaction.atomic():  # inside the claim's transaction: the lock lasts until it ends
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    key = _advisory_id(f"wac:budget:{ledger.key}")
                    cursor.execute(
                        "SELECT pg_advisory_xact_lock(%s, %s)", [ADVISORY_NAMESPACE, key]
                    )
            book = messaged_since(ledger, now - window(), excluding=judging)
        admitted = set()
        for phone in phones:
            if phone in book or len(book) < ledger.limit:
                book[phone] = stamp
                admitted.add(phone)
        oldest = min(book.values(), default=None)
        next_free = None
        if len(admitted) < len(phones) and oldest is not None:
            next_free = _next_free(oldest, now)
        return Admission(admitted, next_free)


_postgres = PostgresLedgers()
# Ledgers this process admitted from PostgreSQL since it last reached Redis.
_missed_by_redis: set[str] = set()


class LocalLedgers:
    """One process's ledger (no Redis): the same rules, in memory."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.books: dict[str, dict[str, float]] = {}

    def admit(
        self, ledger: Ledger, phones: list[str], now: datetime, *, judging: list[int]
    ) -> Admission:
        assert ledger.limit is not None
        stamp, horizon = now.timestamp(), window().total_seconds()
        with self.lock:
            if ledger.key not in self.books:
                self.books[ledger.key] = messaged_since(ledger, now - window(), excluding=judging)
            book = self.books[ledger.key]
            for phone in [p for p, t in book.items() if t <= stamp - horizon]:
                del book[phone]
            admitted = set()
            for phone in phones:
                if phone in book or len(book) < ledger.limit:
                    book[phone] = stamp
                    admitted.add(phone)
            oldest = min(book.values(), default=None)
        next_free = None
        if len(admitted) < len(phones) and oldest is not None:
            next_free = _next_free(oldest, now)
        return Admission(admitted, next_free)


def _next_free(oldest: object, now: datetime) -> datetime:
    if oldest in (None, b"", ""):
        return now + timedelta(seconds=1)
    at = datetime.fromtimestamp(float(oldest), tz=UTC) + window()  # type: ignore[arg-type]
    return max(at, now + timedelta(seconds=1))


_local = LocalLedgers()


def ledgers() -> RedisLedgers | LocalLedgers:
    if settings.REDIS_URL:
        from messaging.redis_client import get_redis

        return RedisLedgers(get_redis())
    return _local
