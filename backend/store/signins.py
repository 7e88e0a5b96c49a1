"""Dashboard sign-ins: one row per signed-in browser, so a sign-out holds in every API process."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.store.models import SignInRow

__all__ = ["add_sign_in", "delete_sign_in", "delete_sign_ins", "has_sign_in"]


def _hash(sign_in: str) -> str:
    return hashlib.sha256(sign_in.encode()).hexdigest()


async def add_sign_in(session: AsyncSession, *, max_age: float) -> str:
    """Record a new sign-in and return its id, for the session cookie; sign-ins older than
    `max_age` seconds (their cookies have expired) are dropped on the way."""
    now = datetime.now(UTC)
    await session.execute(delete(SignInRow).where(SignInRow.created_at < now - timedelta(seconds=max_age)))
    sign_in = secrets.token_urlsafe(32)
    session.add(SignInRow(id_hash=_hash(sign_in), created_at=now))
    return sign_in


async def has_sign_in(session: AsyncSession, *, sign_in: str) -> bool:
    """Whether this sign-in is still valid (one primary-key lookup: it runs on every page)."""
    found = await session.scalar(select(SignInRow.id_hash).where(SignInRow.id_hash == _hash(sign_in)))
    return found is not None


async def delete_sign_in(session: AsyncSession, *, sign_in: str) -> None:
    await session.execute(delete(SignInRow).where(SignInRow.id_hash == _hash(sign_in)))


async def delete_sign_ins(session: AsyncSession) -> int:
    """End every sign-in; returns how many there were."""
    # A DELETE's result is a CursorResult; the types of AsyncSession.execute do not say so.
    return cast("CursorResult[Any]", await session.execute(delete(SignInRow))).rowcount
