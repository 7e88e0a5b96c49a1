"""Whether a run fits a cluster, checked before it is queued: a spec of a hundred million agents
on ten thousand hosts is refused with the numbers, not left to exhaust the nodes' memory."""

from __future__ import annotations

from collections.abc import Sequence

from agents.apportion import largest_remainder
from agents.columnar import columns_of
from agents.kinds import KINDS
from agents.placement import Node
from agents.spec import KindShare, RunSpec

__all__ = ["HOSTS_PER_CPU", "HOST_BYTES", "DoesNotFit", "problems"]

HOSTS_PER_CPU = 4  # hosts are busy processes: more than a few per CPU only contend
HOST_BYTES = 100 * 2**20  # an AgentHost actor's own process, before its agents (measured: ~85 MiB)


class DoesNotFit(ValueError):
    """A run too big for the cluster it would run on; the message has the numbers."""


def _gb(size: float) -> str:
    return f"{size / 1e9:,.1f} GB"


def _footprint(kind: KindShare, personas: bool) -> int:
    """Bytes per agent of `kind`: its columns' where the host steps it so (see `columns_of`)."""
    cls = KINDS.get(kind.kind)
    columns = columns_of(cls, cls.Params.model_validate(kind.params), personas)
    return cls.footprint if columns is None else columns.footprint


def problems(spec: RunSpec, nodes: Sequence[Node]) -> list[str]:
    """What about `spec` cannot fit `nodes`, one `path: reason` line each; none when no node is
    known (no worker has reported the cluster yet: its worker checks again when it places)."""
    if not nodes:
        return []
    cpus = sum(n.cpus for n in nodes)
    memory = sum(n.memory_bytes for n in nodes)
    cluster = f"the cluster has {len(nodes)} node{'s' * (len(nodes) != 1)} with {cpus:g} CPUs"
    found = []
    hosts = spec.placement.hosts or max(1, int(cpus))
    if hosts > cpus * HOSTS_PER_CPU:
        found.append(f"placement.hosts: {hosts:,} hosts is more than {HOSTS_PER_CPU} per CPU; {cluster}")
    population = spec.population
    counts = largest_remainder(population.total, [k.share for k in population.kinds])
    need = min(hosts, population.total) * HOST_BYTES + sum(
        count * _footprint(k, population.persona is not None)
        for count, k in zip(counts, population.kinds, strict=True)
    )
    if need > memory:
        found.append(
            f"population.total: {population.total:,} agents on {hosts:,} hosts need about {_gb(need)} "
            f"of memory; {cluster} and {_gb(memory)}"
        )
    return found
