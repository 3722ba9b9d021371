"""A phone worker process of a big import: `python -m campaigns.e164_worker`.

Reads requests from stdin and answers on stdout, each a 4-byte big-endian length and a pickle:
(region, [stripped raw numbers]) in, [`recipient_phone` of each] out, until stdin closes. It
imports `campaigns.e164` only (phonenumbers, no Django), so it starts in a fraction of a second.
The parent is `messaging.campaign_import.phone_pool.PhonePool`, the only writer of the pipe
(pickle is safe here because nothing else can write to it).
"""

from __future__ import annotations

import pickle
import struct
import sys
from typing import IO

from campaigns.e164 import recipient_phones

_LENGTH = struct.Struct("!I")


def read_message(stream: IO[bytes]) -> object | None:
    """The next message of `stream`, or None at its end."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)  # noqa: S301 (our own parent's pipe)


def write_message(stream: IO[bytes], message: object) -> None:
    write_body(stream, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def write_body(stream: IO[bytes], body: bytes) -> None:
    """A message already pickled."""
    stream.write(_LENGTH.pack(len(body)))
    stream.write(body)
    stream.flush()


def serve(source: IO[bytes], sink: IO[bytes]) -> None:
    while (request := read_message(source)) is not None:
        region: str
        raws: list[str]
        region, raws = request  # type: ignore[misc]
        write_message(sink, recipient_phones(raws, region))


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
