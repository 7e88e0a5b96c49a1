"""Ids people see are never given again: a deleted run's id (its bookmarks, its `run-N-*`
exports) stays its own, and so do its events' and commands' ids, on SQLite and Postgres."""

import sqlite3

from agents.spec import RunSpec
from backend.store import commands, records, runs
from backend.store.db import migrate
from backend.store.models import CommandRow, EventRow
from tests.conftest import spec_data


async def test_deleting_the_newest_run_does_not_give_its_ids_again(runtime):
    spec = RunSpec.parse(spec_data())
    async with runtime.sessions() as session:
        made = [await runs.create_run(session, spec=spec) for _ in range(3)]
        newest = made[-1]
        await records.add_event(session, run_id=newest.id, round=0, kind="queued", payload={})
        await commands.add_command(session, run_id=newest.id, action="inject", payload={"content": "hi"})
        await session.commit()
        event = max(e.id for e in await records.list_events(session, run_id=newest.id))
        command = max(c.id for c in await commands.pending_commands(session, run_id=newest.id))
        await runs.delete_run(session, run_id=newest.id)
        after = await runs.create_run(session, spec=spec)
        await records.add_event(session, run_id=after.id, round=0, kind="queued", payload={})
        await commands.add_command(session, run_id=after.id, action="inject", payload={"content": "hi"})
        await session.commit()
        assert after.id > newest.id
        assert min(e.id for e in await records.list_events(session, run_id=after.id)) > event
        assert min(c.id for c in await commands.pending_commands(session, run_id=after.id)) > command
        assert await session.get(EventRow, event) is None
        assert await session.get(CommandRow, command) is None


def test_the_migration_keeps_the_rows_and_their_ties(tmp_path):
    """An existing SQLite database: its runs keep their ids, rows of other tables stay theirs (and
    go with them when they are deleted), and ids are not given again from then on."""
    path = tmp_path / "old.db"
    migrate(f"sqlite+aiosqlite:///{path}", "0005")
    with sqlite3.connect(path) as db:
        for run in (1, 2, 3):
            db.execute(
                "INSERT INTO runs (id, name, spec, status, seed, agents, rounds, round, attempts)"
                " VALUES (?, 'old', '{}', 'completed', 1, 10, 3, 3, 1)",
                (run,),
            )
            db.execute(
                "INSERT INTO events (run_id, round, kind, payload) VALUES (?, 0, 'queued', '{}')", (run,)
            )
            db.execute(
                "INSERT INTO rounds (run_id, round, stats, details, time, failures)"
                " VALUES (?, 1, '{}', '{}', 0, 0)",
                (run,),
            )
    migrate(f"sqlite+aiosqlite:///{path}")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA foreign_keys=ON")
        assert db.execute("SELECT id FROM runs").fetchall() == [(1,), (2,), (3,)]
        db.execute("DELETE FROM runs WHERE id = 3")
        assert db.execute("SELECT run_id FROM rounds").fetchall() == [(1,), (2,)]  # cascaded
        assert db.execute("SELECT run_id FROM events").fetchall() == [(1,), (2,)]
        db.execute(
            "INSERT INTO runs (name, spec, status, seed, agents, rounds, round, attempts)"
            " VALUES ('new', '{}', 'queued', 1, 10, 3, 0, 0)"
        )
        assert db.execute("SELECT max(id) FROM runs").fetchone() == (4,)
