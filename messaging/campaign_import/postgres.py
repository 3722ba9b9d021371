"""The PostgreSQL import: a CSV's chunks COPYed straight into the contact and queue tables
(parsed and rendered by a parse process or threads); a selection moved in set-based SQL."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connection

from campaigns.csv_import import CsvRow, render_plan, value_problem_sql
from campaigns.csv_import.chunks import (
    QUEUE_LINE_COLUMNS,
    REJECTION_COLUMNS,
    Chunk,
    Rendered,
    drop_mask,
    joined_columns,
)
from campaigns.csv_import.parse_worker import Numbers, ParseConfig, Renderer
from campaigns.models import Contact, ImportRejection
from messaging.campaign_import import producer
from messaging.campaign_import.contacts_sql import ContactWriter
from messaging.campaign_import.job import (
    REJECTIONS_SHOWN,
    ImportResult,
    RejectionRow,
    _Job,
    _preview_message,
    count_refusal,
)
from messaging.campaign_import.parse_process import (
    CheckedChunks,
    ChunkSource,
    ParseProcess,
    ThreadChunks,
)
from messaging.campaign_import.producer import _Producer
from messaging.campaign_import.rendering_sql import _render_case
from messaging.models import OutboundMessage, OutboundStatus
from messaging.policy.imports import undeliverable_sql
from messaging.policy.optout import suppressed_sql

# The GIL hand-over interval while a file's chunks are written (CPython's default is 5 ms).
# The thread that feeds PostgreSQL gives the GIL up at every wait for the server and needs
# it back as soon as the answer is in, while the parser and render threads compute: at 5 ms
# a hand-over, PostgreSQL sat idle for seconds per million rows (docs/benchmarks.md).
SWITCH_INTERVAL = 0.0005
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


@contextlib.contextmanager
def _quick_gil_handover() -> Iterator[None]:
    """SWITCH_INTERVAL for the process while any import in it writes chunks; the interval
    it had before is put back when the last one ends (imports may run in several threads)."""
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, SWITCH_INTERVAL))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


def _batch_table() -> str:
    """A name for an import's temporary table of its own."""
    return f"wac_import_batch_{uuid.uuid4().hex[:12]}"


