"""What every management command shares: errors in one line, and argument checks against the
models' limits, so a bad invocation never ends in a traceback or a half-written row."""

from __future__ import annotations

import ipaddress
import math
import re
import types
from pathlib import Path
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, models

GRAPH_ID = re.compile(r"^[A-Za-z0-9_-]+$")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9-]{1,63})*$"
)


def _one_line_error(parser: CommandParser, message: str) -> NoReturn:
    if parser.called_from_command_line:
        # argparse prints the whole usage first; the one line names the option and the fix.
        parser.exit(2, f"{parser.prog}: error: {message} (--help lists the options)\n")
    raise CommandError(f"Error: {message}")


class SafeCommand(BaseCommand):
    """A command whose every failure is one line on stderr and a non-zero exit.

    Arguments are checked up front with the helpers below; anything unforeseen that still
    escapes is reported in one line too (`--traceback` shows where, as in Django).
    """

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.error = types.MethodType(_one_line_error, parser)  # type: ignore[method-assign]
        return parser

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except CommandError as exc:
            text = str(exc)
            if "\n" in text:
                raise CommandError(" ".join(text.split()), returncode=exc.returncode) from exc
            raise
        except Exception as exc:
            if options.get("traceback"):
                raise
            detail = " ".join(str(exc).split())[:300]
            raise CommandError(
                f"unexpected {type(exc).__name__}: {detail} (--traceback shows where)"
            ) from exc


def _field(model: type[models.Model], name: str) -> Any:
    return model._meta.get_field(name)


def text_option(
    flag: str, value: str | None, *, model: type[models.Model], field: str, required: bool = True
) -> str:
    """`value` stripped, within the model field's max_length, printable; else CommandError."""
    text = (value or "").strip()
    limit = _field(model, field).max_length
    if required and not text:
        raise CommandError(f"{flag}: must not be empty")
    if limit is not None and len(text) > limit:
        raise CommandError(f"{flag}: {len(text)} characters long; at most {limit}")
    if any(not ch.isprintable() for ch in text):
        raise CommandError(f"{flag} {text[:40]!r}: control characters are not allowed")
    return text


def graph_id_option(flag: str, value: str | None, *, model: type[models.Model], field: str) -> str:
    """A Graph API id (letters, digits, _ and -) within the model field's length."""
    text = text_option(flag, value, model=model, field=field)
    if not GRAPH_ID.match(text):
        raise CommandError(f"{flag} {text[:40]!r}: expected a Graph id such as 106540352242922")
    return text


def int_option(flag: str, value: int | None, lo: int, hi: int) -> int | None:
    if value is not None and not lo <= value <= hi:
        raise CommandError(f"{flag} {value}: must be between {lo} and {hi}")
    return value


def field_range(model: type[models.Model], field: str) -> tuple[int, int]:
    """The integers the database column holds (SmallIntegerField: ±32,767, …)."""
    lo, hi = connection.ops.integer_field_range(_field(model, field).get_internal_type())
    return lo, hi


def number_option(
    flag: str, value: float | None, *, lo: float = 0.0, hi: float = math.inf, open_lo: bool = False
) -> float | None:
    """A finite number in [lo, hi] (or (lo, hi] with open_lo); None passes."""
    if value is None:
        return None
    if not math.isfinite(value) or value < lo or value > hi or (open_lo and value == lo):
        bound = f"more than {lo:g}" if open_lo else f"at least {lo:g}"
        upper = "" if hi == math.inf else f" and at most {hi:g}"
        raise CommandError(f"{flag} {value}: must be a number {bound}{upper}")
    return value


def port_option(flag: str, value: int, *, allow_zero: bool = False) -> int:
    lo = 0 if allow_zero else 1
    if not lo <= value <= 65535:
        hint = " (0 picks a free one)" if allow_zero else ""
        raise CommandError(f"{flag} {value}: a TCP port is {lo}..65535{hint}")
    return value


def host_option(flag: str, value: str) -> str:
    """An IP address or a host name (syntax only: nothing is resolved here)."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not HOSTNAME.match(value or ""):
        raise CommandError(f"{flag} {value!r}: expected an IP address or a host name")
    return value


def read_limited(path: Path, *, limit: int, what: str = "file") -> bytes:
    """At most `limit` bytes of a regular file; refuses larger files and devices in one line."""
    try:
        if not path.is_file():
            raise CommandError(
                f"{path}: no such {what}" if not path.exists() else f"{path}: not a regular file"
            )
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise CommandError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise CommandError(f"{path}: larger than {limit // 1_000_000} MB; refused")
    return data
