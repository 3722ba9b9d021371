"""Settings for wacampaigns: every value comes from the environment, with safe dev defaults."""

from __future__ import annotations

from pathlib import Path

import django_stubs_ext
import environ
from redis.backoff import NoBackoff
from redis.retry import Retry

# `ModelAdmin[Campaign]` and friends, written for the type checker, must also work at runtime.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# The development default is short on purpose: `manage.py check --deploy` rejects it (W009),
# so production has to set its own SECRET_KEY.
SECRET_KEY = env("SECRET_KEY", default="dev-only-insecure-key")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "config.apps.WacAdminConfig",  # django.contrib.admin with config/admin_site.py
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_q",
    "ninja",
    "campaigns",
    "messaging",
    "webhooks",
    "messaging.integrations",
]

MIDDLEWARE = [
    # First: an oversized API body is refused before anything reads it.
    "messaging.integrations.api.middleware.ApiBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "messaging.integrations.alerts.context.active_alerts",
            ],
        },
    },
]

# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-db-url
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The quickstart's sender threads write concurrently: WAL lets readers go on, and IMMEDIATE
    # transactions take the write lock up front (waiting up to `timeout`) instead of failing
    # with "database is locked" when a reader upgrades.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
# PostgreSQL's statement_timeout for every connection of this process, in ms; 0 = none. For
# the web processes only (docs/operations.md): the cluster and commands run long statements
# (imports, purges) on purpose.
DATABASE_STATEMENT_TIMEOUT_MS = env.int("DATABASE_STATEMENT_TIMEOUT_MS", default=0)
if DATABASE_STATEMENT_TIMEOUT_MS > 0 and "postgresql" in DATABASES["default"]["ENGINE"]:
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = (
        f"{_options.get('options', '')} -c statement_timeout={DATABASE_STATEMENT_TIMEOUT_MS}"
    ).strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            # Fail fast while Redis is away (pages then read what they need from PostgreSQL):
            # redis-py's default retries ten times, over 3 s per cache call.
            "OPTIONS": {
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 2,
                "CONNECTION_POOL_KWARGS": {"retry": Retry(NoBackoff(), 1)},
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = env("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media"))
# Admin uploads of large CSVs stream to disk rather than memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 10_485_760

# Security: on in production (DEBUG off), overridable for a plain-HTTP staging box.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^health/$", r"^health/memory/$", r"^metrics$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- WhatsApp Cloud API -------------------------------------------------------------------
WHATSAPP_API_BASE_URL = env("WHATSAPP_API_BASE_URL", default="https://graph.facebook.com")
WHATSAPP_API_VERSION = env("WHATSAPP_API_VERSION", default="v23.0")
# Tokens are read from the environment only, never stored in the database or shown in admin.
# WHATSAPP_ACCESS_TOKEN_<WABA_ID> overrides the default token for one business account.
WHATSAPP_ACCESS_TOKEN = env("WHATSAPP_ACCESS_TOKEN", default="")
WHATSAPP_APP_SECRET = env("WHATSAPP_APP_SECRET", default="")
WHATSAPP_VERIFY_TOKEN = env("WHATSAPP_VERIFY_TOKEN", default="")
WHATSAPP_DEFAULT_REGION = env("WHATSAPP_DEFAULT_REGION", default="US")
WHATSAPP_CONNECT_TIMEOUT = env.float("WHATSAPP_CONNECT_TIMEOUT", default=3.05)
WHATSAPP_READ_TIMEOUT = env.float("WHATSAPP_READ_TIMEOUT", default=15.0)

