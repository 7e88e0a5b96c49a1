"""A run's tables written to files (CSV, JSON, Parquet), streamed in batches."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import json
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import Select, select

from backend.runtime import Runtime
from backend.services.roster import backgrounds_of, placed
from backend.services.runs import get_run
from backend.store import actions
from backend.store.models import EventRow, RoundRow

__all__ = [
    "ACTION_COLUMNS",
    "EXPORT_FORMATS",
    "EXPORT_MEDIA",
    "EXPORT_TABLES",
    "ExportFormat",
    "ExportTable",
    "export",
    "export_file",
    "in_temp_file",
    "remove_export",
    "stream_rows",
    "write_rows",
]

ExportTable = Literal["rounds", "actions", "agents", "events"]


ExportFormat = Literal["csv", "json", "parquet"]


EXPORT_TABLES: tuple[ExportTable, ...] = ("rounds", "actions", "agents", "events")


EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "json", "parquet")


EXPORT_MEDIA = {"csv": "text/csv", "json": "application/json", "parquet": "application/vnd.apache.parquet"}


_BATCH = 50_000


ACTION_COLUMNS = ("round", "agent_id", "value", "payload", "error", "tokens")


# The tables read row by row; the actions are read from their chunks (`_action_rows`), the agents
# rebuilt from the run's spec (`_agent_rows`).
_EXPORTS: dict[str, tuple[type[RoundRow | EventRow], tuple[str, ...], Any]] = {
    "rounds": (RoundRow, ("round", "stats", "details", "time", "failures"), RoundRow.round),
    "events": (EventRow, ("id", "round", "kind", "payload", "created_at"), EventRow.id),
}
AGENT_COLUMNS = ("agent_id", "name", "kind", "attributes", "background", "host", "node")


async def stream_rows(rt: Runtime, query: Select[Any]) -> AsyncGenerator[list[dict[str, Any]]]:
    """The rows `query` selects, as dicts, in batches read as they are written out."""
    async with rt.sessions() as session:
        result = await session.stream(query.execution_options(yield_per=_BATCH))
        async for partition in result.partitions(_BATCH):
            yield [dict(row._mapping) for row in partition]


def _query(run_id: int, table: ExportTable) -> Select[Any]:
    model, columns, order = _EXPORTS[table]
    order_by = order if isinstance(order, tuple) else (order,)
    return select(*(getattr(model, c) for c in columns)).where(model.run_id == run_id).order_by(*order_by)


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """One level of columns for CSV and Parquet: a round's stats become columns of their own,
    other nested values JSON text."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if key == "stats" and isinstance(value, dict):
            flat.update(value)
        elif isinstance(value, dict | list):
            flat[key] = json.dumps(value)
        else:
            flat[key] = value.isoformat() if hasattr(value, "isoformat") else value
    return flat


async def export(rt: Runtime, run_id: int, *, table: ExportTable, format: ExportFormat, out: Path) -> int:
    """Write one table of a run to `out` (streamed in batches); returns the number of rows."""
    await get_run(rt, run_id)
    if table == "actions":
        if format == "parquet":
            return await _actions_parquet(rt, run_id, out)
        return await write_rows(_action_rows(rt, run_id), format, out, header=ACTION_COLUMNS)
    if table == "agents":
        return await write_rows(_agent_rows(rt, run_id), format, out, header=AGENT_COLUMNS)
    # A round's statistics become columns of their own; an empty table's CSV has the others.
    header = [c for c in _EXPORTS[table][1] if c != "stats"]
    return await write_rows(stream_rows(rt, _query(run_id, table)), format, out, header=header)


async def _agent_rows(rt: Runtime, run_id: int) -> AsyncGenerator[list[dict[str, Any]]]:
    """The run's agents as rows (`AGENT_COLUMNS`), `_BATCH` at a time, by id (none before the
    run is placed). Each batch's profiles are built in a thread: the server goes on meanwhile."""
    if (found := await placed(rt, await get_run(rt, run_id))) is None:
        return
    roster, hosts = found

    def rows(ids: range, written: dict[int, str]) -> list[dict[str, Any]]:
        return [
            {c: getattr(a, c) for c in AGENT_COLUMNS} | {"attributes": dict(a.attributes)}
            for a in roster.views(ids, hosts, written)
        ]

    for start in range(0, len(roster), _BATCH):
        ids = range(start, min(start + _BATCH, len(roster)))
        yield await asyncio.to_thread(rows, ids, await backgrounds_of(rt, run_id, roster, ids))


async def _action_rows(rt: Runtime, run_id: int) -> AsyncGenerator[list[dict[str, Any]]]:
    """The run's actions as rows (`ACTION_COLUMNS`), a chunk at a time, by round then agent."""
    async with rt.sessions() as session:
        async for chunk, errors in actions.chunks(session, run_id=run_id):
            yield list(actions.rows_of(chunk, errors))


