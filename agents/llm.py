"""Chat completions from OpenAI-compatible servers (vLLM, Ollama, llama.cpp, OpenAI, ...).

A run names its models in the spec; each model has a pool of endpoints (say one vLLM per GPU on
every node), each with its own concurrency limit. A request goes to the least-loaded endpoint that
is not resting; an endpoint that keeps failing rests for a while. Calls time out, are retried with
exponential backoff (honouring `Retry-After`) on 429, 5xx and connection errors, and never outlive
the caller's deadline, so one hung call cannot stall a round. Every call's prompt and completion
tokens are counted per model; a price table turns them into cost.

API keys are read from the environment variables the spec names (among those the operator allows,
see `llm_access`), in the process that makes the call, and are never part of the spec itself.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from agents.llm_access import never_a_key

if TYPE_CHECKING:  # imported where it is used: readers of specs (the API, `myriad runs`) need none
    import aiohttp

__all__ = [
    "LLM",
    "EndpointSpec",
    "LLMError",
    "LLMSpec",
    "ModelPool",
    "ModelSpec",
    "Price",
    "Reply",
    "Usage",
    "cost",
    "priced",
    "tokens",
]

_BACKOFF_CAP = 8.0  # seconds between retries at most
_RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


_ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\n\r]*$")]


class EndpointSpec(_Strict):
    url: str = Field(
        max_length=2_000, description="base URL of the OpenAI-compatible API, e.g. http://gpu1:8000/v1"
    )
    concurrency: int = Field(64, ge=1, le=100_000, description="requests in flight at most")

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url.rstrip("/")


class Price(_Strict):
    """Price in any currency per million tokens."""

    prompt: float = Field(0.0, ge=0)
    completion: float = Field(0.0, ge=0)


class ModelSpec(_Strict):
    """One model, as the agents of a run name it."""

    model: _ModelName | None = Field(
        None, description="the model id sent to the servers; default: the spec's key"
    )
    endpoints: list[EndpointSpec] = Field(min_length=1, max_length=10_000)
    api_key_env: str | None = Field(
        None,
        max_length=100,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the key: one the operator allows in MYRIAD_LLM_KEYS",
    )
    timeout: float = Field(60.0, gt=0, le=3600, description="seconds one request may take")
    retries: int = Field(4, ge=0, le=20, description="retries of a failed request")
    backoff: float = Field(0.25, gt=0, le=60, description="seconds before the first retry; doubles each time")
    failures_to_rest: int = Field(5, ge=1, le=1000, description="consecutive failures that rest an endpoint")
    rest: float = Field(30.0, ge=0, le=3600, description="seconds a failing endpoint is set aside")
    price: Price | None = None
    max_tokens: int = Field(512, ge=1, le=1_000_000, description="completion tokens per call at most")
    temperature: float = Field(0.7, ge=0, le=2)


class LLMSpec(_Strict):
    """The models a run may use, by the name its agents use."""

    models: dict[_ModelName, ModelSpec] = Field(min_length=1, max_length=100)


class LLMError(Exception):
    """A call that could not be answered in time or at all (after its retries)."""


@dataclass(slots=True)
class Usage:
    calls: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Calls that agents answering through archetypes did not make: their number less the calls
    # asked for them (negative when an archetype has fewer members than samples).
    saved: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.calls += other.calls
        self.failed += other.failed
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.saved += other.saved

    def as_dict(self) -> dict[str, int]:
        counts = {
            "calls": self.calls,
            "failed": self.failed,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }
        if self.saved:  # only runs with archetypes say so
            counts["saved"] = self.saved
        return counts

    @classmethod
    def of(cls, data: Mapping[str, int]) -> Usage:
        return cls(
            **{
                k: int(data.get(k, 0))
                for k in ("calls", "failed", "prompt_tokens", "completion_tokens", "saved")
            }
        )


def cost(usage: Usage, price: Price | None) -> float:
    if price is None:
        return 0.0
    return (usage.prompt_tokens * price.prompt + usage.completion_tokens * price.completion) / 1e6


def priced(spec: LLMSpec | None, usage: Mapping[str, Mapping[str, int]]) -> float:
    """The cost of `usage` (per model) by the models' price tables; unpriced models cost 0."""
    if spec is None:
        return 0.0
    known = spec.models
    return sum(cost(Usage.of(counts), known[m].price) for m, counts in usage.items() if m in known)


