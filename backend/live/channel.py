"""Live state and events over the Redis protocol (redis-py's asyncio client): the fast path.

Keys, per run:
- `myriad:run:{id}:state`    hash: status, round, rounds, agents done / failed, updated time
- `myriad:run:{id}:hosts`    JSON list of host stats, expiring if nobody refreshes it
- `myriad:run:{id}:events`   stream of events, trimmed to the newest `events_kept`: the fast
                             path (the database keeps every event, and the commands)
- `myriad:run:{id}:commands` how many commands were sent to the run: a hint that spares its
                             worker a read of the command log at every round boundary
and `myriad:cluster:nodes`, the Ray nodes as the workers last saw them,
`myriad:worker:{id}`, each live worker's presence (expiring unless the worker renews it), and
`myriad:survey:{id}`, the presence of the process asking a survey (the same).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.typing import EncodableT, FieldT

__all__ = ["LiveChannel", "redacted"]


def redacted(url: str | None) -> str:
    """`url` without its password, for log lines and reprs."""
    if not url:
        return str(url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _key(run_id: int, part: str) -> str:
    return f"myriad:run:{run_id}:{part}"


def _text(value: bytes | str) -> str:
    # The client decodes replies (decode_responses=True), which redis-py's types cannot follow.
    return value if isinstance(value, str) else value.decode()


def _event(entry: tuple[str, dict[str, str]]) -> tuple[str, dict[str, Any]]:
    event_id, fields = entry
    event: dict[str, Any] = dict(fields)
    event["payload"] = json.loads(event["payload"])
    event["round"] = int(event["round"])
    event["time"] = float(event["time"])
    return event_id, event


class LiveChannel:
    """What is happening now in every run.

    Args:
        url: a redis:// URL (a real Redis, or the embedded server).
        events_kept: newest events kept per run; older ones are trimmed.
    """

    def __init__(self, url: str, *, events_kept: int = 10_000) -> None:
        self.url = url
        self.events_kept = events_kept
        # A connection the pool kept from before a restart of the server fails once when next
        # used: one retry, on a new connection, hides that; a server still away fails it again,
        # and the caller waits the outage out (workflow.outage).
        self.redis = Redis.from_url(
            url, decode_responses=True, retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError]
        )

    def __repr__(self) -> str:
        return f"LiveChannel({redacted(self.url)!r})"

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    # -- state --------------------------------------------------------------------------------

    async def set_state(self, run_id: int, **fields: Any) -> None:
        fields["updated"] = time.time()
        await self.redis.hset(_key(run_id, "state"), mapping={k: json.dumps(v) for k, v in fields.items()})

    async def state(self, run_id: int) -> dict[str, Any]:
        raw = await self.redis.hgetall(_key(run_id, "state"))
        return {_text(k): json.loads(v) for k, v in raw.items()}

    async def states(self, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The states of these runs, by run id, in one round trip (a page of the runs list)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hgetall(_key(run_id, "state"))
            replies = await pipe.execute()
        return {
            run_id: {_text(k): json.loads(v) for k, v in raw.items()}
            for run_id, raw in zip(run_ids, replies, strict=True)
        }

    async def state_field(self, field: str) -> dict[int, Any]:
        """One field of every run's state that has it, by run id (one round trip per 500 runs)."""
        found: dict[int, Any] = {}
        keys = [key async for key in self.redis.scan_iter(match="myriad:run:*:state", count=500)]
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.hget(key, field)
                values = await pipe.execute()
            found.update(
                {int(k.split(":")[2]): json.loads(v) for k, v in zip(chunk, values, strict=True) if v}
            )
        return found

    async def set_hosts(self, run_id: int, hosts: Sequence[Mapping[str, Any]], ttl: float = 60) -> None:
        await self.redis.set(_key(run_id, "hosts"), json.dumps(hosts), px=int(ttl * 1000))

    async def hosts(self, run_id: int) -> list[dict[str, Any]]:
        raw = await self.redis.get(_key(run_id, "hosts"))
        return json.loads(raw) if raw else []

    async def set_nodes(self, nodes: list[Mapping[str, Any]], ttl: float = 60) -> None:
        """The Ray nodes a worker sees; expires when no worker is left to refresh it."""
        await self.redis.set("myriad:cluster:nodes", json.dumps(nodes), px=int(ttl * 1000))

    async def nodes(self) -> list[dict[str, Any]]:
        raw = await self.redis.get("myriad:cluster:nodes")
        return json.loads(raw) if raw else []

    async def set_worker(self, worker: str, info: Mapping[str, Any], ttl: float) -> None:
        """Say that `worker` is alive (and what it does) for the next `ttl` seconds."""
        await self.redis.set(f"myriad:worker:{worker}", json.dumps(info), px=int(ttl * 1000))

    async def forget_worker(self, worker: str) -> None:
        await self.redis.delete(f"myriad:worker:{worker}")

    async def workers(self) -> list[dict[str, Any]]:
        """The workers that said lately that they are alive, with what they said."""
        keys = [key async for key in self.redis.scan_iter(match="myriad:worker:*", count=500)]
        values = await self.redis.mget(keys) if keys else []
        return [json.loads(v) for v in values if v]

    async def set_survey_asked(self, survey_id: int, ttl: float) -> None:
        """Say that a process is asking survey `survey_id` for the next `ttl` seconds."""
        await self.redis.set(f"myriad:survey:{survey_id}", 1, px=int(ttl * 1000))

    async def surveys_asked(self, survey_ids: Sequence[int]) -> set[int]:
        """Which of these surveys a process said lately that it is asking."""
        values = await self.redis.mget([f"myriad:survey:{i}" for i in survey_ids]) if survey_ids else []
        return {i for i, v in zip(survey_ids, values, strict=True) if v}

    async def all_hosts(self) -> dict[int, list[dict[str, Any]]]:
        """The hosts of every run that reported some lately, by run id."""
        keys = [_text(key) async for key in self.redis.scan_iter(match="myriad:run:*:hosts", count=500)]
        found: dict[int, list[dict[str, Any]]] = {}
        for start in range(0, len(keys), 500):  # one MGET per 500 runs, not one GET per run
            chunk = keys[start : start + 500]
            values = await self.redis.mget(chunk)
            for key, raw in zip(chunk, values, strict=True):
                if raw:  # expired since the scan
                    found[int(key.split(":")[2])] = json.loads(raw)
        return found

    # -- commands -----------------------------------------------------------------------------

    async def command_sent(self, run_id: int) -> None:
        """Say a command was added to the run's log (after it was committed)."""
        await self.redis.incr(_key(run_id, "commands"))

    async def commands_sent(self, run_id: int) -> int:
        """How many commands were said to be sent to the run (0 for none, or after a restart)."""
        return int(await self.redis.get(_key(run_id, "commands")) or 0)

    # -- events -------------------------------------------------------------------------------

    async def emit(self, run_id: int, kind: str, round: int, payload: Mapping[str, Any] | None = None) -> str:
        """Append an event to the run's stream; returns its stream id."""
        entry: dict[FieldT, EncodableT] = {"kind": kind, "round": round, "time": time.time()}
        entry["payload"] = json.dumps(payload or {})
        events = _key(run_id, "events")
        return _text(await self.redis.xadd(events, entry, maxlen=self.events_kept, approximate=True))

    async def events(
        self, run_id: int, *, after: str = "0-0", block_ms: int | None = None, count: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after stream id `after` (waiting up to `block_ms` for one, when given)."""
        replies = await self.redis.xread({_key(run_id, "events"): after}, count=count, block=block_ms)
        # RESP2, the protocol the client speaks, answers [[stream, [(id, fields), ...]], ...].
        streams = cast("list[list[Any]]", replies or [])
        return [_event(entry) for _, entries in streams for entry in entries]

    async def wait_for_event(self, run_id: int, timeout: float) -> None:
        """Return when the run's stream gets a new event, or after `timeout` seconds."""
        await self.redis.xread({_key(run_id, "events"): "$"}, count=1, block=max(1, int(timeout * 1000)))

    async def forget(self, run_id: int) -> None:
        """Drop everything live about a run (after it is deleted)."""
        await self.redis.delete(*(_key(run_id, part) for part in ("state", "hosts", "events", "commands")))
