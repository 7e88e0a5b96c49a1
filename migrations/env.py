"""Alembic environment: one migration history for Postgres and SQLite, run with the async drivers."""

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from backend.store.models import Base

target_metadata = Base.metadata


def run_offline() -> None:
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    dialect = connection.dialect.name

    def include_object(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
        # Objects declared for one database only (info={"only": ...}) do not exist on the others.
        return getattr(obj, "info", {}).get("only", dialect) == dialect

    # SQLite alters tables by copying them ("batch" mode); Postgres alters in place.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=dialect == "sqlite",
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_async_engine(context.config.get_main_option("sqlalchemy.url"))
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    asyncio.run(run_online())
