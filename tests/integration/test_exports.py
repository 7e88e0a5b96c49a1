"""Exports against the database: a writer that fails part way still gives its connection back at
once, in its own task, and nothing is left for the garbage collector to finish (an aiosqlite
"Task was destroyed but it is pending!" was logged during exports)."""

import asyncio
import gc
import logging

import numpy as np
import pytest

from agents.core import ActionBatch
from backend import services
from backend.services import exports
from backend.store import actions, runs


async def _run_with_actions(rt, make_spec, count: int) -> int:
    async with rt.sessions() as session:
        run = await runs.create_run(session, spec=make_spec())
        await session.commit()
        batch = ActionBatch(range(count), np.ones(count))
        await actions.write_round(await session.connection(), actions.encode_round(run.id, 1, batch))
        await session.commit()
        return run.id


async def test_an_export_that_fails_part_way_gives_its_connection_back(
    runtime, make_spec, monkeypatch, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(actions, "CHUNK", 10)  # several chunks, each a batch, from 35 rows
    run_id = await _run_with_actions(runtime, make_spec, 35)

    async def fails_after_one_batch(batches, out, header=()):
        async for _ in batches:
            raise OSError("No space left on device")

    monkeypatch.setattr(exports, "_write_csv", fails_after_one_batch)
    pool = runtime.engine.pool
    with pytest.raises(OSError, match="No space left") as failed:
        await services.export(runtime, run_id, table="actions", format="csv", out=tmp_path / "a.csv")
    # While the failure is still held (a log line, a traceback on screen), the stream is closed.
    assert pool.checkedout() == 0, "the half-read stream still holds its connection"
    del failed
    gc.collect()
    await asyncio.sleep(0.1)  # whatever the collector scheduled runs now
    assert pool.checkedout() == 0
    troubles = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [m for m in troubles if "destroyed but it is pending" in m or "non-checked-in" in m], troubles
    # The next export reads the whole table.
    count = await services.export(runtime, run_id, table="actions", format="json", out=tmp_path / "a.json")
    assert count == 35
