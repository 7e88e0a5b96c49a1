"""Failed sign-ins counted per client address, so a token cannot be guessed at network speed."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from starlette.types import Scope

__all__ = ["Throttle", "client_address", "too_many"]


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def too_many(retry_after: int) -> str:
    return f"too many failed sign-ins from this address: try again in {retry_after} s"


class Throttle:
    """After `limit` failed sign-ins (dashboard or API token) from one address within `window`
    seconds, that address is refused (429) until its oldest failure leaves the window — even with
    the right token, or guessing would go on at full speed behind the 429s.

    Kept in this process: each API process of a deployment counts its own failures, so N
    processes allow N × `limit` guesses a window, still hopeless against a token of 16+ random
    characters. Behind a proxy the address is the client's only when uvicorn trusts the proxy's
    X-Forwarded-For (MYRIAD_FORWARDED_ALLOW_IPS).
    """

    def __init__(
        self, limit: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def __repr__(self) -> str:
        return f"Throttle(limit={self.limit}, window={self.window}, addresses={len(self._failures)})"

    def retry_after(self, address: str) -> int | None:
        """Whole seconds `address` must wait before trying again, or None if it may try now."""
        failures = self._recent(address)
        if failures is None or len(failures) < self.limit:
            return None
        return max(1, math.ceil(failures[0] + self.window - self._clock()))

    def failed(self, address: str) -> None:
        if len(self._failures) > 10_000:  # bounded memory: forget addresses with no recent failure
            for quiet in [a for a in self._failures if not self._recent(a)]:
                del self._failures[quiet]
        self._failures.setdefault(address, deque(maxlen=self.limit)).append(self._clock())

    def _recent(self, address: str) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is not None:
            since = self._clock() - self.window
            while failures and failures[0] <= since:
                failures.popleft()
        return failures