# --- Sender engine -----------------------------------------------------------------------
# Meta counts inbound messages in a number's throughput, so aim below the configured rate.
SENDER_RATE_HEADROOM = env.float("SENDER_RATE_HEADROOM", default=0.9)
SENDER_MAX_ATTEMPTS = env.int("SENDER_MAX_ATTEMPTS", default=6)
SENDER_RETRY_FIRST_SECONDS = env.float("SENDER_RETRY_FIRST_SECONDS", default=1.0)
SENDER_RETRY_BASE_SECONDS = env.float("SENDER_RETRY_BASE_SECONDS", default=5.0)
SENDER_RETRY_MAX_SECONDS = env.float("SENDER_RETRY_MAX_SECONDS", default=600.0)
SENDER_RETRY_JITTER = env.float("SENDER_RETRY_JITTER", default=0.2)
# A claim older than this belongs to a dead worker; its rows become "unknown".
SENDER_LEASE_SECONDS = env.float("SENDER_LEASE_SECONDS", default=60.0)
# How long an unknown-outcome row waits for a status webhook before the policy applies.
SENDER_RECONCILE_SECONDS = env.float("SENDER_RECONCILE_SECONDS", default=600.0)
# After the window: "evidence" re-sends only when statuses arrived for later messages of the
# same number (else holds it, alerts, and looks again); "resend" re-sends anyway; "hold"
# leaves it for staff to decide in admin. messaging/evidence.py, README "Crash safety".
SENDER_UNKNOWN_POLICY = env("SENDER_UNKNOWN_POLICY", default="evidence")
SENDER_SLICE_SECONDS = env.float("SENDER_SLICE_SECONDS", default=30.0)
# Upper bound of one worker's concurrent sends (threads and connections, created as used);
# what it uses is rate × p95 latency × 1.25: 200/s at 3 s of latency needs about 750.
SENDER_MAX_IN_FLIGHT = env.int("SENDER_MAX_IN_FLIGHT", default=768)

# --- Campaign import (messaging/campaign_import; docs/benchmarks.md) --------------------------
# Worker processes that normalise an import's numbers (phonenumbers is most of its Python CPU),
# used for files of at least IMPORT_PHONE_PROCESSES_FROM_ROWS rows; 0 = in the import's thread.
# Off by default: on 2 cores the exact fast path leaves them little to do, and passing rows to
# and fro cost more CPU than they saved (1 M rows: Python 23.4 s with 2, 16.6 s without, the
# import no slower; docs/benchmarks.md).
IMPORT_PHONE_PROCESSES = env.int("IMPORT_PHONE_PROCESSES", default=0)
IMPORT_PHONE_PROCESSES_FROM_ROWS = env.int("IMPORT_PHONE_PROCESSES_FROM_ROWS", default=20_000)
# A CSV on disk with at least this many data rows is read, checked and rendered by a parse
# process of its own (campaigns/csv_import/parse_worker.py) while the importing process feeds
# PostgreSQL; smaller files stay in the import's threads (starting the process costs a
# fraction of a second). 0 = never.
IMPORT_PARSE_PROCESS_FROM_ROWS = env.int("IMPORT_PARSE_PROCESS_FROM_ROWS", default=100_000)

# --- Send policy (messaging/policy; docs/policy.md) -------------------------------------------
# Default sending window for marketing campaigns in each recipient's local time, e.g.
# "09:00-20:00" (empty = off), and its weekdays ("mon-fri"; empty = every day).
POLICY_MARKETING_WINDOW = env("POLICY_MARKETING_WINDOW", default="")
POLICY_MARKETING_DAYS = env("POLICY_MARKETING_DAYS", default="")
# At most N marketing messages per contact per D days across all campaigns ("" = no cap).
POLICY_MARKETING_CAP = env("POLICY_MARKETING_CAP", default="2/7d")
# Template categories the cap does not count or hold back.
POLICY_CAP_EXEMPT_CATEGORIES = env.list(
    "POLICY_CAP_EXEMPT_CATEGORIES", default=["UTILITY", "AUTHENTICATION"]
)
# Meta does not deliver marketing templates to US (+1) numbers: refuse them at import.
POLICY_BLOCK_US_MARKETING = env.bool("POLICY_BLOCK_US_MARKETING", default=True)
# A 131026 ("not on WhatsApp") keeps the number out of new campaigns this many days.
POLICY_UNDELIVERABLE_DAYS = env.int("POLICY_UNDELIVERABLE_DAYS", default=30)
# The portfolio messaging limit's moving window (Meta: 24 h).
POLICY_BUDGET_WINDOW_SECONDS = env.float("POLICY_BUDGET_WINDOW_SECONDS", default=86400.0)
# Canary: how long to wait for its statuses, and the share of webhooks that ends the wait.
POLICY_CANARY_WAIT_SECONDS = env.float("POLICY_CANARY_WAIT_SECONDS", default=900.0)
POLICY_CANARY_STATUS_SHARE = env.float("POLICY_CANARY_STATUS_SHARE", default=0.9)
# Canary verdict and circuit breaker thresholds (shares; per-campaign overrides in admin).
POLICY_MAX_FAILURE_RATE = env.float("POLICY_MAX_FAILURE_RATE", default=0.2)
POLICY_MAX_OPT_OUT_RATE = env.float("POLICY_MAX_OPT_OUT_RATE", default=0.02)
POLICY_BREAKER_WINDOW = env.int("POLICY_BREAKER_WINDOW", default=500)
POLICY_BREAKER_MIN_SAMPLE = env.int("POLICY_BREAKER_MIN_SAMPLE", default=100)

