"""The parser thread of the PostgreSQL import: rows into chunks, repeated numbers dropped."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from campaigns.csv_import import CsvRow

# Rows per COPY on PostgreSQL: big enough for set-based statements to pay off, small enough
# that the few chunks in flight (parsed, queued, rendered, written) stay a few tens of MB.
# 25,000 and 50,000 took the same time for 1 M rows (34.5 / 34.3 s); the smaller peaks at
# 227 MB instead of 288 MB.
CHUNK_ROWS = 25_000


@dataclass
class _Chunk:
    # First rows of numbers: row number, E.164, name, values (JSON text only once COPYed, so
    # the chunks in flight hold one copy of them).
    kept: list[tuple[int, str, str, dict[str, str]]] = field(default_factory=list)
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # row, value, reason
    duplicates: int = 0


_END = object()


class _Producer:
    """Parses rows on a thread into chunks; iterate to consume them.

    Repeated numbers are dropped here: the first row of a number wins, and a set of ints
    (about 60 MB per million numbers) is far cheaper than asking PostgreSQL per chunk. The
    queue is short, so at most a few chunks are in memory. An error while parsing (a broken
    row) is raised in the consuming thread, after the chunks before it.
    """

    def __init__(self, rows: Iterator[CsvRow], chunk_size: int | None = None) -> None:
        self._rows = rows
        self._chunk_size = chunk_size or CHUNK_ROWS
        # One chunk waiting besides the one being built and the one being written: each is
        # ≈ 15 MB at 25,000 rows, and the phone workers keep the parser ahead anyway.
        self._queue: queue.Queue[object] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="csv-import-parse", daemon=True)

    def __enter__(self) -> Iterator[_Chunk]:
        self._thread.start()
        return self._chunks()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.1)  # unblock a producer waiting on a full queue
        self._thread.join()

    def _chunks(self) -> Iterator[_Chunk]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        seen: set[int] = set()
        chunk = _Chunk()
        size = 0
        try:
            for row in self._rows:
                size += 1
                if row.phone is None:
                    chunk.rejected.append((row.row_number, row.raw_phone, row.reason))
                else:
                    key = int(row.phone[1:])
                    if key in seen:
                        chunk.duplicates += 1
                    else:
                        seen.add(key)
                        chunk.kept.append((row.row_number, row.phone, row.name, row.values))
                if size >= self._chunk_size:
                    if not self._put(chunk):
                        return
                    chunk, size = _Chunk(), 0
            if size and not self._put(chunk):
                return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)
