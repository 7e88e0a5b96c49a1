"""Engines and sessions, built from settings (never at import time), and migrations."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

if TYPE_CHECKING:  # alembic takes a while to import: only when there is something to migrate
    from alembic.config import Config

__all__ = ["MIGRATIONS", "create_engine", "migrate", "session_factory", "sqlite_at_head"]

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def create_engine(url: str, **options: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL mode (readers never wait for the writer) and foreign keys."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 60}, **options)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, **options)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` (blocking; call it before serving)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


_REVISION = re.compile(r"^(down_revision|revision)\b[^=\n]*=\s*(\S+)", re.MULTILINE)


def _head() -> str | None:
    """The newest migration: the revision no other migration names as the one before it."""
    revisions: set[str] = set()
    before: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for name, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            (revisions if name == "revision" else before).add(value.strip("\"'"))
    heads = revisions - before
    return heads.pop() if len(heads) == 1 else None


def sqlite_at_head(url: str) -> bool:
    """Whether the SQLite database at `url` exists and is migrated to the newest revision: then a
    process opening it need not load alembic (a reader like `myriad runs list` answers at once)."""
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    if not path or path == ":memory:" or not Path(path).exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            found = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return False
    return [row[0] for row in found] == [_head()]