class _PostgresImport:
    """A CSV's rows in chunks: the parse process (a big file) or threads of this process
    parse, check and render them while this thread feeds PostgreSQL, so both cores work at
    once. Chunks go in file order and queue positions continue where the last chunk stopped,
    so the result is the same as one pass over the whole file. A selection of contacts goes
    through a temporary table and set-based statements (`run_selected`).
    """

    def run(self, job: _Job, rows: Iterator[CsvRow]) -> ImportResult:
        """The import of `rows`, parsed on a thread of this process."""
        batch = _batch_table()
        result = ImportResult(campaign=job.campaign)
        seq = 0
        with connection.cursor() as cursor:
            self._prepare(cursor, batch, writing=job.campaign is not None)
            if job.campaign is None:
                with _Producer(rows) as chunks:
                    for chunk in chunks:
                        seq = self._chunk(cursor, job, batch, chunk, seq, result)
            else:
                with ThreadChunks(rows, self._renderer(job)) as source:
                    seq = self._write_chunks(cursor, job, batch, source, result)
            self._finish(cursor, job, batch, seq, result)
        return result

    def run_in_process(
        self,
        job: _Job,
        path: str,
        *,
        region: str,
        needed: dict[str, str],
        check: Callable[[], None],
    ) -> ImportResult:
        """The import of the CSV file at `path` into the job's campaign, the file parsed and
        rendered by a parse process (parse_process.py) while this thread feeds PostgreSQL;
        `check` (the audience's check of every row) runs on a thread beside it."""
        assert job.campaign is not None
        config = ParseConfig(
            path=path,
            region=region,
            needed=needed,
            phone_rule=job.phone_rule,
            chunk_rows=producer.CHUNK_ROWS,
            renderer=self._renderer(job),
        )
        batch = _batch_table()
        result = ImportResult(campaign=job.campaign)
        with connection.cursor() as cursor:
            self._prepare(cursor, batch, writing=True)
            with ParseProcess(config) as source, CheckedChunks(source, check) as checked:
                seq = self._write_chunks(cursor, job, batch, checked, result)
            self._finish(cursor, job, batch, seq, result)
        return result

    @classmethod
    def _renderer(cls, job: _Job) -> Renderer:
        assert job.campaign is not None
        return Renderer(job.plans, job.pattern, job.campaign.pk, cls._queue_line_prefix(job))

    def _write_chunks(
        self, cursor: Any, job: _Job, batch: str, source: ChunkSource, result: ImportResult
    ) -> int:
        """A file's chunks written to the campaign, chunk n's statements overlapping chunk
        n+1's rendering (in the parse process, or a thread that psycopg lets run while it
        waits for the server), where one thread used to do both in turn and each side waited
        for the other. Chunk n+1's numbers are checked for suppression before chunk n's rows
        go in, which gives the same answer: the import writes neither the suppression list
        nor `undeliverable_at`, and a number is in one chunk only. Returns the queue position
        after the last row."""
        contacts = ContactWriter(cursor, batch, job.now)
        with _quick_gil_handover():
            seq = 0
            pending: Callable[[], Rendered] | None = None
            for numbers in source.numbers():
                self._count(numbers, result)
                dropped = self._blocked_positions(cursor, numbers.phones, result)
                rendered = source.render(drop_mask(len(numbers.phones), dropped))
                seq += len(numbers.phones) - len(dropped)
                if pending is not None:
                    self._store(cursor, job, contacts, pending())
                pending = rendered
            if pending is not None:
                self._store(cursor, job, contacts, pending())
        return seq

    @staticmethod
    def _count(chunk: Chunk | Numbers, result: ImportResult) -> None:
        result.duplicates += chunk.duplicates
        for _row, _value, reason in chunk.rejected:
            count_refusal(result, reason)
        for row in chunk.rejected[: max(0, REJECTIONS_SHOWN - len(result.rejections))]:
            result.rejections.append(RejectionRow(*row))

    def _store(self, cursor: Any, job: _Job, contacts: ContactWriter, done: Rendered) -> None:
        """A chunk's rendered rows written, then its rejections."""
        assert job.campaign is not None
        if done.phones:
            # Each queue line is its contact's id and the rendered line (_copy_queue's
            # columns), built while PostgreSQL takes the contacts in.
            text = contacts.write(done, lambda ids: joined_columns(ids, done.lines).encode())
            self._copy_queue(cursor, text)
        if done.rejections:
            table = ImportRejection._meta.db_table
            with cursor.cursor.copy(f"COPY {table} ({REJECTION_COLUMNS}) FROM STDIN") as copy:
                copy.write(done.rejections)
        # Freed now: a future may keep the object itself.
        done.clear()

    def run_selected(
        self, job: _Job, select: tuple[str, list[Any]], needed: dict[str, str]
    ) -> ImportResult:
        """The same import from contacts a SELECT gives (phone, name, attributes, ordering
        key), set-based: the rows go from table to table without leaving PostgreSQL. Each
        contact appears once in such a selection, so there are no duplicates to drop."""
        batch = _batch_table()
        result = ImportResult(campaign=job.campaign)
        sql, params = select
        with connection.cursor() as cursor:
            self._prepare(cursor, batch, writing=job.campaign is not None)
            cursor.execute(
                f"INSERT INTO {batch} (row_number, phone, name, vals) "  # noqa: S608
                "SELECT row_number() OVER (ORDER BY s.ord), s.phone, s.name, "
                "CASE WHEN s.name <> '' THEN s.attributes || jsonb_build_object('name', s.name) "
                f"ELSE s.attributes END FROM ({sql}) AS s(phone, name, attributes, ord)",
                params,
            )
            loaded = cursor.rowcount
            loaded -= self._reject_selected(cursor, job, batch, needed, result)
            loaded -= self._reject_by_rule(cursor, job, batch, result)
            # The contacts are the selection itself: no upsert to do.
            seq = self._apply_loaded(cursor, job, batch, loaded, 0, result)
            self._finish(cursor, job, batch, seq, result)
        return result

    @staticmethod
    def _reject_selected(
        cursor: Any, job: _Job, batch: str, needed: dict[str, str], result: ImportResult
    ) -> int:
        """Drop (and report) rows missing a value a template needs: `check_row`'s rule and
        words, in SQL. Returns how many rows were dropped."""
        if not needed:
            return 0
        cases, params = [], []
        for column, used_by in needed.items():
            problem, problem_params = value_problem_sql("(b.vals ->> %s)", [column], column)
            cases.append(f"WHEN ({problem}) IS NOT NULL THEN left(%s || ({problem}) || %s, 255)")
            params += [*problem_params, f"column {column!r} ", *problem_params]
            params.append(f" (needed by {used_by})")
        reason = "CASE " + " ".join(cases) + " END"
        rejected = (
            f"(SELECT b.row_number, b.phone, {reason} AS reason FROM {batch} b) r "  # noqa: S608
            "WHERE r.reason IS NOT NULL"
        )
        cursor.execute(
            f"SELECT r.row_number, r.phone, r.reason FROM {rejected} "  # noqa: S608
            "ORDER BY r.row_number LIMIT %s",
            [*params, REJECTIONS_SHOWN],
        )
        result.rejections += [RejectionRow(*row) for row in cursor.fetchall()]
        if job.campaign is not None:
            cursor.execute(
                f"INSERT INTO {ImportRejection._meta.db_table} "  # noqa: S608
                "(campaign_id, row_number, value, reason) "
                f"SELECT %s, r.row_number, r.phone, r.reason FROM {rejected}",
                [job.campaign.pk, *params],
            )
        cursor.execute(f"DELETE FROM {batch} b WHERE ({reason}) IS NOT NULL", params)  # noqa: S608
        result.rejected += cursor.rowcount
        return cursor.rowcount

    @staticmethod
    def _reject_by_rule(cursor: Any, job: _Job, batch: str, result: ImportResult) -> int:
        """The send policy's refusals (job.phone_rule, e.g. marketing to US numbers) of rows
        selected in SQL: only +1 numbers can be refused, so only those are read."""
        if job.phone_rule is None:
            return 0
        cursor.execute(f"SELECT row_number, phone FROM {batch} WHERE phone LIKE '+1%%'")  # noqa: S608
        refused = [(n, p, r) for n, p in cursor.fetchall() if (r := job.phone_rule(p))]
        if not refused:
            return 0
        shown = max(0, REJECTIONS_SHOWN - len(result.rejections))
        result.rejections += [RejectionRow(*row) for row in refused[:shown]]
        if job.campaign is not None:
            ImportRejection.objects.bulk_create(
                ImportRejection(campaign=job.campaign, row_number=n, value=p, reason=r)
                for n, p, r in refused
            )
        cursor.execute(
            f"DELETE FROM {batch} WHERE row_number = ANY(%s)",  # noqa: S608
            [[n for n, _p, _r in refused]],
        )
        for _n, _p, reason in refused:
            count_refusal(result, reason)
        return len(refused)

    @staticmethod
    def _finish(cursor: Any, job: _Job, batch: str, seq: int, result: ImportResult) -> None:
        result.queued = seq
        if job.campaign is not None:
            # Back to Django's default: foreign keys checked at commit.
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            result.preview = [
                _preview_message(job, m.phone, m.template_id, m.parameters)
                for m in OutboundMessage.objects.filter(campaign=job.campaign).order_by("id")[
                    : job.preview_limit
                ]
            ]
        cursor.execute(f"DROP TABLE {batch}")

    @staticmethod
    def _prepare(cursor: Any, batch: str, *, writing: bool) -> None:
        # Sorts and hashes of a chunk stay in memory; JIT compiling the same few statements
        # again for every chunk costs more than it saves.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute("SET LOCAL jit = off")
        if writing:
            # Check each chunk's foreign keys as it goes in (while the next chunk is parsed)
            # instead of four checks per queue row piling up for the commit.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            # row_number: a selection's order (a CSV's contacts need none).
            f"CREATE TEMPORARY TABLE {batch} (row_number integer, "
            'phone text COLLATE "C" NOT NULL, name text, vals jsonb, template_id bigint, '
            "parameters jsonb)"
        )

    def _chunk(
        self, cursor: Any, job: _Job, batch: str, chunk: Chunk, seq: int, result: ImportResult
    ) -> int:
        """One chunk of a file previewed (no campaign): numbers that may not be messaged left
        out (one query), the rest shown in send order."""
        self._count(chunk, result)
        kept = self._deliverable(cursor, chunk.kept, result)
        self._preview_rows(job, kept, seq, result)
        return seq + len(kept)

    def _deliverable(
        self, cursor: Any, rows: list[tuple[int, str, str, dict[str, str]]], result: ImportResult
    ) -> list[tuple[int, str, str, dict[str, str]]]:
        """The rows whose numbers may be queued (see `_blocked_positions`)."""
        dropped = self._blocked_positions(cursor, [row[1] for row in rows], result)
        if not dropped:
            return rows
        left_out = set(dropped)
        return [row for i, row in enumerate(rows) if i not in left_out]

    @staticmethod
    def _blocked_positions(cursor: Any, phones: list[str], result: ImportResult) -> list[int]:
        """The positions in `phones` of numbers that may not be queued; suppressed (the
        opt-out policy's rule) and not-on-WhatsApp numbers (the import policy's) are counted,
        in that order, as `_apply_loaded` does for rows already in the database."""
        if not phones:
            return []
        suppressed, s_params = suppressed_sql("p.phone")
        not_on_whatsapp, u_params = undeliverable_sql("p.phone")
        # OFFSET 0 keeps the subquery whole, so each predicate runs once per number. The
        # numbers (E.164, no commas) go as one text, not a text[]: psycopg quotes an array
        # element by element in Python.
        cursor.execute(
            "SELECT phone, s FROM (SELECT p.phone, "  # noqa: S608
            f"{suppressed} AS s, {not_on_whatsapp} AS u FROM "
            "unnest(string_to_array(%s, ',')) AS p(phone) OFFSET 0) x WHERE s OR u",
            [*s_params, *u_params, ",".join(phones)],
        )
        blocked = dict(cursor.fetchall())
        if not blocked:
            return []
        suppressed_count = sum(1 for s in blocked.values() if s)
        result.suppressed += suppressed_count
        result.undeliverable += len(blocked) - suppressed_count
        return [i for i, phone in enumerate(phones) if phone in blocked]

    @staticmethod
    def _preview_rows(
        job: _Job,
        rows: list[tuple[int, str, str, dict[str, str]]],
        seq: int,
        result: ImportResult,
    ) -> None:
        """`_preview_batch` for a CSV's chunk, which stays in Python."""
        period = len(job.pattern)
        if job.keep_rows:
            kept = result.kept if result.kept is not None else []
            kept += [
                (phone, values.get("timezone"), job.pattern[(seq + offset) % period])
                for offset, (_, phone, _, values) in enumerate(rows)
            ]
            result.kept = kept
        plans = {p.template_id: p for p in job.plans}
        for offset, (_, phone, _, values) in enumerate(
            rows[: max(0, job.preview_limit - len(result.preview))]
        ):
            template_id = job.pattern[(seq + offset) % period]
            components = render_plan(plans[template_id], values)
            result.preview.append(_preview_message(job, phone, template_id, components))

    def _apply_loaded(
        self,
        cursor: Any,
        job: _Job,
        batch: str,
        loaded: int,
        seq: int,
        result: ImportResult,
    ) -> int:
        """The rows now in the batch table, whatever loaded them: suppressed numbers dropped,
        then previewed or written. Returns the queue position after them."""
        # Scalar subqueries, not joins: one index probe per row of the chunk, where a join
        # would hash the whole contact table again for every chunk.
        suppressed, params = suppressed_sql('b.phone COLLATE "default"')
        cursor.execute(f"DELETE FROM {batch} b WHERE " + suppressed, params)  # noqa: S608
        result.suppressed += cursor.rowcount
        kept = loaded - cursor.rowcount
        not_on_whatsapp, params = undeliverable_sql('b.phone COLLATE "default"')
        cursor.execute(f"DELETE FROM {batch} b WHERE " + not_on_whatsapp, params)  # noqa: S608
        result.undeliverable += cursor.rowcount
        kept -= cursor.rowcount
        if job.campaign is None:
            self._preview_batch(cursor, job, batch, seq, result)
            return seq + kept
        self._insert_selected(cursor, job, batch, seq)
        return seq + kept

    @staticmethod
    def _queue_line_prefix(job: _Job) -> str:
        """The columns of `_copy_queue` between the contact id and the template, the same for
        every row of the import."""
        campaign = job.campaign
        assert campaign is not None
        return (
            f"\t{campaign.pk}\t{job.sender.pk}\t{job.priority}\t{OutboundStatus.QUEUED.value}"
            f"\t0\t{job.now.isoformat()}\t\t\t\t"
        )

    @staticmethod
    def _copy_queue(cursor: Any, text: bytes) -> None:
        """A chunk's queue rows COPYed straight into the queue (ids follow the send order)."""
        # Django's error wrapper, so a refused row raises django.db.DatabaseError as an
        # INSERT through the cursor does.
        with (
            connection.wrap_database_errors,
            cursor.cursor.copy(
                f"COPY {OutboundMessage._meta.db_table} (contact_id, campaign_id, sender_id, "
                "priority, status, attempts, next_attempt_at, claimed_by, error_category, "
                f"error_detail, {QUEUE_LINE_COLUMNS}) FROM STDIN"
            ) as copy,
        ):
            copy.write(text)

    @staticmethod
    def _insert_selected(
        cursor: Any,
        job: _Job,
        batch: str,
        seq: int,
    ) -> None:
        """Queue rows inserted from the batch table, assigned and rendered here (a selection
        that never left the database, whose contacts exist); a CSV's chunk goes through
        `_upsert_contacts` and `_copy_queue` instead."""
        contact = Contact._meta.db_table
        campaign = job.campaign
        assert campaign is not None
        render_sql, render_params = _render_case(job.plans)
        period = len(job.pattern)
        cursor.execute(
            f"INSERT INTO {OutboundMessage._meta.db_table} (campaign_id, contact_id, "  # noqa: S608
            "template_id, sender_id, phone, parameters, priority, status, attempts, "
            "next_attempt_at, claimed_by, error_category, error_detail) "
            f"SELECT %s, (SELECT c.id FROM {contact} c WHERE c.phone = q.phone COLLATE "
            f"\"default\"), q.template_id, %s, q.phone, {render_sql}, %s, %s, 0, %s, '', '', '' "
            # seq = place in send order (file order of the numbers kept); the pattern maps
            # it to a template, so templates interleave.
            "FROM (SELECT n.phone, n.vals, n.row_number, "
            f"(%s::bigint[])[(n.seq %% {period}) + 1] AS template_id FROM "
            "(SELECT phone, vals, row_number, "
            "%s + row_number() OVER (ORDER BY row_number) - 1 AS seq "
            # Ordered by row_number, which orders seq too and is the window's own order,
            # so there is no sort of the rendered rows.
            f"FROM {batch}) n) q ORDER BY q.row_number",
            [
                campaign.pk,
                job.sender.pk,
                *render_params,
                job.priority,
                OutboundStatus.QUEUED,
                job.now,
                job.pattern,
                seq,
            ],
        )

    @staticmethod
    def _preview_batch(cursor: Any, job: _Job, batch: str, seq: int, result: ImportResult) -> None:
        if job.keep_rows:
            cursor.execute(
                f"SELECT phone, vals ->> 'timezone' FROM {batch} ORDER BY row_number"  # noqa: S608
            )
            period = len(job.pattern)
            kept = result.kept if result.kept is not None else []
            kept += [
                (phone, zone, job.pattern[(seq + offset) % period])
                for offset, (phone, zone) in enumerate(cursor.fetchall())
            ]
            result.kept = kept
        missing = job.preview_limit - len(result.preview)
        if missing <= 0:
            return
        cursor.execute(
            f"SELECT phone, vals FROM {batch} ORDER BY row_number LIMIT %s",  # noqa: S608
            [missing],
        )
        plans = {p.template_id: p for p in job.plans}
        for offset, (phone, vals) in enumerate(cursor.fetchall()):
            template_id = job.pattern[(seq + offset) % len(job.pattern)]
            values = vals if isinstance(vals, dict) else json.loads(vals)
            components = render_plan(plans[template_id], values)
            result.preview.append(_preview_message(job, phone, template_id, components))
