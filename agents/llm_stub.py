"""A stand-in OpenAI-compatible chat server for tests, benchmarks and demos without a GPU.

It speaks real HTTP (`POST /v1/chat/completions`) and misbehaves on request: latency, a capacity
beyond which it answers 429, a share of 500s, of malformed bodies and of calls that hang. Its
answers are made up but plausible for Myriad's prompts — a number for a guess, the number alone
for an extraction, a persona between the asked-for delimiters, a post or silence in the social
scenario, a survey's number or option, a short in-character reply otherwise — and deterministic
for a given prompt and sampling seed. It counts the tokens it reports, so tests can check that a
client's sums are exact, and how many of them lie in a prefix shared with an earlier prompt (what
a server's prefix cache, such as vLLM's, could have served); `GET /stats` tells what it served so far.

`myriad llm-stub --port 8001 --latency 0.5 --capacity 256` serves one.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import dataclasses
import json
import random
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

__all__ = ["Prefixes", "StubConfig", "StubServer", "answer"]

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclasses.dataclass
class StubConfig:
    latency: float = 0.0  # seconds before every answer
    capacity: int = 0  # requests in flight at most (0: unlimited); more get 429
    error_rate: float = 0.0  # share of 500 answers
    malformed_rate: float = 0.0  # share of answers that are not a chat completion
    hang_rate: float = 0.0  # share of calls never answered in time (they sleep `hang` seconds)
    hang: float = 3600.0
    garbage_rate: float = 0.0  # share of answers whose text holds no number
    seed: int = 0


@dataclasses.dataclass
class Served:
    """What the server has done so far."""

    requests: int = 0
    answered: int = 0
    rejected: int = 0  # 429
    errors: int = 0  # 500
    malformed: int = 0
    hung: int = 0
    prompt_tokens: int = 0  # in answered calls only: what a client can have been told
    completion_tokens: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    models: dict[str, int] = dataclasses.field(default_factory=dict)
    authorizations: set[str] = dataclasses.field(default_factory=set)  # Authorization headers seen
    personas: int = 0  # answered calls that asked for a persona
    shared_tokens: int = 0  # of prompt_tokens, those in a prefix shared with an earlier prompt

    def stats(self) -> dict[str, Any]:
        """The counts, without the Authorization headers seen, and the shared-prefix share."""
        counts = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "authorizations"
        }
        counts["shared_prefix"] = self.shared_tokens / self.prompt_tokens if self.prompt_tokens else 0.0
        return counts


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


# Each message is led by a mark of its role: whitespace to `str.split`, so it adds no token, yet
# two prompts that differ only in where a message ends or in a role differ there.
_ROLES = {"system": "\x1c", "user": "\x1d", "assistant": "\x1e"}


class Prefixes:
    """How many of a prompt's tokens (words, as `_tokens` counts them) lie in a prefix it shares
    with one of the `window` prompts seen before it.

    The recent prompts are kept sorted: the one sharing the longest prefix with a new prompt is
    one of its two neighbours in that order, so a prompt costs two comparisons, not one per prompt
    kept, and a round of 10,000 calls keeps the server far from CPU-bound.
    """

    def __init__(self, window: int = 4096) -> None:
        self.window = window
        self._sorted: list[str] = []
        self._seen: collections.deque[str] = collections.deque()  # oldest first

    def see(self, messages: Sequence[Mapping[str, str]]) -> int:
        """The tokens of `messages` in a prefix shared with an earlier prompt; remembers it."""
        text = "".join(_ROLES.get(m.get("role", ""), "\x1f") + m.get("content", "") for m in messages)
        at = bisect.bisect_left(self._sorted, text)
        shared = max(
            (_shared_words(text, self._sorted[i]) for i in (at - 1, at) if 0 <= i < len(self._sorted)),
            default=0,
        )
        self._sorted.insert(at, text)
        self._seen.append(text)
        if len(self._seen) > self.window:
            del self._sorted[bisect.bisect_left(self._sorted, self._seen.popleft())]
        return shared


def _shared_words(text: str, other: str) -> int:
    """The words of `text` that `other` starts with too: a word cut short in either one is not."""
    low, high = 0, min(len(text), len(other))
    while low < high:  # the longest common prefix, by halves: slices compare at C speed
        middle = (low + high + 1) // 2
        if text[:middle] == other[:middle]:
            low = middle
        else:
            high = middle - 1
    words = len(text[:low].split())
    if words and not text[low - 1].isspace() and not (_ends_word(text, low) and _ends_word(other, low)):
        words -= 1
    return words


def _ends_word(text: str, at: int) -> bool:
    return at == len(text) or text[at].isspace()


def answer(messages: list[dict[str, str]], seed: int | None = None) -> str:
    """A made-up answer to Myriad's kinds of prompt, the same for the same messages and `seed`
    (a request's sampling seed: the same prompt with another seed may be answered otherwise)."""
    prompt = "\n".join(m.get("content", "") for m in messages)
    last = messages[-1].get("content", "") if messages else ""
    draw = zlib.crc32(prompt.encode())
    if seed is not None:
        draw = zlib.crc32(str(seed).encode(), draw)
    if "<persona>" in prompt:
        return (
            "<persona>I grew up in a small town and now live in the city. I like puzzles and "
            f"long walks, and I think before I act (#{draw % 1000}).</persona>"
        )
    if survey := _survey_answer(last, draw):
        return survey
    if "interviewing you" in prompt:
        return f"Speaking for myself: {last[:80]}"
    if last.startswith("Extract"):
        found = _NUMBER.findall(last.split(":", 1)[-1])
        return found[-1] if found else "none"
    if "0 and" in prompt or "number" in last.lower():
        ceiling = 100
        for match in re.finditer(r"between 0 and (\d+)", prompt):
            ceiling = int(match.group(1))
        guess = draw % (ceiling // 2 + 1)
        if "step by step" in last:
            return (
                f"Let me think. Others will guess around half. Two thirds of that is lower. I pick {guess}."
            )
        return str(guess)
    if "post, repost or stay silent" in prompt:
        choice = ("post", "repost", "silent")[draw % 3]
        return json.dumps(
            {"act": choice, "text": "Have you heard the news?", "stance": (draw % 201) / 100 - 1}
        )
    return f"Speaking for myself: {last[:80]}"


def _seed(body: Mapping[str, Any]) -> int | None:
    seed = body.get("seed")
    return seed if isinstance(seed, int) else None


def _survey_answer(question: str, draw: int) -> str | None:
    """A survey's number or option (see `agents.survey.prompt`), drawn from the prompt's hash:
    every agent answers its own way, and the same way every time."""
    if ranged := re.search(r"Answer with a number between (-?[\d.]+) and (-?[\d.]+)", question):
        low, high = (int(float(bound)) for bound in ranged.groups())
        return f"{low + draw % (high - low + 1)}, if you ask me."
    if "Answer with exactly one of these options" in question:
        options = re.findall(r"^\d+\. (.+)$", question, re.M)
        return options[draw % len(options)] if options else None
    return None


class StubServer:
    """The server, started and stopped in the running event loop.

    Args:
        config: how it behaves; may be changed while it runs.
        host, port: where it listens (port 0: any free one).
    """

    def __init__(self, config: StubConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or StubConfig()
        self.host = host
        self.port = port
        self.served = Served()
        self.prefixes = Prefixes()
        self._random = random.Random(self.config.seed)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/stats", self._stats)
        # A client that gives up cancels its call here too, so only delivered answers are counted.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=4096)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model"} for m in self.served.models]}
        )

    async def _stats(self, _: web.Request) -> web.Response:
        return web.json_response(self.served.stats())

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        served, config = self.served, self.config
        served.requests += 1
        if auth := request.headers.get("Authorization"):
            served.authorizations.add(auth)
        if config.capacity and served.in_flight >= config.capacity:
            served.rejected += 1
            return web.json_response(
                {"error": {"message": "busy"}}, status=429, headers={"Retry-After": "0.05"}
            )
        served.in_flight += 1
        served.peak_in_flight = max(served.peak_in_flight, served.in_flight)
        try:
            body: dict[str, Any] = await request.json()
            roll = self._random.random()
            if roll < config.hang_rate:
                served.hung += 1
                await asyncio.sleep(config.hang)
            if config.latency:
                await asyncio.sleep(config.latency)
            roll -= config.hang_rate
            if 0 <= roll < config.error_rate:
                served.errors += 1
                return web.json_response({"error": {"message": "internal error"}}, status=500)
            roll -= config.error_rate
            if 0 <= roll < config.malformed_rate:
                served.malformed += 1
                return web.Response(text='{"choices": [ {"oops"', content_type="application/json")
            roll -= config.malformed_rate
            messages = body.get("messages") or []
            garbage = 0 <= roll < config.garbage_rate
            text = "I would rather not say." if garbage else answer(messages, _seed(body))
            prompt_tokens = sum(_tokens(m.get("content", "")) for m in messages)
            completion_tokens = _tokens(text)
            served.answered += 1
            served.personas += text.startswith("<persona>")
            served.prompt_tokens += prompt_tokens
            served.shared_tokens += self.prefixes.see(messages)
            served.completion_tokens += completion_tokens
            model = str(body.get("model", ""))
            served.models[model] = served.models.get(model, 0) + 1
            return web.json_response(
                {
                    "id": f"stub-{served.requests}",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }
            )
        finally:
            served.in_flight -= 1
