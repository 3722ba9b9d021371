"""The parse process of a big import: `python -m campaigns.csv_import.parse_worker`.

It reads the CSV itself, checks and normalises every row, drops repeated numbers and renders
each chunk's COPY text, on the second core, so the importing process only moves bytes to
PostgreSQL (in one process, those steps and the thread feeding PostgreSQL shared one GIL and
the database sat idle between round trips: docs/benchmarks.md). No Django, no database: the
parent (`messaging.campaign_import.parse_process.ParseProcess`) asks PostgreSQL which numbers
to leave out and says so in a mask, because only its transaction may be asked.

Messages are length-prefixed pickles on stdin and stdout (`campaigns.e164_worker`), in this
order, so neither side ever waits on a pipe the other is not reading:

    parent: config                    child: numbers 0, numbers 1
    parent: mask 0                    child: rendered 0, numbers 2
    parent: mask 1                    child: rendered 1, numbers 3 ...
    ... after the last chunk's numbers the child writes ("end",), reads the last mask and
    writes the last rendered chunk; an error ends the stream with ("error", kind, text).

A mask is a bit per kept row (`chunks.drop_mask`, at most 3 KB for 25,000 rows), so the two
masks the parent may write ahead always fit in the pipe's buffer.

`python -m campaigns.csv_import.parse_worker --check PATH` is the whole-file check of the same
import (`check`), in a process of its own beside it.
"""

from __future__ import annotations

import os
import pickle
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from campaigns.csv_import.chunks import (
    Chunk,
    KeptRow,
    RejectedRow,
    Rendered,
    chunked,
    render_chunk,
    without_dropped,
)
from campaigns.csv_import.errors import CsvImportError
from campaigns.csv_import.reader import CsvFile
from campaigns.csv_import.rendering import TemplatePlan
from campaigns.csv_import.rows import parse_rows
from campaigns.e164_worker import read_message, write_body, write_message


@dataclass
class Numbers:
    """A chunk as the parent first sees it: the kept rows' numbers in file order, what it
    refused and how many rows repeated a number."""

    phones: list[str]
    rejected: list[RejectedRow]
    duplicates: int


class Renderer:
    """A file's chunks rendered in order, once the parent has said which kept rows to leave
    out (the queue positions run on over the rows kept); the same steps whether the parse
    process or a thread of the import runs them."""

    def __init__(
        self, plans: list[TemplatePlan], pattern: list[int], campaign_id: int, line_prefix: str
    ) -> None:
        self._plans, self._pattern, self._campaign_id = plans, pattern, campaign_id
        self._line_prefix = line_prefix
        self._seq = 0  # the queue position of the next kept row

    @staticmethod
    def numbers(chunk: Chunk) -> Numbers:
        return Numbers([row[1] for row in chunk.kept], chunk.rejected, chunk.duplicates)

    def render(self, kept: list[KeptRow], rejected: list[RejectedRow], mask: bytes) -> Rendered:
        rows = without_dropped(kept, mask)
        rendered = render_chunk(
            self._plans,
            self._pattern,
            self._campaign_id,
            rows,
            self._seq,
            rejected,
            self._line_prefix,
        )
        self._seq += len(rows)
        return rendered


@dataclass
class ParseConfig:
    """What the parse process needs to know of an import (picklable, no Django objects)."""

    path: str
    region: str
    needed: dict[str, str]
    # The send policy's refusal of a valid number: a module-level function the process can
    # import without Django (messaging.policy.numbers), or None.
    phone_rule: Callable[[str], str] | None
    chunk_rows: int
    renderer: Renderer  # how the chunks become COPY text (the same object a thread would use)


def _chunks(config: ParseConfig, csv_file: CsvFile) -> Iterator[Chunk]:
    rows = parse_rows(
        csv_file, region=config.region, needed=config.needed, phone_rule=config.phone_rule
    )
    return chunked(rows, config.chunk_rows)


class _Sender:
    """Messages written to the parent by a thread of their own: a rendered chunk is a few
    MB, and the parent reads it only when it needs it, so writing it here would stop the
    parsing of the next chunks until then. Pickled here, written there (the write lets go of
    the GIL); at most `ahead` messages wait."""

    def __init__(self, sink: BinaryIO, ahead: int = 4) -> None:
        self._sink = sink
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=ahead)
        self.failed = False
        self._thread = threading.Thread(target=self._run, name="parse-worker-send", daemon=True)
        self._thread.start()

    def send(self, message: object) -> None:
        if self.failed:
            raise BrokenPipeError("the importing process stopped reading")
        self._queue.put(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (body := self._queue.get()) is not None:
            if self.failed:
                continue  # drained, so `send` never blocks on a full queue
            try:
                write_body(self._sink, body)
            except OSError:
                self.failed = True


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    config = read_message(source)
    if not isinstance(config, ParseConfig):
        return
    renderer = config.renderer
    sender = _Sender(sink)

    def render_next(chunk: Chunk) -> None:
        mask = read_message(source)
        if not isinstance(mask, bytes):
            raise EOFError("the importing process went away")
        sender.send(("rendered", renderer.render(chunk.kept, chunk.rejected, mask)))

    try:
        with CsvFile(config.path) as csv_file:
            waiting: Chunk | None = None
            for chunk in _chunks(config, csv_file):
                sender.send(("numbers", renderer.numbers(chunk)))
                if waiting is not None:
                    render_next(waiting)
                waiting = chunk
            sender.send(("end",))
            if waiting is not None:
                render_next(waiting)
    except CsvImportError as exc:
        sender.send(("error", "csv", str(exc)))
    except (EOFError, BrokenPipeError):
        pass  # the parent stopped reading: its import has failed already
    except Exception as exc:  # told to the parent, which fails the import with it
        sender.send(("error", "crash", f"{type(exc).__name__}: {exc}"))
    finally:
        sender.close()


# How much less of the CPU the whole-file check asks for than the import beside it.
CHECK_NICENESS = 10


def check(path: str, sink: BinaryIO) -> None:
    """`CsvFile.check_whole_file` of the file at `path`, then ("end",), or the error as the
    parse process tells it. Run at a lower priority than PostgreSQL and the parse process,
    whose work it must not delay: the import needs its answer only before the last chunk,
    and the cores have idle moments enough for the check's second of CPU a million rows. In
    a process of its own, not a thread of the importing process, whose GIL it would hold
    while that thread feeds PostgreSQL."""
    os.nice(CHECK_NICENESS)
    try:
        with CsvFile(path) as csv_file:
            csv_file.check_whole_file()
    except CsvImportError as exc:
        write_message(sink, ("error", "csv", str(exc)))
    except Exception as exc:
        write_message(sink, ("error", "crash", f"{type(exc).__name__}: {exc}"))
    else:
        write_message(sink, ("end",))


if __name__ == "__main__":
    # Through the module's own name, so the classes in the pickles are the ones the parent
    # knows (`campaigns.csv_import.parse_worker.Numbers`, not `__main__.Numbers`).
    from campaigns.csv_import import parse_worker

    if sys.argv[1:2] == ["--check"]:
        parse_worker.check(sys.argv[2], sys.stdout.buffer)
    else:
        parse_worker.serve(sys.stdin.buffer, sys.stdout.buffer)
