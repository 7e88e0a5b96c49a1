import pytest

from agents.placement import Node, plan


def node(name: str, cpus: float) -> Node:
    return Node(name, "127.0.0.1", cpus, 0, 0)


def test_one_host_per_cpu_by_default_in_proportion():
    slots = plan([node("a", 4), node("b", 2)], agents=600)
    assert [s.node_id for s in slots] == ["a"] * 4 + ["b"] * 2


def test_agents_are_split_in_contiguous_ranges_covering_everyone():
    slots = plan([node("a", 1), node("b", 1), node("c", 1)], agents=10, hosts=3)
    assert [s.ids for s in slots] == [range(0, 4), range(4, 7), range(7, 10)]
    assert {s.node_id for s in slots} == {"a", "b", "c"}


def test_more_hosts_than_cpus_share_the_node():
    slots = plan([node("a", 2), node("b", 6)], agents=100, hosts=8)
    assert [s.node_id for s in slots] == ["a"] * 2 + ["b"] * 6


def test_never_more_hosts_than_agents():
    assert len(plan([node("a", 8)], agents=3)) == 3


def test_an_empty_cluster_is_an_error():
    with pytest.raises(RuntimeError, match="no alive node"):
        plan([], agents=10)


def test_placement_goes_by_free_cpus():
    nodes = [Node("a", "10.0.0.1", 4, 0, 1), Node("b", "10.0.0.2", 4, 0, 1), Node("c", "10.0.0.3", 4, 0, 1)]
    # a and b carry other runs' hosts; c has just joined and takes the most
    slots = plan(nodes, 1_200, hosts=6, busy={"a": 3, "b": 2})
    placed = [s.node_id for s in slots]
    assert {n: placed.count(n) for n in "abc"} == {"a": 1, "b": 2, "c": 3}  # free CPUs 1 : 2 : 4
    assert sum(len(s.ids) for s in slots) == 1_200
    saturated = plan(nodes, 300, hosts=3, busy={"a": 9, "b": 9, "c": 9})
    assert [s.node_id for s in saturated] == ["a", "b", "c"]  # nothing free: all count again
