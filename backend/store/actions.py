"""Agents' actions, stored in columns: a round's actions are chunks of up to `CHUNK` agents.

A chunk (`action_chunks`) holds the actions of a run's round for consecutive recorded agents: the
span of ids it covers (`first_id` to `end_id`, exclusive), how many agents it holds (all of the
span, or a sample's few: then their ids), and compressed arrays: each agent's number (NaN for
none; stored as the smallest integer type that holds them when they are all whole), its other
payload as JSON text (only when some agent has one), and its language-model tokens (only when
some agent spent any). A million actions are about 60 rows, written with COPY in the round's
fenced transaction; one agent's answers are one small chunk per round.

Failures are few and filtered on (the agents page's "failed"): each is a row of its own in
`action_failures` with its reason, beside the chunk, which counts them.

Arrays are packed as a small header (numpy type, raw and compressed sizes) and zstd (through
pyarrow, a dependency already, at its fastest level): 1,000,000 numbers pack in a few
milliseconds.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Select, delete, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from agents.core import ActionBatch, narrowest
from backend.store.models import ActionChunkRow, ActionFailureRow

__all__ = [
    "CHUNK",
    "CHUNK_COLUMNS",
    "FAILURE_COLUMNS",
    "Chunk",
    "Encoded",
    "RecordedAction",
    "actions_of",
    "agent_actions",
    "chunks",
    "count_actions",
    "decode",
    "delete_actions",
    "encode_round",
    "encode_rows",
    "failed_agents",
    "group_stats",
    "pack",
    "pack_numbers",
    "rows_of",
    "unpack",
    "write_round",
    "zstd",
]

CHUNK = 16_384
CHUNK_COLUMNS = (
    "run_id",
    "round",
    "first_id",
    "end_id",
    "count",
    "ids",
    "numbers",
    "payloads",
    "tokens",
    "failures",
)
FAILURE_COLUMNS = ("run_id", "round", "agent_id", "error")

_NUMBERS = (int, float)
_NUMBERS_OR_NONE = {int, float, type(None)}
_HEADER = struct.Struct("<4sQQ")  # numpy type ('<f8', '|u1', ...), raw bytes, compressed bytes


class RecordedAction(NamedTuple):
    """One agent's stored action in one round: its number (`value`), or its other payload, or
    why it has none (`error`), and the language-model tokens it spent."""

    round: int
    agent_id: int
    value: float | None
    payload: Any
    error: str | None
    tokens: int


@cache
def zstd() -> Any:
    """The codec of every packed array, and of checkpoints: zstd at its fastest level."""
    import pyarrow as pa  # here: a process that reads no action does not pay for its import

    return pa.Codec("zstd", compression_level=1)


def pack(array: np.ndarray) -> bytes:
    """An array as bytes: a header, then its data compressed."""
    data = np.ascontiguousarray(array)
    compressed = zstd().compress(data, asbytes=True) if data.nbytes else b""
    return _HEADER.pack(data.dtype.str.encode(), data.nbytes, len(compressed)) + compressed


def unpack(blob: bytes, at: int = 0) -> tuple[np.ndarray, int]:
    """The array packed in `blob` at `at`, and where the next one starts."""
    kind, size, length = _HEADER.unpack_from(blob, at)
    start = at + _HEADER.size
    dtype = np.dtype(kind.rstrip(b"\0").decode())
    if not size:
        return np.empty(0, dtype), start + length
    raw = zstd().decompress(blob[start : start + length], decompressed_size=size, asbytes=True)
    return np.frombuffer(raw, dtype), start + length


def pack_numbers(numbers: np.ndarray) -> bytes:
    """Numbers (integers, or float64 with NaN for none) packed as the smallest integer type
    that holds them when they are all whole."""
    if numbers.dtype.kind in "iu":
        return pack(narrowest(numbers))
    with np.errstate(invalid="ignore"):
        whole = numbers.astype(np.int64)
    if numbers.size and np.array_equal(whole, numbers):  # NaN equals nothing: stays float
        return pack(narrowest(whole))
    return pack(numbers)


# -- writing ---------------------------------------------------------------------------------------


@dataclass
class Encoded:
    """A round's actions as rows of `action_chunks` and `action_failures`, in column order."""

    chunks: list[tuple] = field(default_factory=list)
    failures: list[tuple] = field(default_factory=list)
    actions: int = 0