# --- Webhooks -----------------------------------------------------------------------------
OPT_OUT_KEYWORDS = env.list(
    "OPT_OUT_KEYWORDS",
    default=[
        "STOP",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "STOPALL",
        "PARAR",
        "SAIR",
        "BAJA",
        "CANCELAR",
        "ALTO",
        "STOP PROMOTIONS",
    ],
)
REPLY_ATTRIBUTION_WINDOW_HOURS = env.int("REPLY_ATTRIBUTION_WINDOW_HOURS", default=72)
# The view queues an apply task at most this often (stored events are never lost either way).
WEBHOOK_KICK_SECONDS = env.float("WEBHOOK_KICK_SECONDS", default=2.0)
# Staff phones (E.164) the wizard may test-send a campaign's message to; senders add their own.
TEST_SEND_NUMBERS = env.list("TEST_SEND_NUMBERS", default=[])
# Run the portable SQL (what SQLite gets) on PostgreSQL too: for testing both paths only
# (messaging/sql_paths.py).
FORCE_PORTABLE_SQL = env.bool("FORCE_PORTABLE_SQL", default=False)
# Serves /webhooks/_bare/ (answers 200, nothing else) for bench/webhooks.py only.
WEBHOOK_BENCH_BARE_VIEW = env.bool("WEBHOOK_BENCH_BARE_VIEW", default=False)
AUTO_REPLY_ENABLED = env.bool("AUTO_REPLY_ENABLED", default=False)
AUTO_REPLY_LLM_URL = env("AUTO_REPLY_LLM_URL", default="")
AUTO_REPLY_LLM_KEY = env("AUTO_REPLY_LLM_KEY", default="")
AUTO_REPLY_LLM_MODEL = env("AUTO_REPLY_LLM_MODEL", default="gpt-4o-mini")
AUTO_REPLY_MAX_PER_USER_PER_DAY = env.int("AUTO_REPLY_MAX_PER_USER_PER_DAY", default=3)

# --- HTTP API (/api/v1/) ----------------------------------------------------------------
# 1,000 messages of a batch with their variables fit well within 2 MB.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=2_097_152)
API_MAX_UPLOAD_BYTES = env.int("API_MAX_UPLOAD_BYTES", default=104_857_600)
# Idempotency keys are kept at least this long (the promise to clients is 24 hours).
API_IDEMPOTENCY_HOURS = env.int("API_IDEMPOTENCY_HOURS", default=48)
# How long a web process keeps API keys, sender numbers and templates it read (0: off). A
# change is seen at once while Redis is up; this bounds it when Redis is not
# (messaging/integrations/lookup_cache.py).
API_LOOKUP_CACHE_SECONDS = env.float("API_LOOKUP_CACHE_SECONDS", default=5.0)

# --- Outbound events (subscriptions in admin) -----------------------------------------------
# The first retry of a failed batch: 0.2 s, then doubling (0.4, 0.8 … s, capped), by the
# same thread while short. A subscription is one FIFO, so every failed POST holds all its
# later events for this long: at 10 s, a receiver failing 5 % of POSTs got 126 events/s
# instead of 5,000 (docs/benchmarks.md, "Outbound events"); a receiver that is down for good
# still gets only about 15 tries in its first hour.
EVENTS_RETRY_BASE_SECONDS = env.float("EVENTS_RETRY_BASE_SECONDS", default=0.2)
EVENTS_RETRY_MAX_SECONDS = env.float("EVENTS_RETRY_MAX_SECONDS", default=3600.0)
# Events still undelivered after this long become dead letters (re-delivered from admin).
EVENTS_RETRY_HOURS = env.float("EVENTS_RETRY_HOURS", default=24.0)
EVENTS_TIMEOUT_SECONDS = env.float("EVENTS_TIMEOUT_SECONDS", default=10.0)
EVENTS_SLICE_SECONDS = env.float("EVENTS_SLICE_SECONDS", default=30.0)
EVENTS_MAX_PARALLEL = env.int("EVENTS_MAX_PARALLEL", default=8)
# A subscription that takes batches gets message events in full batches while they keep
# coming: a partial batch waits until its oldest event is this old. Each batch costs a POST
# and three statements whatever its size (docs/benchmarks.md, "Outbound events").
EVENTS_BATCH_WAIT_SECONDS = env.float("EVENTS_BATCH_WAIT_SECONDS", default=0.1)