def tokens(usage: Mapping[str, Mapping[str, int]]) -> int:
    """Prompt and completion tokens of `usage` (per model), all models together."""
    return sum(c.get("prompt_tokens", 0) + c.get("completion_tokens", 0) for c in usage.values())


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class _Retry(Exception):
    def __init__(self, reason: str, after: float | None = None, *, blame: bool = True) -> None:
        super().__init__(reason)
        self.after = after
        self.blame = blame  # counts against the endpoint (a 429 says "busy", not "broken")


class _Endpoint:
    __slots__ = ("failures", "in_flight", "limit", "resting_until", "url")

    def __init__(self, spec: EndpointSpec) -> None:
        self.url = spec.url
        self.limit = spec.concurrency
        self.in_flight = 0
        self.failures = 0
        self.resting_until = 0.0

    def load(self) -> float:
        return self.in_flight / self.limit


class ModelPool:
    """The endpoints of one model, shared by every agent of a process.

    Args:
        name: the name agents use.
        spec: the model's endpoints and limits.
        llm: the run's models in this process, which hold the HTTP session.
    """

    def __init__(self, name: str, spec: ModelSpec, llm: LLM) -> None:
        self.name = name
        self.spec = spec
        self.model = spec.model or name
        self.llm = llm
        self.endpoints = [_Endpoint(e) for e in spec.endpoints]
        self.usage = Usage()
        self._waiters: collections.deque[asyncio.Future[_Endpoint | None]] = collections.deque()

    def __repr__(self) -> str:
        return f"ModelPool({self.name!r}, endpoints={len(self.endpoints)})"

    @property
    def capacity(self) -> int:
        """Calls the endpoints take at once, together."""
        return sum(e.limit for e in self.endpoints)

    async def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        deadline: float | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Reply:
        """The model's answer to `messages`, retried as needed until `deadline` (a
        `time.monotonic()` value; default: one request's timeout per attempt). A `seed` asks
        the servers that honour one (OpenAI's, vLLM, llama.cpp, the stand-in) to sample the same
        way each time."""
        spec = self.spec
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "max_tokens": max_tokens or spec.max_tokens,
            "temperature": spec.temperature if temperature is None else temperature,
        }
        if seed is not None:
            body["seed"] = seed
        last, failures, tries = "no attempt", 0, 0
        while True:
            tries += 1
            endpoint = await self._acquire(deadline)
            try:
                reply = await self._post(endpoint, body, deadline)
            except _Retry as e:
                self._failed(endpoint, e.blame)
                # "Busy" (429) spends no retry while a deadline bounds the waiting.
                failures += e.blame or deadline is None
                # Retry-After is honoured, with jitter: a herd told the same time must not return at once.
                last, wait = str(e), _backoff(spec.backoff, failures) + (e.after or 0.0)
            else:
                endpoint.failures = 0
                self.usage.calls += 1
                self.usage.prompt_tokens += reply.prompt_tokens
                self.usage.completion_tokens += reply.completion_tokens
                return reply
            finally:
                self._release(endpoint)  # before any backoff: a waiting retry holds no slot
            if failures > spec.retries or (deadline is not None and time.monotonic() + wait >= deadline):
                break
            await asyncio.sleep(wait)
        self.usage.failed += 1
        raise LLMError(f"{self.name}: no answer after {tries} attempt(s): {last}")

    async def _acquire(self, deadline: float | None) -> _Endpoint:
        """The least-loaded endpoint with room that is not resting, waiting in line for one if
        need be: a release hands its slot straight to the first caller waiting."""
        loop = asyncio.get_running_loop()
        while True:
            endpoint = self._pick()
            if endpoint is not None:
                endpoint.in_flight += 1
                return endpoint
            wait = self._patience(deadline)  # first: a caller that cannot wait leaves no place in line
            waiter: asyncio.Future[_Endpoint | None] = loop.create_future()
            self._waiters.append(waiter)
            timer = loop.call_later(wait, _wake, waiter) if wait is not None else None
            try:
                granted = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and (slot := waiter.result()) is not None:
                    self._release(slot)  # handed a slot as the caller gave up: pass it on
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            if granted is not None:
                return granted
            # Woken without a slot: an endpoint may have come back from resting; look again.

    def _pick(self) -> _Endpoint | None:
        now = time.monotonic()
        ready = [e for e in self.endpoints if e.resting_until <= now and e.in_flight < e.limit]
        return min(ready, key=_Endpoint.load) if ready else None

    def _patience(self, deadline: float | None) -> float | None:
        """How long to wait in line: until the deadline, or until the first resting endpoint
        comes back when all rest; refuses when that is past the deadline."""
        now = time.monotonic()
        wait = None
        if all(e.resting_until > now for e in self.endpoints):
            wait = min(e.resting_until for e in self.endpoints) - now
        if deadline is not None:
            left = deadline - now
            if left <= 0 or (wait is not None and wait > left):
                raise LLMError(f"{self.name}: every endpoint is busy or resting")
            wait = left if wait is None else wait
        return wait

    def _release(self, endpoint: _Endpoint) -> None:
        endpoint.in_flight -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if waiter.done():  # it gave up waiting
                continue
            slot = self._pick()
            if slot is None:
                self._waiters.appendleft(waiter)
                return
            slot.in_flight += 1
            waiter.set_result(slot)
            return

    def _failed(self, endpoint: _Endpoint, blame: bool) -> None:
        if not blame:
            return
        endpoint.failures += 1
        if endpoint.failures < self.spec.failures_to_rest:
            return
        now = time.monotonic()
        # Set aside only when another endpoint can take the calls: resting the last one would
        # fail every call until it wakes, where retrying it may still succeed.
        if any(e is not endpoint and e.resting_until <= now for e in self.endpoints):
            endpoint.resting_until = now + self.spec.rest
            endpoint.failures = 0

    async def _post(self, endpoint: _Endpoint, body: dict[str, Any], deadline: float | None) -> Reply:
        import aiohttp

        timeout = self.spec.timeout
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
        if timeout <= 0:
            raise _Retry("deadline reached", after=math.inf, blame=False)
        headers = {}
        variable = self.spec.api_key_env
        # Checked again where the key is read: a run stored before the operator's limits existed
        # must not send the service's own secrets either.
        if variable and not never_a_key(variable) and (key := os.environ.get(variable)):
            headers["Authorization"] = f"Bearer {key}"
        try:
            async with self.llm.session.post(
                f"{endpoint.url}/chat/completions",
                json=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                if response.status in _RETRYABLE:
                    after = _retry_after(response.headers.get("Retry-After"))
                    raise _Retry(
                        f"HTTP {response.status} from {endpoint.url}", after, blame=response.status != 429
                    )
                if response.status >= 400:
                    text = (await response.text())[:200]
                    raise LLMError(f"{self.name}: HTTP {response.status} from {endpoint.url}: {text}")
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise _Retry(f"{type(e).__name__} from {endpoint.url}: {e}") from None
        return _reply(data, endpoint.url)


def _reply(data: Any, url: str) -> Reply:
    """The text and token counts of a chat completion, or a retry when the body is not one."""
    try:
        text = data["choices"][0]["message"]["content"]
        usage = data.get("usage") or {}
        if not isinstance(text, str):
            raise TypeError("content is not text")
        return Reply(text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise _Retry(f"malformed completion from {url}: {e}") from None


def _wake(waiter: asyncio.Future[_Endpoint | None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _backoff(base: float, attempt: int) -> float:
    """Exponential backoff with full jitter, so retries from thousands of agents spread out."""
    return random.uniform(0, min(_BACKOFF_CAP, base * 2**attempt))


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class LLM:
    """Every model of a run, for one process: one HTTP session, one pool per model.

    The session opens at the first call, in the event loop that makes it; `close` it at the end.
    """

    def __init__(self, spec: LLMSpec) -> None:
        self.spec = spec
        self._session: aiohttp.ClientSession | None = None
        self.pools = {name: ModelPool(name, model, self) for name, model in spec.models.items()}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp

            # The pools bound the requests in flight, per endpoint: the connector need not.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300))
        return self._session

    def __repr__(self) -> str:
        return f"LLM({sorted(self.pools)})"

    def model(self, name: str) -> ModelPool:
        return self.pools[name]

    def take_usage(self) -> dict[str, dict[str, int]]:
        """The usage of each model since the last call (models without calls left out)."""
        taken = {}
        for name, pool in self.pools.items():
            if pool.usage.calls or pool.usage.failed or pool.usage.saved:
                taken[name] = pool.usage.as_dict()
                pool.usage = Usage()
        return taken

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