def _numbers_of(payloads: list[Any] | np.ndarray, at: np.ndarray | slice) -> tuple[np.ndarray, list | None]:
    """The numbers of the payloads at `at` (integers as they are; else float64, NaN where none),
    and the others as JSON text (None where a number or nothing), or None when there are none."""
    if isinstance(payloads, np.ndarray):
        picked = payloads[at]
        if picked.dtype.kind in "iu":
            return picked, None
        return np.asarray(picked, dtype=np.float64), None
    chosen = payloads[at] if isinstance(at, slice) else [payloads[i] for i in at.tolist()]
    if set(map(type, chosen)) <= _NUMBERS_OR_NONE:  # numbers and failures' Nones: NaN for those
        return np.array(chosen, dtype=np.float64), None
    numbers = np.fromiter(
        (p if type(p) in _NUMBERS else np.nan for p in chosen), dtype=np.float64, count=len(chosen)
    )
    texts = [None if p is None or type(p) in _NUMBERS else json.dumps(p, default=str) for p in chosen]
    return numbers, texts if any(t is not None for t in texts) else None


def _pack_texts(texts: Sequence[str | None]) -> bytes:
    """JSON texts (None for none) packed as their end offsets and their UTF-8 bytes."""
    encoded = [b"" if t is None else t.encode() for t in texts]
    ends = np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
    # An empty text marks no payload: every JSON text is at least one byte long.
    return pack(narrowest(ends)) + pack(np.frombuffer(b"".join(encoded), dtype=np.uint8))


def encode_round(
    run_id: int, round: int, batch: ActionBatch, sample: np.ndarray | Sequence[int] | None = None
) -> Encoded:
    """The chunks of the actions of `sample` (sorted agent ids; default: all) in `batch`, and
    their failures: consecutive recorded agents, `CHUNK` at a time. CPU work: run it in a thread.

    Every action of a million agents is the common case, beside the hosts' next round on the
    same cores: it allocates nothing the size of the round (no array of ids, no tokens unless
    some agent spent any), as a large fresh array costs its page faults again every round."""
    start, stop = batch.ids.start, batch.ids.stop
    if sample is None:
        ids = None
        count = stop - start
    else:
        ids = np.asarray(sample, dtype=np.int64)
        ids = ids[(ids >= start) & (ids < stop)]
        count = len(ids)
    tokens = None
    if batch.tokens and count:
        spent = np.fromiter(batch.tokens, dtype=np.int64, count=len(batch.tokens))
        amounts = np.fromiter(batch.tokens.values(), dtype=np.int64, count=len(spent))
        if ids is None:
            where = spent - start
        else:  # only the sampled agents' tokens are kept
            where = np.searchsorted(ids, spent).clip(0, count - 1)
            kept = ids[where] == spent
            where, amounts = where[kept], amounts[kept]
        tokens = np.zeros(count, dtype=np.int64)
        tokens[where] = amounts
    failed = np.sort(np.fromiter(batch.errors, dtype=np.int64, count=len(batch.errors)))
    encoded = Encoded(actions=count)
    for at in range(0, count, CHUNK):
        mine = None if ids is None else ids[at : at + CHUNK]
        if mine is None:
            first, end = start + at, min(start + at + CHUNK, stop)
        else:
            first, end = int(mine[0]), int(mine[-1]) + 1
            mine = None if end - first == len(mine) else mine  # consecutive: the span says it all
        positions: np.ndarray | slice = slice(first - start, end - start) if mine is None else mine - start
        numbers, texts = _numbers_of(batch.payloads, positions)
        low, high = np.searchsorted(failed, [first, end]).tolist()
        errors = {a: batch.errors[a] for a in failed[low:high].tolist()}
        spent_here = None if tokens is None else tokens[at : at + CHUNK]
        _add_chunk(encoded, run_id, round, range(first, end), mine, numbers, texts, spent_here, errors)
    return encoded


