"""Placement: which hosts run on which Ray node, and which agents each host holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.apportion import largest_remainder

__all__ = ["Node", "Slot", "alive_nodes", "plan"]


@dataclass(frozen=True, slots=True)
class Node:
    """A Ray node that can host agents."""

    node_id: str
    address: str
    cpus: float
    gpus: float
    memory_bytes: int

    @classmethod
    def from_ray(cls, entry: dict[str, Any]) -> Node:
        resources = entry.get("Resources", {})
        return cls(
            node_id=entry["NodeID"],
            address=entry.get("NodeManagerAddress", ""),
            cpus=float(resources.get("CPU", 0)),
            gpus=float(resources.get("GPU", 0)),
            memory_bytes=int(resources.get("memory", 0)),
        )


@dataclass(frozen=True, slots=True)
class Slot:
    """One host to start: its index, its node and the agents it holds."""

    index: int
    node_id: str
    ids: range


def alive_nodes() -> list[Node]:
    """The cluster's alive nodes that have CPUs, in a stable order."""
    import ray  # here: the service's readers (the API, `myriad runs`) import this module without Ray

    nodes = [Node.from_ray(n) for n in ray.nodes() if n.get("Alive")]
    return sorted((n for n in nodes if n.cpus > 0), key=lambda n: n.node_id)


def plan(
    nodes: Sequence[Node], agents: int, hosts: int | None = None, busy: Mapping[str, int] | None = None
) -> list[Slot]:
    """Spread `hosts` hosts over `nodes` in proportion to their free CPUs, and `agents` over the
    hosts.

    A node's free CPUs are its CPUs less the hosts other runs keep on it (`busy`, by node id), so
    a node that just joined takes the most; when no CPU is free, all count again. By default there
    is one host per CPU. Each host holds a contiguous range of agent ids.
    """
    if not nodes:
        raise RuntimeError("the Ray cluster has no alive node with CPUs")
    if agents < 1:
        raise ValueError("a run needs at least one agent")
    if hosts is None:
        hosts = max(1, round(sum(n.cpus for n in nodes)))
    hosts = min(hosts, agents)
    busy = busy or {}
    free = [max(n.cpus - busy.get(n.node_id, 0), 0) for n in nodes]
    per_node = largest_remainder(hosts, free if sum(free) > 0 else [n.cpus for n in nodes])
    sizes = largest_remainder(agents, [1] * hosts)
    slots: list[Slot] = []
    start = 0
    for node, count in zip(nodes, per_node, strict=True):
        for _ in range(count):
            size = sizes[len(slots)]
            slots.append(Slot(len(slots), node.node_id, range(start, start + size)))
            start += size
    return slots
