"""The parser thread of the PostgreSQL import: rows into chunks (`chunks.chunked`)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

from campaigns.csv_import import CsvRow
from campaigns.csv_import.chunks import Chunk, chunked

# Rows per COPY on PostgreSQL: big enough for set-based statements to pay off, small enough
# that the few chunks in flight (parsed, queued, rendered, written) stay a few tens of MB.
# 25,000 and 50,000 took the same time for 1 M rows (34.5 / 34.3 s); the smaller peaks at
# 227 MB instead of 288 MB.
CHUNK_ROWS = 25_000


_END = object()


class _Producer:
    """Parses rows on a thread into chunks (repeated numbers dropped); iterate to consume
    them. The queue is short, so at most a few chunks are in memory. An error while parsing
    (a broken row) is raised in the consuming thread, after the chunks before it.
    """

    def __init__(self, rows: Iterator[CsvRow], chunk_size: int | None = None) -> None:
        self._rows = rows
        self._chunk_size = chunk_size or CHUNK_ROWS
        # One chunk waiting besides the one being built and the one being written: each is
        # ≈ 15 MB at 25,000 rows, and the phone workers keep the parser ahead anyway.
        self._queue: queue.Queue[object] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="csv-import-parse", daemon=True)

    def __enter__(self) -> Iterator[Chunk]:
        self._thread.start()
        return self._chunks()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.1)  # unblock a producer waiting on a full queue
        self._thread.join()

    def _chunks(self) -> Iterator[Chunk]:
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
        try:
            for chunk in chunked(self._rows, self._chunk_size):
                if not self._put(chunk):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)