def encode_rows(run_id: int, round: int, rows: Sequence[Sequence[Any]]) -> Encoded:
    """One chunk of stored actions given as (agent_id, value, payload, error, tokens) rows in id
    order, at most `CHUNK` of them (the actions of a run recorded before chunks, migrated)."""
    encoded = Encoded(actions=len(rows))
    if not rows:
        return encoded
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    numbers = np.fromiter((np.nan if r[1] is None else r[1] for r in rows), dtype=np.float64, count=len(rows))
    texts = [None if r[2] is None else json.dumps(r[2], default=str) for r in rows]
    tokens = np.fromiter((r[4] or 0 for r in rows), dtype=np.int64, count=len(rows))
    errors = {r[0]: r[3] for r in rows if r[3] is not None}
    span = range(int(ids[0]), int(ids[-1]) + 1)
    listed = None if len(span) == len(ids) else ids
    has_texts = any(t is not None for t in texts)
    _add_chunk(encoded, run_id, round, span, listed, numbers, texts if has_texts else None, tokens, errors)
    return encoded


def _add_chunk(
    encoded: Encoded,
    run_id: int,
    round: int,
    span: range,
    ids: np.ndarray | None,
    numbers: np.ndarray,
    texts: Sequence[str | None] | None,
    tokens: np.ndarray | None,
    errors: dict[int, str],
) -> None:
    """A chunk of the agents in `span`: all of them, or those of `ids` when given."""
    if errors and ids is not None:
        members = set(ids.tolist())
        errors = {a: e for a, e in errors.items() if a in members}
    encoded.chunks.append(
        (
            run_id,
            round,
            span.start,
            span.stop,
            len(span) if ids is None else len(ids),
            None if ids is None else pack(ids),
            pack_numbers(numbers),
            None if texts is None else _pack_texts(texts),
            pack(narrowest(tokens)) if tokens is not None and tokens.any() else None,
            len(errors),
        )
    )
    encoded.failures += [(run_id, round, a, e) for a, e in sorted(errors.items())]


async def write_round(connection: AsyncConnection, encoded: Encoded) -> None:
    """Store a round's encoded actions within the connection's transaction."""
    from backend.store.records import copy_rows  # records imports this module

    if encoded.chunks:
        await copy_rows(connection, ActionChunkRow.__tablename__, CHUNK_COLUMNS, encoded.chunks)
    if encoded.failures:
        await copy_rows(connection, ActionFailureRow.__tablename__, FAILURE_COLUMNS, encoded.failures)


# -- reading ---------------------------------------------------------------------------------------


@dataclass
class Chunk:
    """A stored chunk, unpacked: its agents' ids, numbers (NaN for none) and tokens, and their
    other payloads (decoded one at a time, or all at once)."""

    round: int
    ids: np.ndarray
    numbers: np.ndarray
    tokens: np.ndarray | None
    failures: int
    _ends: np.ndarray | None = None
    _texts: bytes = b""

    def index(self, agent_id: int) -> int | None:
        """Where the agent is in the chunk; None if it is not recorded here."""
        at = int(np.searchsorted(self.ids, agent_id))
        return at if at < len(self.ids) and self.ids[at] == agent_id else None

    def text(self, at: int) -> str | None:
        """The payload at `at` as JSON text, None for none (or a number)."""
        if self._ends is None:
            return None
        begin = int(self._ends[at - 1]) if at else 0
        end = int(self._ends[at])
        return self._texts[begin:end].decode() if end > begin else None

    def texts(self) -> list[str | None]:
        if self._ends is None:
            return [None] * len(self.ids)
        ends = self._ends.tolist()
        return [
            self._texts[begin:end].decode() if end > begin else None
            for begin, end in zip([0, *ends[:-1]], ends, strict=True)
        ]

    def action(self, at: int, error: str | None) -> RecordedAction:
        number = float(self.numbers[at])
        text = self.text(at)
        return RecordedAction(
            self.round,
            int(self.ids[at]),
            None if number != number else number,  # NaN: no number
            None if text is None else json.loads(text),
            error,
            0 if self.tokens is None else int(self.tokens[at]),
        )


_READ = (
    ActionChunkRow.round,
    ActionChunkRow.first_id,
    ActionChunkRow.end_id,
    ActionChunkRow.ids,
    ActionChunkRow.numbers,
    ActionChunkRow.payloads,
    ActionChunkRow.tokens,
    ActionChunkRow.failures,
)


