"""Which secrets and servers a run's language models may use: the operator's choice, not the
spec's. A spec names the environment variable that holds a model's key and the endpoints it calls;
without these limits anyone who may submit a run could send the service's own secrets
(`MYRIAD_TOKEN`, `DATABASE_URL`) as a Bearer key to a server of their choosing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # agents.llm checks keys with `never_a_key`
    from agents.llm import LLMSpec

__all__ = ["LLMAccess", "never_a_key"]

# The service's own secrets: never a model's key, whatever the operator allowed.
_SERVICE_SECRETS = ("MYRIAD_", "RAY_", "DATABASE_URL", "REDIS_URL", "REDIS_PASSWORD", "POSTGRES_")


def never_a_key(variable: str) -> bool:
    """Whether `variable` holds one of the service's own secrets."""
    return variable.upper().startswith(_SERVICE_SECRETS)


def _names(text: str | None) -> frozenset[str]:
    return frozenset(filter(None, (part.strip() for part in (text or "").split(","))))


@dataclass(frozen=True)
class LLMAccess:
    """`keys`: the environment variables a spec may name as `api_key_env`; `endpoints`: the hosts
    (`host` or `host:port`) its endpoints may be on, or None for any."""

    keys: frozenset[str] = frozenset()
    endpoints: frozenset[str] | None = None

    @classmethod
    def of(cls, keys: str | None, endpoints: str | None) -> LLMAccess:
        """From the operator's comma-separated settings (`MYRIAD_LLM_KEYS`, `MYRIAD_LLM_ENDPOINTS`)."""
        hosts = _names(endpoints.lower()) if endpoints is not None else None
        return cls(keys=_names(keys), endpoints=hosts or None)

    def problems(self, llm: LLMSpec | None) -> list[str]:
        """What `llm` asks that is not allowed, one `path: reason` line each."""
        found = []
        for name, model in (llm.models if llm is not None else {}).items():
            where = f"llm.models.{name}"
            variable = model.api_key_env
            if variable is not None and (never_a_key(variable) or variable not in self.keys):
                allowed = ", ".join(sorted(self.keys)) or "none"
                found.append(
                    f"{where}.api_key_env: {variable} is not a model key the operator allows "
                    f"(MYRIAD_LLM_KEYS: {allowed})"
                )
            if self.endpoints is None:
                continue
            for i, endpoint in enumerate(model.endpoints):
                parts = urlsplit(endpoint.url)
                host = (parts.hostname or "").lower()
                if host not in self.endpoints and f"{host}:{parts.port}" not in self.endpoints:
                    found.append(
                        f"{where}.endpoints.{i}.url: {host} is not among the endpoints the operator "
                        f"allows (MYRIAD_LLM_ENDPOINTS: {', '.join(sorted(self.endpoints))})"
                    )
        return found