async def _actions_parquet(rt: Runtime, run_id: int, out: Path) -> int:
    """The run's actions as Parquet, a row group per few chunks, its columns made from the
    chunks' arrays (numbers, ids, tokens) without a row object in between."""
    import pyarrow as pa  # here: only Parquet exports pay for its import
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("round", pa.int64()),
            ("agent_id", pa.int64()),
            ("value", pa.float64()),
            ("payload", pa.string()),
            ("error", pa.string()),
            ("tokens", pa.int64()),
        ]
    )
    count = 0
    pending: list[Any] = []
    with pq.ParquetWriter(out, schema) as writer:
        async with rt.sessions() as session:
            async for chunk, errors in actions.chunks(session, run_id=run_id):
                size = len(chunk.ids)
                ids = chunk.ids.tolist() if errors else []
                columns = [
                    pa.array(np.full(size, chunk.round, dtype=np.int64)),
                    pa.array(chunk.ids),
                    pa.array(chunk.numbers, mask=np.isnan(chunk.numbers)),
                    pa.array([_payload_text(t) for t in chunk.texts()], type=pa.string()),
                    pa.array([errors.get(a) for a in ids] if errors else [None] * size, type=pa.string()),
                    pa.array(
                        np.zeros(size, dtype=np.int64)
                        if chunk.tokens is None
                        else chunk.tokens.astype(np.int64)
                    ),
                ]
                pending.append(pa.Table.from_arrays(columns, schema=schema))
                count += size
                if sum(map(len, pending)) >= _BATCH:
                    writer.write_table(pa.concat_tables(pending))
                    pending = []
        if pending:
            writer.write_table(pa.concat_tables(pending))
    return count


def _payload_text(text: str | None) -> str | None:
    """A payload as the CSV shows it (see `_flat`): JSON text, but a string as itself."""
    return json.loads(text) if text is not None and text.startswith('"') else text


async def write_rows(
    rows: AsyncGenerator[list[dict[str, Any]]], format: ExportFormat, out: Path, *, header: Sequence[str]
) -> int:
    """Write batches of rows to `out` in `format`; returns how many. An empty CSV has `header`."""
    writers: dict[ExportFormat, Callable[[AsyncIterator[list[dict[str, Any]]], Path], Awaitable[int]]] = {
        "csv": functools.partial(_write_csv, header=header),
        "json": _write_json,
        "parquet": _write_parquet,
    }
    # The stream of rows is closed here, in this task, however the writer ends: one left half-read
    # would keep its session and database connection until the garbage collector finalised it,
    # from whichever task (or none) was running then.
    async with contextlib.aclosing(rows):
        return await writers[format](rows, out)


async def export_file(rt: Runtime, run_id: int, *, table: ExportTable, format: ExportFormat) -> Path:
    """Export one table of a run into a file of its own in a new temporary folder, for a download;
    the caller removes both with `remove_export` once it is sent."""
    return await in_temp_file(
        f"run-{run_id}-{table}.{format}",
        functools.partial(export, rt, run_id, table=table, format=format),
    )


async def in_temp_file(name: str, write: Callable[..., Awaitable[int]]) -> Path:
    """A file `name` in a new temporary folder, written by `write(out=path)`; removed again if
    writing fails."""
    folder = Path(tempfile.mkdtemp(prefix="myriad-export-"))
    path = folder / name
    try:
        await write(out=path)
    except BaseException:
        remove_export(path)
        raise
    return path


def remove_export(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.parent.rmdir()


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}


async def _write_json(batches: AsyncIterator[list[dict[str, Any]]], out: Path) -> int:
    count = 0
    with out.open("w", encoding="utf-8") as f:
        f.write("[")
        async for batch in batches:
            for row in batch:
                f.write(",\n" if count else "\n")
                f.write(json.dumps(_jsonable(row)))
                count += 1
        f.write("\n]\n")
    return count


# A spreadsheet runs a cell that starts like a formula: such text gets a leading quote (OWASP's
# advice for CSV injection), so a run's name or an agent's background cannot run in a user's Excel.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _inert(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value


async def _write_csv(
    batches: AsyncIterator[list[dict[str, Any]]], out: Path, header: Sequence[str] = ()
) -> int:
    """The rows as CSV; with no rows, just `header` (a spreadsheet still sees the columns)."""
    count = 0
    with out.open("w", newline="", encoding="utf-8") as f:
        writer: csv.DictWriter[str] | None = None
        async for batch in batches:
            rows = [{k: _inert(v) for k, v in _flat(r).items()} for r in batch]
            if writer is None:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
            writer.writerows(rows)
            count += len(rows)
        if writer is None and header:
            csv.writer(f).writerow(header)
    return count


# The Parquet type of a column that may be empty in an export's first batch; others are text
# (JSON payloads are text once flat).
_EMPTY_COLUMNS = {
    "value": "float64",
    "tokens": "int64",
    "host": "int64",
    "failures": "int64",
    "time": "float64",
}


def _typed(pa: Any, field: Any) -> Any:
    """A Parquet column as pyarrow read it from a batch, but typed by its table when it was empty."""
    if not pa.types.is_null(field.type):
        return field
    return field.with_type(pa.type_for_alias(_EMPTY_COLUMNS.get(field.name, "string")))


async def _write_parquet(batches: AsyncIterator[list[dict[str, Any]]], out: Path) -> int:
    import pyarrow as pa  # here: only Parquet exports pay for its import
    import pyarrow.parquet as pq

    count = 0
    writer: pq.ParquetWriter | None = None
    try:
        async for batch in batches:
            frame = pa.Table.from_pylist([_flat(r) for r in batch])
            if writer is None:
                # A column with no value in the first batch (no agent failed yet) gets its table's
                # type: pyarrow's null type is one no later value can be cast to.
                schema = pa.schema([_typed(pa, f) for f in frame.schema])
                writer = pq.ParquetWriter(out, schema)
            writer.write_table(frame.cast(writer.schema))
            count += len(batch)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        pq.write_table(pa.table({}), out)
    return count