def decode(row: Sequence[Any], numbers_only: bool = False) -> Chunk:
    """A chunk from its stored columns (`_READ`'s order); `numbers_only` skips payloads and tokens."""
    round, first, end, ids, numbers, payloads, tokens, failures = row
    chunk = Chunk(
        round=round,
        ids=np.arange(first, end, dtype=np.int64) if ids is None else unpack(ids)[0],
        numbers=unpack(numbers)[0].astype(np.float64),
        tokens=None if tokens is None or numbers_only else unpack(tokens)[0],
        failures=failures,
    )
    if payloads is not None and not numbers_only:
        chunk._ends, at = unpack(payloads)
        chunk._texts = unpack(payloads, at)[0].tobytes()
    return chunk


def _mine(run_id: int) -> Any:
    return ActionChunkRow.run_id == run_id


async def agent_actions(
    session: AsyncSession, *, run_id: int, agent_id: int, rounds: int
) -> list[RecordedAction]:
    """One agent's actions in rounds 1..`rounds`: the one chunk holding it in each round."""
    if rounds < 1:
        return []
    return (await actions_of(session, run_id=run_id, ids=[agent_id], rounds=range(1, rounds + 1))).get(
        agent_id, []
    )


async def actions_of(
    session: AsyncSession, *, run_id: int, ids: Collection[int], rounds: range
) -> dict[int, list[RecordedAction]]:
    """The actions of the agents `ids` in `rounds`, by agent, oldest first (agents without any
    recorded are left out)."""
    wanted = np.unique(np.fromiter(ids, dtype=np.int64, count=len(ids)))
    if not len(wanted) or not len(rounds):
        return {}
    low, high = int(wanted[0]), int(wanted[-1])
    span = (
        _mine(run_id),
        ActionChunkRow.round >= rounds.start,
        ActionChunkRow.round < rounds.stop,
        ActionChunkRow.first_id <= high,
        ActionChunkRow.end_id > low,
    )
    order = (ActionChunkRow.round, ActionChunkRow.first_id)
    query = select(*_READ).where(*span)
    if len(wanted) > 1:
        # Agents spread over the run (a survey's sample): only the chunks that hold one of them,
        # found from the chunks' spans before any of their arrays is read.
        keys = select(ActionChunkRow.round, ActionChunkRow.first_id, ActionChunkRow.end_id).where(*span)
        holding = [
            (number, first)
            for number, first, end in await session.execute(keys)
            if np.searchsorted(wanted, first) < np.searchsorted(wanted, end)
        ]
        if not holding:
            return {}
        query = select(*_READ).where(_mine(run_id), tuple_(*order).in_(holding))
    chunks = []
    for row in await session.execute(query.order_by(*order)):
        first, end = row[1], row[2]
        inside = wanted[(wanted >= first) & (wanted < end)]
        if len(inside):
            chunks.append((decode(row), inside))
    found: dict[int, list[RecordedAction]] = {}
    errors: dict[tuple[int, int], str] = {}
    if any(chunk.failures for chunk, _ in chunks):
        failed = select(ActionFailureRow.round, ActionFailureRow.agent_id, ActionFailureRow.error).where(
            ActionFailureRow.run_id == run_id,
            ActionFailureRow.round >= rounds.start,
            ActionFailureRow.round < rounds.stop,
            ActionFailureRow.agent_id.in_(wanted.tolist()),
        )
        errors = {(r, a): e for r, a, e in await session.execute(failed)}
    for chunk, inside in chunks:
        for agent_id in inside.tolist():
            at = chunk.index(agent_id)
            if at is not None:
                action = chunk.action(at, errors.get((chunk.round, agent_id)))
                found.setdefault(agent_id, []).append(action)
    return dict(sorted(found.items()))  # each agent's in round order: the chunks' order


async def count_actions(session: AsyncSession, *, run_id: int) -> int:
    query = select(func.coalesce(func.sum(ActionChunkRow.count), 0)).where(_mine(run_id))
    return int((await session.execute(query)).scalar_one())


def failed_agents(run_id: int, round: int) -> Select[Any]:
    """The ids of the agents whose action failed in `round` (a subquery for the agents page)."""
    return select(ActionFailureRow.agent_id).where(
        ActionFailureRow.run_id == run_id, ActionFailureRow.round == round
    )


async def delete_actions(session: AsyncSession, *, run_id: int, after: int | None = None) -> None:
    """Delete the run's actions (those after round `after` when given)."""
    for table in (ActionChunkRow, ActionFailureRow):
        condition = table.run_id == run_id
        if after is not None:
            condition = condition & (table.round > after)
        await session.execute(delete(table).where(condition))


