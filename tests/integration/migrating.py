"""An empty database of either kind, migrated to an old revision, for the migrations' tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from backend.store.db import migrate
from tests.conftest import POSTGRES_URL, missing


@contextlib.contextmanager
def database_at(kind: str, folder: Path, revision: str, name: str) -> Iterator[str]:
    """The URL of an empty SQLite file in `folder`, or Postgres database `name` (dropped after),
    migrated to `revision`."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{folder / 'old.db'}"
        migrate(url, revision)
        yield url
        return
    server = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name}"))
        asyncio.run(admin(f"CREATE DATABASE {name}"))
    except (OSError, asyncpg.PostgresError) as e:
        missing("PostgreSQL", e)
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    migrate(url, revision)
    yield url
    with contextlib.suppress(OSError, asyncpg.PostgresError):
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name}"))