# --- Alerts to staff ----------------------------------------------------------------------
# E-mail recipients; empty: active staff with the integrations.receive_alerts permission.
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
# A Slack-compatible incoming webhook ({"text": ...}); empty: none.
ALERT_CHAT_WEBHOOK_URL = env("ALERT_CHAT_WEBHOOK_URL", default="")
ALERT_REPEAT_MINUTES = env.int("ALERT_REPEAT_MINUTES", default=60)
ALERT_STALLED_MINUTES = env.int("ALERT_STALLED_MINUTES", default=10)
ALERT_WEBHOOK_BACKLOG = env.int("ALERT_WEBHOOK_BACKLOG", default=10_000)
ALERT_WEBHOOK_SILENCE_MINUTES = env.int("ALERT_WEBHOOK_SILENCE_MINUTES", default=15)
ALERT_CLUSTER_MINUTES = env.int("ALERT_CLUSTER_MINUTES", default=5)
# A messaging limit, quality or number status change stays on the banner this long.
ALERT_LIMIT_CHANGE_HOURS = env.float("ALERT_LIMIT_CHANGE_HOURS", default=24.0)
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", default="localhost")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="wacampaigns@localhost")
# /metrics and /health/memory/: staff session, or `Authorization: Bearer <METRICS_TOKEN>`.
METRICS_TOKEN = env("METRICS_TOKEN", default="")

# --- django-q2 ----------------------------------------------------------------------------
# django-q2 carries control tasks (sender slices, watchdog, webhook apply), never one task
# per message. timeout < retry, or a slow task is handed out twice (docs/engine-notes.md §1).
Q_CLUSTER = {
    "name": "wacampaigns",
    "orm": "default",
    "workers": env.int("Q_WORKERS", default=4),
    "timeout": 60,
    "retry": 120,
    "max_attempts": 3,
    "ack_failures": True,
    "queue_limit": 4,
    "bulk": 1,
    "poll": 0.5,
    "recycle": 200,
    "max_rss": 300_000,
    "save_limit": 200,
    "catch_up": False,
    "sync": env.bool("Q_SYNC", default=False),
}

# --- Data retention and erasure (docs/retention.md) ---------------------------------------
# Applied webhook bodies, status log rows and the rendered parameters of queue rows of
# campaigns finished this many days ago are purged (a cluster schedule and `manage.py purge`).
RETENTION_WEBHOOK_BODY_DAYS = env.int("RETENTION_WEBHOOK_BODY_DAYS", default=7)
RETENTION_STATUS_LOG_DAYS = env.int("RETENTION_STATUS_LOG_DAYS", default=90)
RETENTION_FINISHED_CAMPAIGN_DAYS = env.int("RETENTION_FINISHED_CAMPAIGN_DAYS", default=30)
# Delivered outbound events (at 1,000 msg/s with 3 status events each: 260 M rows a day).
RETENTION_OUTBOUND_EVENT_DAYS = env.int("RETENTION_OUTBOUND_EVENT_DAYS", default=3)
# Message event log entries every active subscription has read (docs/integrations.md): kept
# this long after they were written, then purged (20 entries a second at 1,000 msg/s).
RETENTION_EVENT_LOG_HOURS = env.int("RETENTION_EVENT_LOG_HOURS", default=1)
# Key of the suppression hash (HMAC-SHA256 of the E.164) that outlives an erased contact.
# Empty = derived from SECRET_KEY; set it in production so rotating SECRET_KEY keeps every
# suppression matching. Never change it once suppressions exist.
SUPPRESSION_HASH_PEPPER = env("SUPPRESSION_HASH_PEPPER", default="")
