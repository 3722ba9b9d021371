"""An import's numbers normalised in worker processes, a block of rows at a time.

`phonenumbers` (pure Python) is most of an import's Python CPU, and one thread of the importing
process cannot use a second core. The workers are plain subprocesses
(`python -m campaigns.e164_worker`, pipes on stdin/stdout), not multiprocessing: a fork of
a process with other threads (the parser, the database driver) inherits their locks held, and
multiprocessing's spawn re-imports the caller's `__main__` in each worker, which breaks (or
re-runs) any script that calls the import without an `if __name__ == "__main__"` guard. A
worker imports `campaigns.e164` only (no Django), so it starts fast and stays small.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from campaigns.e164_worker import read_message, write_message

_Payload = TypeVar("_Payload")
_ROOT = Path(__file__).resolve().parents[2]  # the directory that holds `campaigns/`


class PhoneWorkerError(RuntimeError):
    """A phone worker died or answered nonsense: the import fails (nothing is written)."""


class PhonePool:
    """`processes` worker subprocesses; close it (or use it as a context manager) to stop them.

    `normalise` keeps one block in flight per worker and hands the next block to a worker as
    soon as its answer is read (before the caller works on that answer), so the workers only
    wait when the caller is the slower side. One block per worker also means a worker never
    blocks on a full pipe while its parent blocks on the other.
    """

    def __init__(self, processes: int) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
        }
        self._workers: list[subprocess.Popen[bytes]] = []
        try:
            for _ in range(processes):
                self._workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "campaigns.e164_worker"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        env=env,
                        cwd=_ROOT,
                    )
                )
        except BaseException:
            self.close()
            raise

    def normalise(
        self, blocks: Iterable[tuple[_Payload, list[str]]], region: str
    ) -> Iterator[tuple[_Payload, list[tuple[str | None, str]]]]:
        source = iter(blocks)
        in_flight: deque[tuple[_Payload, int]] = deque()  # (payload, worker index), in order
        for index in range(len(self._workers)):
            if not self._submit(source, index, region, in_flight):
                break
        while in_flight:
            payload, index = in_flight.popleft()
            answer = read_message(self._pipe(index, "stdout"))
            if not isinstance(answer, list):
                raise PhoneWorkerError(f"phone worker {index} stopped (exit {self._exit(index)})")
            self._submit(source, index, region, in_flight)
            yield payload, answer

    def _submit(
        self,
        source: Iterator[tuple[_Payload, list[str]]],
        index: int,
        region: str,
        in_flight: deque[tuple[_Payload, int]],
    ) -> bool:
        item = next(source, None)
        if item is None:
            return False
        payload, raws = item
        try:
            write_message(self._pipe(index, "stdin"), (region, raws))
        except (BrokenPipeError, OSError) as exc:
            raise PhoneWorkerError(
                f"phone worker {index} stopped (exit {self._exit(index)})"
            ) from exc
        in_flight.append((payload, index))
        return True

    def _pipe(self, index: int, name: str) -> Any:
        pipe: IO[bytes] | None = getattr(self._workers[index], name)
        assert pipe is not None
        return pipe

    def _exit(self, index: int) -> int | None:
        return self._workers[index].poll()

    def close(self) -> None:
        for worker in self._workers:
            if worker.stdin is not None:
                with contextlib.suppress(OSError):
                    worker.stdin.close()  # the worker's end of input: it exits
        for worker in self._workers:
            try:
                worker.wait(timeout=5)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            if worker.stdout is not None:
                worker.stdout.close()
        self._workers = []

    def __enter__(self) -> PhonePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