async def chunks(
    session: AsyncSession, *, run_id: int, batch: int = 8
) -> AsyncIterator[tuple[Chunk, dict[int, str]]]:
    """Every chunk of the run in order (round, then agent), with its agents' errors; read a few
    at a time (keyset pages: no cursor stays open between them)."""
    after = (0, -1)
    while True:
        query = (
            select(*_READ)
            .where(_mine(run_id), tuple_(ActionChunkRow.round, ActionChunkRow.first_id) > tuple_(*after))
            .order_by(ActionChunkRow.round, ActionChunkRow.first_id)
            .limit(batch)
        )
        rows = (await session.execute(query)).all()
        if not rows:
            return
        for row in rows:
            chunk = decode(row)
            errors: dict[int, str] = {}
            if chunk.failures:
                failed = select(ActionFailureRow.agent_id, ActionFailureRow.error).where(
                    ActionFailureRow.run_id == run_id,
                    ActionFailureRow.round == row[0],
                    ActionFailureRow.agent_id >= row[1],
                    ActionFailureRow.agent_id < row[2],
                )
                errors = dict((await session.execute(failed)).all())
            yield chunk, errors
        after = (rows[-1][0], rows[-1][1])


async def group_stats(
    session: AsyncSession, *, run_id: int, labels: Sequence[str], kinds: np.ndarray, round: int | None = None
) -> list[dict[str, Any]]:
    """Per round and kind of agent (`kinds`: every agent's, an index into `labels`): how many
    answered with a number, their mean, lowest and highest, and how many failed; from the stored
    actions (so only for the agents a run records), counted with numpy over the chunks."""
    query = select(*_READ).where(_mine(run_id))
    if round is not None:
        query = query.where(ActionChunkRow.round == round)
    rows = (await session.execute(query.order_by(ActionChunkRow.round, ActionChunkRow.first_id))).all()
    if not rows:
        return []
    failures = select(ActionFailureRow.round, ActionFailureRow.agent_id).where(
        ActionFailureRow.run_id == run_id
    )
    if round is not None:
        failures = failures.where(ActionFailureRow.round == round)
    failed_by_round: dict[int, list[int]] = {}
    for number, agent in await session.execute(failures):
        failed_by_round.setdefault(number, []).append(agent)
    by_round: dict[int, list[Chunk]] = {}
    for row in rows:
        by_round.setdefault(row[0], []).append(decode(row, numbers_only=True))
    found = []
    for number, parts in by_round.items():
        ids = np.concatenate([c.ids for c in parts])
        values = np.concatenate([c.numbers for c in parts])
        # An id past the population (a spec edited by hand) is counted in no kind.
        inside = ids < len(kinds)
        kind = np.full(len(ids), -1, dtype=np.int64)
        kind[inside] = kinds[ids[inside]]
        failed = np.zeros(len(ids), dtype=bool)
        if failed_by_round.get(number):
            failed = np.isin(ids, np.array(failed_by_round[number], dtype=np.int64))
        for code, label in enumerate(labels):
            mine = kind == code
            agents = int(np.count_nonzero(mine))
            if not agents:
                continue
            answered = values[mine & ~np.isnan(values)]
            found.append(
                {
                    "round": number,
                    "kind": label,
                    "agents": agents,
                    "cnt": len(answered),
                    "avg": float(answered.mean()) if len(answered) else None,
                    "min": float(answered.min()) if len(answered) else None,
                    "max": float(answered.max()) if len(answered) else None,
                    "failed": int(np.count_nonzero(failed & mine)),
                }
            )
    return found


def rows_of(chunk: Chunk, errors: dict[int, str]) -> Iterable[dict[str, Any]]:
    """A chunk's actions as export rows (round, agent_id, value, payload, error, tokens)."""
    numbers = chunk.numbers.tolist()
    tokens = chunk.tokens.tolist() if chunk.tokens is not None else None
    texts = chunk.texts()
    for at, agent_id in enumerate(chunk.ids.tolist()):
        number, text = numbers[at], texts[at]
        yield {
            "round": chunk.round,
            "agent_id": agent_id,
            "value": None if number != number else number,
            "payload": None if text is None else json.loads(text),
            "error": errors.get(agent_id),
            "tokens": 0 if tokens is None else tokens[at],
        }
