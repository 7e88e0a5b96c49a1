"""JSON request bodies read strictly: JSON only (415 otherwise), well-formed (400), and, as any
invalid input (422), no key given twice (a client's "last one wins" surprise: a 1-round spec read
as a million rounds) and nested no deeper than any request of the API needs."""

from __future__ import annotations

import email.message
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

__all__ = ["MAX_DEPTH", "JsonRoute", "TooDeep", "loads"]

MAX_DEPTH = 32  # a run spec nests about 6 deep


class TooDeep(ValueError):
    def __init__(self, path: tuple[str | int, ...]) -> None:
        super().__init__(f"nested deeper than {MAX_DEPTH} levels")
        self.path = path


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _Duplicate(f"the key {key!r} is given twice")
        data[key] = value
    return data


def _check_depth(value: Any) -> None:
    """Raise `TooDeep` at the first place `value` nests past `MAX_DEPTH` (without recursion)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        children = (
            item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        )
        for key, child in children:
            if len(path) >= MAX_DEPTH:
                raise TooDeep(path)
            stack.append((child, (*path, key)))


def loads(text: str | bytes) -> Any:
    """Parse a JSON document strictly. `ValueError` for malformed JSON or a key given twice,
    `TooDeep` for nesting past `MAX_DEPTH`; each says in one line what is wrong."""
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:  # the parser recurses once per level
        raise TooDeep(()) from None
    _check_depth(data)
    return data


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and subtype.split("+")[-1] == "json"


def _invalid(path: tuple[str | int, ...], message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("body", *path), "msg": message}])


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads(await self.body())
            except TooDeep as e:
                raise _invalid(e.path, str(e)) from None
            except _Duplicate as e:
                raise _invalid((), str(e)) from None
            except ValueError as e:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, str(e)) from None
        return self._json


class JsonRoute(APIRoute):
    """A route whose body, when it takes one, must be strict JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def strict(request: Request) -> Response:
            request = _StrictJsonRequest(request.scope, request.receive)
            if await request.body():
                if not _is_json(request.headers.get("content-type")):
                    raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the body as JSON")
                await request.json()  # refused here, in our words; FastAPI reads it again from the cache
            return await handler(request)

        return strict
