"""The campaign results pages on a 1,000,000-row campaign: the live JSON endpoint, the campaign
page, the chart query, and (for information) the per-template/failures block and the list.

    .venv/bin/python -m bench.results [--rows 1000000] [--repeat 15]

Builds its own database (wac_bench_results): one campaign whose rows are spread over an hour
the way a finished-but-still-settling send looks (read, delivered, at `sent`, failed by code,
waiting for a retry, still queued) plus 5,000 replies, then times each read through Django's
test client as a logged-in superuser (so the admin's own session and user queries count too).
Prints medians and query counts against the issue's floors. The chart reads the per-minute
counts (messaging.minutes), rebuilt once after the bulk load; a recount from the rows is timed
beside it for reference.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import fresh_database, services_env, setup_django

FLOORS_MS = {"live JSON": 50.0, "campaign page": 300.0, "chart query": 500.0}
QUERY_FLOOR_LIVE = 10


def _build(rows: int) -> int:
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import Campaign, CampaignTemplate, MessageTemplate
    from tests import factories

    account = factories.AccountFactory()
    sender = factories.SenderFactory(account=account)
    templates = [
        factories.TemplateFactory(account=account, name=f"bench_{n}", language="en_US")
        for n in range(2)
    ]
    start = timezone.now() - timezone.timedelta(minutes=70)
    campaign = Campaign.objects.create(
        name="Bench 1M", sender=sender, status=Campaign.Status.RUNNING, started_at=start
    )
    for position, template in enumerate(templates):
        CampaignTemplate.objects.create(campaign=campaign, template=template, position=position)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_contact (phone, name, attributes, wa_id, created_at) "
            "SELECT '+1415' || lpad(g::text, 7, '0'), 'C' || g, '{}'::jsonb, '', now() "
            "FROM generate_series(1, %s) g",
            [rows],
        )
        # Outcome by row number: 80 % read, 6 % delivered, 3 % at sent, 5 % failed (three
        # codes), 1 % waiting for a retry, 5 % still queued; times spread over 60 minutes.
        cursor.execute(
            """
            INSERT INTO messaging_outboundmessage (campaign_id, contact_id, template_id,
                sender_id, phone, parameters, priority, status, attempts, next_attempt_at,
                claimed_by, wamid, error_code, error_category, error_detail, accepted_at,
                sent_at, delivered_at, read_at, failed_at)
            SELECT %(campaign)s, c.id, CASE WHEN c.id %% 2 = 0 THEN %(t0)s ELSE %(t1)s END,
                %(sender)s, c.phone, '[]'::jsonb, 0, s.status, 1, now(), '',
                CASE WHEN s.status >= 10 AND s.status <> 20 THEN 'wamid.b' || c.id END,
                s.code, CASE WHEN s.code IS NULL THEN '' ELSE 'recipient' END,
                CASE WHEN s.code IS NULL THEN '' ELSE 'Bench failure' END,
                CASE WHEN s.status BETWEEN 10 AND 13 OR s.status = 20 THEN s.at END,
                CASE WHEN s.status BETWEEN 11 AND 13 THEN s.at + interval '1 s' END,
                CASE WHEN s.status IN (12, 13) THEN s.at + interval '3 s' END,
                CASE WHEN s.status = 13 THEN s.at + interval '40 s' END,
                CASE WHEN s.status = 20 THEN s.at + interval '2 s' END
            FROM campaigns_contact c CROSS JOIN LATERAL (
                SELECT CASE
                    WHEN c.id %% 100 < 80 THEN 13 WHEN c.id %% 100 < 86 THEN 12
                    WHEN c.id %% 100 < 89 THEN 11 WHEN c.id %% 100 < 94 THEN 20
                    WHEN c.id %% 100 < 95 THEN 1 ELSE 0 END AS status,
                CASE WHEN c.id %% 100 BETWEEN 89 AND 93
                    THEN (ARRAY[131026, 131049, 132015])[1 + c.id %% 3]
                    WHEN c.id %% 100 = 94 THEN 131049 END AS code,
                %(start)s::timestamptz + (c.id %% 3600) * interval '1 s' AS at
            ) s
            """,
            {
                "campaign": campaign.pk,
                "t0": templates[0].pk,
                "t1": templates[1].pk,
                "sender": sender.pk,
                "start": start,
            },
        )
        cursor.execute(
            "INSERT INTO webhooks_inboundmessage (sender_id, user_phone, user_name, wamid, type, "
            "text, payload, context_wamid, campaign_id, timestamp, received_at) "
            "SELECT %s, '+1415' || lpad((g * 7)::text, 7, '0'), '', 'wamid.in' || g, 'text', "
            "'thanks', '{}'::jsonb, '', %s, %s::timestamptz + g * interval '0.7 s', now() "
            "FROM generate_series(1, 5000) g",
            [sender.pk, campaign.pk, start],
        )
        cursor.execute(
            "UPDATE campaigns_campaign c SET total = s.total, sent = s.accepted, "
            "delivered = s.delivered, read = s.read, failed = s.failed FROM ("
            "SELECT count(*) total, count(accepted_at) accepted, count(delivered_at) delivered, "
            "count(read_at) read, count(*) FILTER (WHERE status = 20) failed "
            "FROM messaging_outboundmessage WHERE campaign_id = %s) s WHERE c.id = %s",
            [campaign.pk, campaign.pk],
        )
        cursor.execute("VACUUM ANALYZE messaging_outboundmessage")
        cursor.execute("ANALYZE webhooks_inboundmessage")
    MessageTemplate.objects.update(status="APPROVED")
    return campaign.pk


def _time(call, repeat: int) -> tuple[float, int]:
    """Median milliseconds of `call` over `repeat` runs (after one warm-up) and its queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    call()
    times = []
    queries = 0
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            call()
            times.append((time.perf_counter() - started) * 1000)
        queries = len(captured.captured_queries)
    return statistics.median(times), queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    env = services_env(db_name="wac_bench_results", redis_db=5)
    fresh_database(env["DATABASE_URL"])
    setup_django(env)

    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client, override_settings
    from django.urls import reverse

    from campaigns.models import Campaign
    from campaigns.results import chart
    from messaging import minutes

    started = time.perf_counter()
    campaign_id = _build(args.rows)
    print(f"built {args.rows:,} rows in {time.perf_counter() - started:.0f} s")
    # The rows were written straight to the table, so their per-minute counts are a recount
    # (the engine and the webhook appliers move them as they go).
    started = time.perf_counter()
    written = minutes.rebuild(campaign_id)
    print(f"per-minute counts rebuilt ({written} minutes) in {time.perf_counter() - started:.1f} s")

    # Production settings want collected, hashed static files; the pages' cost is the same.
    override_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
    ).enable()
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "unused")
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)

    def get(name: str) -> None:
        response = client.get(reverse(name, args=[campaign_id]), secure=True)
        assert response.status_code == 200, response.status_code

    def chart_query() -> None:
        chart.chart(Campaign.objects.get(pk=campaign_id))

    def page() -> None:
        cache.clear()  # the page itself computes nothing cached; keep the rate samples fresh
        get("admin:campaigns_campaign_change")

    results = {
        "live JSON": _time(lambda: get("admin:campaigns_campaign_live"), args.repeat),
        "campaign page": _time(page, args.repeat),
        "chart query": _time(chart_query, args.repeat),
        "recount from the rows (rebuild; was the chart's cost)": _time(
            lambda: minutes.recount(campaign_id), 3
        ),
        "per template + failures (lazy block)": _time(
            lambda: get("admin:campaigns_campaign_details"), max(3, args.repeat // 3)
        ),
        "campaign list": _time(
            lambda: client.get(reverse("admin:campaigns_campaign_changelist"), secure=True),
            args.repeat,
        ),
    }
    print(f"{'what':40} {'median ms':>10} {'queries':>8} {'floor ms':>9} {'ratio':>6}")
    for what, (ms, queries) in results.items():
        floor = FLOORS_MS.get(what)
        ratio = f"{ms / floor:.2f}" if floor else "–"
        print(f"{what:40} {ms:10.1f} {queries:8d} {floor or '–':>9} {ratio:>6}")
    live_queries = results["live JSON"][1]
    print(f"live JSON queries: {live_queries} (floor ≤ {QUERY_FLOOR_LIVE})")


if __name__ == "__main__":
    main()
