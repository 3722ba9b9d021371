"""The quickstart: a whole campaign against the simulator, with progress and a final report."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count

from campaigns.commands import SafeCommand, number_option
from campaigns.models import Campaign
from messaging.campaign_import import create_campaign_from_csv
from messaging.demo.data import ensure_demo_sender, sync_demo_templates, write_demo_csv
from messaging.models import OutboundMessage, OutboundStatus
from messaging.sender import run_number
from messaging.simulator.config import parse_rate_spec
from messaging.simulator.harness import start_simulator


class Command(SafeCommand):
    help = "Run a demo campaign end to end against the WhatsApp simulator."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--contacts", type=int, default=10_000)
        parser.add_argument("--rate", type=int, default=200, help="sender rate, messages/s")
        parser.add_argument("--latency-ms", type=int, default=100)
        parser.add_argument("--max-seconds", type=float, default=900)
        parser.add_argument(
            "--error-rate",
            action="append",
            default=None,
            help="CODE=FRACTION injected by the simulator (default: a little of everything)",
        )

    def handle(self, *args, contacts, rate, latency_ms, max_seconds, error_rate, **options):
        if not 1 <= contacts <= 1_000_000 or not 1 <= rate <= 1000:
            raise CommandError("--contacts must be 1..1,000,000 and --rate 1..1,000")
        if not 0 <= latency_ms <= 60_000:
            raise CommandError(f"--latency-ms {latency_ms}: must be between 0 and 60000")
        number_option("--max-seconds", max_seconds, open_lo=True)
        errors = {}
        for spec in error_rate or ["131026=0.01", "131000=0.01"]:
            try:
                code, fraction = parse_rate_spec(spec)
            except ValueError as exc:
                raise CommandError(f"--error-rate {exc}") from None
            number_option(f"--error-rate {spec!r}: the fraction", fraction, hi=1.0)
            errors[code] = fraction
        # State changes log at INFO; here they would tear through the progress bar.
        logging.getLogger("messaging").setLevel(logging.WARNING)
        call_command("migrate", verbosity=0)
        with start_simulator(
            latency_ms=latency_ms, jitter_ms=latency_ms // 2, mps=rate, error_rates=errors
        ) as sim:
            settings.WHATSAPP_API_BASE_URL = sim.base_url
            settings.WHATSAPP_ACCESS_TOKEN = sim.token
            self.stdout.write(f"Simulator at {sim.base_url}")
            sender = ensure_demo_sender(rate_mps=rate)
            templates = sync_demo_templates(base_url=sim.base_url)
            self.stdout.write(f"Templates synced from the API: {', '.join(map(str, templates))}")
            campaign = self._import(sender, templates, contacts)
            self.stdout.write(f"Sending at {rate}/s × headroom …")
            report = self._send(campaign, sender.pk, max_seconds)
            stats = sim.stats()
        self._report(campaign, report, stats)

    def _import(self, sender, templates, contacts: int) -> Campaign:
        csv_path = write_demo_csv(Path(settings.BASE_DIR) / "var" / "demo.csv", contacts=contacts)
        started = time.monotonic()
        result = create_campaign_from_csv(
            name=f"Demo {time.strftime('%Y-%m-%d %H:%M:%S')}",
            csv_file=csv_path,
            sender=sender,
            templates=[(t, 1) for t in templates],
            start_now=True,
            default_region="US",
        )
        self.stdout.write(
            f"Campaign {result.campaign.pk} from {csv_path}: {result.queued:,} queued, "
            f"{result.rejected} rejected, {result.duplicates} duplicates, "
            f"{result.suppressed} suppressed ({time.monotonic() - started:.1f} s)"
        )
        return result.campaign

    def _send(self, campaign: Campaign, sender_id: int, max_seconds: float) -> dict:
        stop = threading.Event()
        started = time.monotonic()
        self.t99 = None
        worker = threading.Thread(
            target=run_number,
            args=(sender_id,),
            kwargs={
                "worker_id": "demo",
                "max_seconds": max_seconds,
                "until_idle": True,
                "stop": stop,
            },
        )
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.5)
                self._progress(campaign, time.monotonic() - started)
        except KeyboardInterrupt:
            stop.set()
            worker.join()
        self.stdout.write("")
        return {"elapsed": time.monotonic() - started, "t99": self.t99}

    def _progress(self, campaign: Campaign, elapsed: float) -> None:
        campaign.refresh_from_db(fields=["sent", "failed", "total", "status"])
        done = campaign.sent + campaign.failed
        if self.t99 is None and done >= 0.99 * campaign.total:
            self.t99 = (elapsed, campaign.sent)
        width = 30
        filled = int(width * done / max(1, campaign.total))
        rate = campaign.sent / elapsed if elapsed else 0.0
        eta = (campaign.total - done) / rate if rate else 0.0
        self.stdout.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{campaign.total:,} "
            f"{rate:6.1f} msg/s  ETA {int(eta) // 60}m{int(eta) % 60:02d}s  ",
            ending="",
        )
        self.stdout.flush()

    def _report(self, campaign: Campaign, report: dict, stats: dict) -> None:
        campaign.refresh_from_db()
        by_category = dict(
            OutboundMessage.objects.filter(campaign=campaign, status=OutboundStatus.FAILED)
            .values_list("error_category")
            .annotate(n=Count("id"))
            .order_by()
        )
        elapsed = report["elapsed"]
        target = campaign.sender.rate_mps * settings.SENDER_RATE_HEADROOM
        self.stdout.write(self.style.SUCCESS(f"Campaign {campaign.pk} {campaign.status}"))
        self.stdout.write(f"  queued    {campaign.total:>8,}")
        self.stdout.write(f"  sent      {campaign.sent:>8,}")
        self.stdout.write(f"  failed    {campaign.failed:>8,}  {by_category or ''}")
        self.stdout.write(f"  elapsed   {elapsed:>8.1f} s")
        # The last 1 % is retries waiting out their backoff: the steady rate is up to there.
        t99, sent99 = report["t99"] or (elapsed, campaign.sent)
        busiest = max(stats["max_accepted_1s_by_number"].values(), default=0)
        self.stdout.write(
            f"  rate      {sent99 / t99:>8.1f} msg/s to 99 % (target {target:.0f}: "
            f"{sent99 / t99 / target:.2f} of it; busiest second at the API {busiest})"
        )
        self.stdout.write(f"  duplicates seen by the API: {stats['callbacks']['more_than_once']}")
        self.stdout.write(
            "Open admin: DEBUG=1 .venv/bin/python manage.py createsuperuser && "
            "DEBUG=1 .venv/bin/python manage.py runserver, then http://127.0.0.1:8000/admin/"
        )
