"""Every setting of the service, read from the environment (or a `.env` file).

The embedded default needs none: a SQLite file in the working folder, a Redis-protocol server
started by the service, and a local Ray cluster.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


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
    secure_cookies: bool = Field(False, description="send the session cookie over HTTPS only")
    log_level: str = Field(
        "WARNING", pattern="(?i)^(debug|info|warning|error|critical)$", description="the least `myriad` logs"
    )
    in_process_worker: bool | None = Field(
        None, description="drive runs inside `myriad serve`; default: on SQLite yes, on Postgres no"
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

    @property
    def live_announce(self) -> Path:
        """Where the process that starts the embedded Redis-protocol server writes its URL: beside
        the SQLite file, so every `myriad` command on that database finds the same server."""
        if self.database_url.startswith("sqlite"):
            path = self.database_url.split(":///", 1)[-1]
            if path and path != ":memory:":
                return Path(path).with_name(Path(path).name + ".live")
        return Path("myriad.live")

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    @property
    def runs_worker_in_process(self) -> bool:
        return self.in_process_worker if self.in_process_worker is not None else not self.is_postgres
