"""Every setting of the service, read from the environment (or a `.env` file).

The embedded default needs none: a SQLite file in the working folder, a Redis-protocol server
started by the service, and a local Ray cluster.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.llm_access import LLMAccess

__all__ = ["MIN_TOKEN_LENGTH", "Settings"]

MIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    """Settings; the three shared with other tools keep their usual names, the rest are MYRIAD_*."""

    model_config = SettingsConfigDict(
        env_prefix="MYRIAD_", env_file=".env", env_ignore_empty=True, extra="ignore", populate_by_name=True
    )

    database_url: str = Field(
        "sqlite+aiosqlite:///myriad.db",
        validation_alias="DATABASE_URL",
        description="SQLAlchemy URL; postgresql:// URLs use asyncpg",
    )
    redis_url: str | None = Field(
        None, validation_alias="REDIS_URL", description="None: start an embedded Redis-protocol server"
    )
    ray_address: str | None = Field(
        None, validation_alias="RAY_ADDRESS", description="None: start a local Ray cluster"
    )
    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    lease_seconds: float = Field(
        30.0, gt=0, description="a run whose worker is silent this long is taken over"
    )
    poll_seconds: float = Field(1.0, gt=0, description="how often an idle worker looks for runs")
    worker_runs: int = Field(
        4, ge=1, le=64, description="runs a worker drives at once (an experiment's `max_parallel`)"
    )
    events_kept: int = Field(10_000, ge=100, description="events kept per run in the live stream")
    checkpoints_kept: int = Field(2, ge=1, description="checkpoints kept per run in the database")
    live_outage_seconds: float = Field(
        60.0, ge=0, description="how long a run waits for the live layer (Redis) to come back"
    )
    store_outage_seconds: float = Field(
        60.0, ge=0, description="how long a run waits for the database to come back"
    )
    token: str | None = Field(
        None,
        validation_alias="MYRIAD_TOKEN",
        description="API and dashboard token; None: one is made at start",
    )
    secret_key: str | None = Field(
        None, description="signs dashboard sessions; default: derived from the token"
    )
    secure_cookies: bool | Literal["auto"] = Field(
        "auto",
        description="mark the session cookie Secure (HTTPS only); auto: when the request came over "
        "HTTPS, directly or through a proxy trusted by forwarded_allow_ips",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1,::1",
        description="proxies (comma-separated addresses or networks, * for any) whose X-Forwarded-For "
        "and X-Forwarded-Proto `myriad serve` believes: the client's address and scheme",
    )
    sign_in_failures: int = Field(
        10,
        ge=1,
        le=1_000_000,
        description="failed sign-ins (dashboard or API token) an address may make a minute before it "
        "is refused (429)",
    )
    llm_keys: str = Field(
        "",
        max_length=10_000,
        description="environment variables a run spec may name as a model's api_key_env, comma-separated "
        "(never MYRIAD_*, RAY_*, DATABASE_URL, REDIS_URL)",
    )
    llm_endpoints: str | None = Field(
        None,
        max_length=10_000,
        description="hosts (host or host:port) model endpoints may be on, comma-separated; None: any",
    )
    cors_origins: str = Field(
        "", max_length=10_000, description="origins allowed to call the API from a browser, comma-separated"
    )
    log_level: str = Field(
        "WARNING", pattern="(?i)^(debug|info|warning|error|critical)$", description="the least `myriad` logs"
    )
    serve_worker: bool | None = Field(
        None,
        description="`myriad serve` starts a `myriad worker` process beside it, which drives the runs "
        "(stopped with it); default: on SQLite yes, on Postgres no (workers run on their own)",
    )

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        """Accept plain postgresql:// and sqlite:// URLs and use the async drivers for them."""
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url.removeprefix(plain)
        return url

    @field_validator("token")
    @classmethod
    def _strong_token(cls, token: str | None) -> str | None:
        if token is not None and len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"MYRIAD_TOKEN has {len(token)} characters, fewer than {MIN_TOKEN_LENGTH}: choose a longer "
                "one (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`), or leave it "
                "unset to have one made at each start"
            )
        return token

    def _beside_database(self, suffix: str) -> Path:
        """A file beside the SQLite file (myriad.db.live), or in the working folder on Postgres."""
        if self.database_url.startswith("sqlite"):
            path = self.database_url.split(":///", 1)[-1]
            if path and path != ":memory:":
                return Path(path).with_name(Path(path).name + suffix)
        return Path("myriad" + suffix)

    @property
    def live_announce(self) -> Path:
        """Where the process that starts the embedded Redis-protocol server writes its URL: beside
        the SQLite file, so every `myriad` command on that database finds the same server."""
        return self._beside_database(".live")

    @property
    def token_file(self) -> Path:
        """Where `myriad serve` keeps a token it made, when its output is not a terminal (so the
        token never reaches collected logs): readable by its user only."""
        return self._beside_database(".token")

    @property
    def llm_access(self) -> LLMAccess:
        return LLMAccess.of(self.llm_keys, self.llm_endpoints)

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    @property
    def serve_starts_worker(self) -> bool:
        return self.serve_worker if self.serve_worker is not None else not self.is_postgres
