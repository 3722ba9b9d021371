"""Where a CSV import's chunks come from: a parse process for a big file, threads otherwise.

Both give `Numbers` for each chunk (the numbers the import asks PostgreSQL about) and then,
once told which of them to leave out, the chunk's `Rendered` COPY text, through the same
`Renderer`, so a file gives the same rows either way (tests/campaigns run both).

The process (`campaigns.csv_import.parse_worker`) is a plain subprocess with pipes, as the
phone workers are (phone_pool.py says why not multiprocessing); it reads the file from its
path, so only files on disk go there (an upload that big is on disk already).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Protocol

from campaigns.csv_import import CsvImportError, CsvRow
from campaigns.csv_import.chunks import Chunk, Rendered
from campaigns.csv_import.parse_worker import Numbers, ParseConfig, Renderer
from campaigns.e164_worker import read_message, write_message
from messaging.campaign_import.producer import _Producer

_ROOT = Path(__file__).resolve().parents[2]  # the directory that holds `campaigns/`
# A parse process that does not stop when its stdin closes is killed after this long.
_STOP_SECONDS = 10


class ChunkSource(Protocol):
    """A file's chunks: each one's numbers, then, given the mask of the rows to leave out,
    a function that returns its rendered rows (called once the previous chunk is written)."""

    def numbers(self) -> Iterator[Numbers]: ...

    def render(self, mask: bytes) -> Callable[[], Rendered]: ...


class ParseProcessError(RuntimeError):
    """The parse process died or answered nonsense: the import fails (nothing is written)."""


def file_path(source: object) -> str | None:
    """The path of a CSV source the parse process can open itself, or None."""
    if isinstance(source, (str, Path)):
        return str(source)
    temporary = getattr(source, "temporary_file_path", None)  # Django's big uploads
    return str(temporary()) if callable(temporary) else None


class ThreadChunks:
    """The chunks of rows parsed here: a thread parses (`_Producer`), another renders."""

    def __init__(self, rows: Iterator[CsvRow], renderer: Renderer) -> None:
        self._producer = _Producer(rows)
        self._renderer = renderer
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-import-render")
        self._current: Chunk | None = None

    def __enter__(self) -> ThreadChunks:
        self._chunks = self._producer.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        # On an error this waits for the chunk being rendered; the import's atomic block
        # rolls everything back.
        self._pool.shutdown()
        self._producer.__exit__(*exc)

    def numbers(self) -> Iterator[Numbers]:
        for chunk in self._chunks:
            self._current = chunk
            yield Renderer.numbers(chunk)

    def render(self, mask: bytes) -> Callable[[], Rendered]:
        chunk = self._current
        assert chunk is not None
        rendered = self._pool.submit(self._renderer.render, chunk.kept, chunk.rejected, mask)
        # The render thread holds the rows now; once rendered only their COPY text stays.
        chunk.kept, chunk.rejected = [], []
        return rendered.result


class CheckedChunks:
    """`source`'s chunks while `check` (the whole-file check, every row read once: for the
    parse process's file `check_in_process`) runs on a thread: its error is raised between
    chunks, and the last chunk is given only once the check has passed, so an import that
    commits has had its whole file checked."""

    def __init__(self, source: ChunkSource, check: Callable[[], None]) -> None:
        self._source = source
        self._check = check
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="csv-import-check", daemon=True)

    def __enter__(self) -> CheckedChunks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join()

    def _run(self) -> None:
        try:
            self._check()
        except BaseException as exc:  # raised in the importing thread
            self._error = exc

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def numbers(self) -> Iterator[Numbers]:
        for numbers in self._source.numbers():
            self._raise_if_failed()
            yield numbers
        self._thread.join()
        self._raise_if_failed()

    def render(self, mask: bytes) -> Callable[[], Rendered]:
        return self._source.render(mask)


def _parse_worker(*args: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "campaigns.csv_import.parse_worker", *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        env=env,
        cwd=_ROOT,
    )


def _raise_error(message: tuple[Any, ...]) -> None:
    """A parse worker's ("error", kind, text) raised as the import's error."""
    if message[0] == "error":
        _kind, kind, text = message
        if kind == "csv":
            raise CsvImportError(text)
        raise ParseProcessError(f"the parse process failed: {text}")


def check_in_process(path: str) -> None:
    """`CsvFile.check_whole_file` of the file at `path`, in a process of its own at a lower
    priority (`parse_worker.check`); raises its error. The caller's thread only waits."""
    process = _parse_worker("--check", path)
    try:
        assert process.stdout is not None
        message = read_message(process.stdout)
    finally:
        if process.stdout is not None:
            process.stdout.close()
        process.wait()
    if not isinstance(message, tuple) or not message:
        raise ParseProcessError(f"the file check stopped (exit {process.returncode})")
    _raise_error(message)


class ParseProcess:
    """The chunks of a file parsed and rendered by `campaigns.csv_import.parse_worker`."""

    def __init__(self, config: ParseConfig) -> None:
        self._process = _parse_worker(stdin=subprocess.PIPE)
        self._config = config

    def __enter__(self) -> ParseProcess:
        try:
            write_message(self._pipe("stdin"), self._config)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        process = self._process
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # a broken pipe: the process is gone
                    stream.close()
        try:
            process.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def numbers(self) -> Iterator[Numbers]:
        while True:
            message = self._read()
            if message[0] == "end":
                return
            if message[0] != "numbers" or not isinstance(message[1], Numbers):
                raise ParseProcessError(f"the parse process sent {message[0]!r}, not numbers")
            yield message[1]

    def render(self, mask: bytes) -> Callable[[], Rendered]:
        try:
            write_message(self._pipe("stdin"), mask)
        except OSError as exc:  # a broken pipe: the process died
            code = self._process.poll()
            raise ParseProcessError(f"the parse process stopped (exit {code})") from exc
        return self._rendered

    def _rendered(self) -> Rendered:
        message = self._read()
        if message[0] != "rendered" or not isinstance(message[1], Rendered):
            raise ParseProcessError(f"the parse process sent {message[0]!r}, not a chunk")
        return message[1]

    def _read(self) -> tuple[Any, ...]:
        message = read_message(self._pipe("stdout"))
        if not isinstance(message, tuple) or not message:
            code = self._process.poll()
            raise ParseProcessError(f"the parse process stopped (exit {code})")
        _raise_error(message)
        return message

    def _pipe(self, name: str) -> IO[bytes]:
        stream = getattr(self._process, name)
        assert stream is not None
        return stream
