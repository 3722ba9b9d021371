"""The quickstart: a whole campaign against the simulator, with progress and a final report.

The loop is closed: the simulator posts its status webhooks (delivered, read, failed) and its
users' replies and opt-outs to this app's own webhook endpoint, served on loopback, and the
production drain applies them; then a staff user is created and, with --serve, the admin runs.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError, CommandParser

from campaigns.commands import SafeCommand, number_option, port_option
from campaigns.models import Campaign, MessageTemplate, SenderNumber
from messaging.campaign_import import create_campaign_from_csv
from messaging.demo.data import ensure_demo_sender, sync_demo_templates, write_demo_csv
from messaging.demo.loop import WebhookReceiver, ensure_demo_user, funnel
from messaging.sender import run_number
from messaging.services import start_campaign
from messaging.simulator.config import parse_rate_spec
from messaging.simulator.harness import start_simulator

# The simulator signs its webhooks with this; it only ever listens on loopback.
DEMO_APP_SECRET = "demo-app-secret"  # noqa: S105


class Command(SafeCommand):
    help = "Run a demo campaign end to end against the WhatsApp simulator."
    t99: tuple[float, int] | None = None  # (elapsed s, sent) when 99 % of the rows were final

    def add_arguments(self, parser: CommandParser) -> None:
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
        parser.add_argument(
            "--serve",
            action="store_true",
            help="then start the development server with the demo's campaign, chart and inbox",
        )
        parser.add_argument("--port", type=int, default=8000, help="port for --serve")
        parser.add_argument(
            "--reply-rate", type=float, default=0.02, help="read messages the users answer"
        )
        parser.add_argument(
            "--opt-out-rate", type=float, default=0.002, help="read messages answered STOP"
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
        for flag in ("reply_rate", "opt_out_rate"):
            number_option(f"--{flag.replace('_', '-')}", options[flag], hi=1.0)
        port_option("--port", options["port"])
        # State changes log at INFO; here they would tear through the progress bar.
        logging.getLogger("messaging").setLevel(logging.WARNING)
        logging.getLogger("webhooks").setLevel(logging.WARNING)
        call_command("migrate", verbosity=0)
        # No django-q cluster here: the receiver's own drain thread applies what is stored.
        settings.WEBHOOK_KICK_SECONDS = 0
        settings.WHATSAPP_APP_SECRET = DEMO_APP_SECRET
        with (
            WebhookReceiver() as receiver,
            start_simulator(
                latency_ms=latency_ms,
                jitter_ms=latency_ms // 2,
                mps=rate,
                error_rates=errors,
                app_secret=DEMO_APP_SECRET,
                webhook_url=receiver.url,
                webhook_error_rates={131026: 0.01, 131047: 0.005},
                reply_rate=options["reply_rate"],
                opt_out_rate=options["opt_out_rate"],
                seed=1,
            ) as sim,
        ):
            settings.WHATSAPP_API_BASE_URL = sim.base_url
            settings.WHATSAPP_ACCESS_TOKEN = sim.token
            self.stdout.write(f"Simulator at {sim.base_url}, webhooks to {receiver.url}")
            sender = ensure_demo_sender(rate_mps=rate)
            templates = sync_demo_templates(base_url=sim.base_url)
            self.stdout.write(f"Templates synced from the API: {', '.join(map(str, templates))}")
            campaign = self._import(sender, templates, contacts)
            self.stdout.write(f"Sending at {rate}/s × headroom …")
            report = self._send(campaign, sender.pk, max_seconds)
            self.stdout.write("Waiting for the last webhooks …")
            settled = receiver.settle(lambda: _outstanding(sim.stats()))
            stats = sim.stats()
        self._report(campaign, report, stats, settled)
        self._admin(options["serve"], options["port"])

    def _import(
        self, sender: SenderNumber, templates: list[MessageTemplate], contacts: int
    ) -> Campaign:
        csv_path = write_demo_csv(Path(settings.BASE_DIR) / "var" / "demo.csv", contacts=contacts)
        started = time.monotonic()
        result = create_campaign_from_csv(
            name=f"Demo {time.strftime('%Y-%m-%d %H:%M:%S')}",
            csv_file=csv_path,
            sender=sender,
            templates=[(t, 1) for t in templates],
            default_region="PT",
        )
        # The demo's people are made up and messaged again on every run: no frequency cap.
        Campaign.objects.filter(pk=result.created.pk).update(frequency_cap="off")
        start_campaign(campaign_id=result.created.pk)
        self.stdout.write(
            f"Campaign {result.created.pk} from {csv_path}: {result.queued:,} queued, "
            f"{result.rejected} rejected, {result.duplicates} duplicates, "
            f"{result.suppressed} suppressed ({time.monotonic() - started:.1f} s)"
        )
        return result.created

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
        # A row accepted, then failed by a webhook, is in both counters.
        done = min(campaign.sent + campaign.failed, campaign.total)
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

    def _report(self, campaign: Campaign, report: dict, stats: dict, settled: bool) -> None:
        f = funnel(campaign)
        elapsed = report["elapsed"]
        target = campaign.sender.rate_mps * settings.SENDER_RATE_HEADROOM

        def line(label: str, n: int, of: int | None = None, what: str = "") -> None:
            share = f"  {n / of:6.1%} of {what}" if of else ""
            self.stdout.write(f"  {label:<10}{n:>8,}{share}")

        self.stdout.write(self.style.SUCCESS(f"Campaign {campaign.pk} {campaign.status}"))
        line("queued", f.total)
        line("accepted", f.accepted, f.total, "queued")
        line("delivered", f.delivered, f.accepted, "accepted")
        line("read", f.read, f.delivered, "delivered")
        line("replied", f.replied, f.read, "read")
        line("failed", f.failed, f.total, "queued")
        for code, title, n in f.failed_by_code:
            self.stdout.write(f"  {'':<10}{n:>8,}  {code or 'no code'}: {title}")
        line("opted out", f.opted_out)
        self.stdout.write(f"  elapsed   {elapsed:>8.1f} s")
        # The last 1 % is retries waiting out their backoff: the steady rate is up to there.
        t99, sent99 = report["t99"] or (elapsed, campaign.sent)
        busiest = max(stats["max_accepted_1s_by_number"].values(), default=0)
        self.stdout.write(
            f"  rate      {sent99 / t99:>8.1f} msg/s to 99 % (target {target:.0f}: "
            f"{sent99 / t99 / target:.2f} of it; busiest second at the API {busiest})"
        )
        self.stdout.write(f"  duplicates seen by the API: {stats['callbacks']['more_than_once']}")
        if not settled:
            self.stdout.write(
                self.style.WARNING("  some webhooks were still arriving: figures may be short")
            )

    def _admin(self, serve: bool, port: int) -> None:
        username, password = ensure_demo_user()
        self.stdout.write(
            f"Admin user {username!r}, password {password} (shown once; the next demo run "
            "makes a new one)."
        )
        if not serve:
            self.stdout.write(
                "Open admin: scripts/quickstart --serve (or DEBUG=1 .venv/bin/python manage.py "
                f"runserver {port}), then http://127.0.0.1:{port}/admin/"
            )
            return
        self.stdout.write(f"Admin at http://127.0.0.1:{port}/admin/ (Ctrl-C stops it)")
        call_command("runserver", f"127.0.0.1:{port}", use_reloader=False)


def _outstanding(stats: dict) -> int:
    """Webhook items the simulator planned and has neither delivered nor given up on."""
    hooks = stats["webhooks"]
    return hooks["statuses_queued"] - hooks["statuses_delivered"] - hooks["statuses_dropped"]
