"""Dashboard sign-ins: made at sign-in, checked on every page, ended by signing out."""

from __future__ import annotations

from backend.runtime import Runtime
from backend.store import signins

__all__ = ["sign_in", "sign_out", "sign_out_everywhere", "signed_in"]


async def sign_in(rt: Runtime, *, max_age: float) -> str:
    """A new dashboard sign-in, valid until signed out (or `max_age` seconds, the cookie's life)."""
    async with rt.sessions.begin() as session:
        return await signins.add_sign_in(session, max_age=max_age)


async def signed_in(rt: Runtime, sign_in: str) -> bool:
    async with rt.sessions() as session:
        return await signins.has_sign_in(session, sign_in=sign_in)


async def sign_out(rt: Runtime, sign_in: str) -> None:
    async with rt.sessions.begin() as session:
        await signins.delete_sign_in(session, sign_in=sign_in)


async def sign_out_everywhere(rt: Runtime) -> int:
    """End every dashboard sign-in, in every browser; returns how many there were."""
    async with rt.sessions.begin() as session:
        return await signins.delete_sign_ins(session)
