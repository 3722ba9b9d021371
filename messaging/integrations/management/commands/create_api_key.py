"""manage.py create_api_key NAME [--scopes messages:send messages:read …]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from messaging.integrations.keys import create_api_key
from messaging.integrations.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key for a client; the key is printed once and never shown again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="who the key is for, e.g. 'crm'")
        parser.add_argument(
            "--scopes",
            nargs="+",
            default=[ApiKey.Scope.MESSAGES_SEND, ApiKey.Scope.MESSAGES_READ],
            help=f"any of: {', '.join(ApiKey.Scope.values)} (default: messages:send messages:read)",
        )

    def handle(self, *args: object, **options: object) -> None:
        name = str(options["name"])
        if ApiKey.objects.filter(name=name).exists():
            raise CommandError(f"an API key named {name!r} exists already")
        try:
            new = create_api_key(name=name, scopes=options["scopes"])  # type: ignore[arg-type]
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"API key {name!r} ({', '.join(new.api_key.scopes)}):")
        self.stdout.write(new.secret)
        self.stderr.write("Store it now: only its hash is kept, it cannot be shown again.")
