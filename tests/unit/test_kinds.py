import asyncio
import time

import pytest

from agents.core import Action, AgentContext, Observation, Profile
from agents.kinds import KINDS
from agents.kinds.guessing import Adaptive, AdaptiveParams, EfficiencyProbe, LevelK, LevelKParams, ProbeParams
from agents.registry import UnknownName

PUBLIC = {"max_value": 100, "ratio": 2 / 3, "last": None}


def agent(cls, params, agent_id: int = 0):
    return cls(Profile(agent_id, "a", "k", {}, ""), AgentContext(seed=3, params=params))


@pytest.mark.parametrize(("k", "expected"), [(1, 33), (2, 22), (3, 15)])
def test_level_k_best_responds_to_level_k_minus_one(k, expected):
    a = agent(LevelK, LevelKParams(k=k))
    assert a.decide(Observation(1, PUBLIC)).payload == expected


def test_level_0_answers_at_random_within_range():
    answers = {agent(LevelK, LevelKParams(k=0), i).decide(Observation(1, PUBLIC)).payload for i in range(200)}
    assert len(answers) > 50
    assert all(0 <= a <= 100 for a in answers)


def test_adaptive_moves_toward_last_target():
    a = agent(Adaptive, AdaptiveParams(rate=0.5))
    first = a.decide(Observation(1, PUBLIC)).payload
    second = a.decide(Observation(2, {**PUBLIC, "last": {"win": 10.0}})).payload
    assert second == round(first + 0.5 * (10 - first))
    assert a.get_state() == second


def test_adaptive_without_results_keeps_guessing_at_random():
    a = agent(Adaptive, AdaptiveParams())
    answers = {a.decide(Observation(r, PUBLIC)).payload for r in range(1, 30)}
    assert len(answers) > 5


def test_probe_waits_then_answers():
    """Each probe waits its delay, and waiting probes overlap: 20 of them together take about one
    delay (neither none, nor twenty)."""
    probes = [agent(EfficiencyProbe, ProbeParams(delay=0.3), i) for i in range(20)]
    assert not any(p.synchronous for p in probes)

    async def round_of_probes() -> list[Action]:
        return await asyncio.gather(*(p.act(Observation(1, PUBLIC)) for p in probes))

    started = time.monotonic()
    actions = asyncio.run(round_of_probes())
    took = time.monotonic() - started
    assert 0.3 <= took < 2.0, f"20 probes of 0.3 s took {took:.2f} s"
    assert all(0 <= a.payload <= 100 for a in actions)


def test_kinds_are_found_by_name_and_unknown_ones_are_listed():
    assert KINDS.get("level_k") is LevelK
    with pytest.raises(UnknownName, match=r"known: adaptive, level_k, llm_guess, llm_social, .*uniform"):
        KINDS.get("oracle")
