from collections import Counter

import pytest

from agents.rng import Draws, agent_key, stream_key


def draws(seed: int, agent: int, round: int) -> Draws:
    return Draws(stream_key(agent_key(seed, agent), round))


def test_same_key_gives_same_draws():
    a, b = draws(1, 2, 3), draws(1, 2, 3)
    assert [a.bits() for _ in range(5)] == [b.bits() for _ in range(5)]


@pytest.mark.parametrize(("other"), [(2, 2, 3), (1, 3, 3), (1, 2, 4)])
def test_seed_agent_and_round_each_change_the_stream(other):
    assert draws(1, 2, 3).bits() != draws(*other).bits()


def test_randint_covers_its_range_evenly():
    d = draws(5, 0, 1)
    counts = Counter(d.randint(0, 9) for _ in range(20_000))
    assert set(counts) == set(range(10))
    assert all(1700 < c < 2300 for c in counts.values())


def test_random_and_gauss_have_the_right_moments():
    d = draws(9, 9, 9)
    uniform = [d.random() for _ in range(20_000)]
    assert all(0 <= u < 1 for u in uniform)
    assert abs(sum(uniform) / len(uniform) - 0.5) < 0.01
    normal = [d.gauss(10, 2) for _ in range(20_000)]
    mean = sum(normal) / len(normal)
    var = sum((x - mean) ** 2 for x in normal) / len(normal)
    assert abs(mean - 10) < 0.05
    assert abs(var - 4) < 0.15


def test_randint_refuses_an_empty_range():
    with pytest.raises(ValueError, match="empty range"):
        draws(0, 0, 0).randint(3, 2)


def test_choice_and_python_generator_are_reproducible():
    assert draws(1, 1, 1).choice("abcdef") == draws(1, 1, 1).choice("abcdef")
    assert draws(1, 1, 1).python().random() == draws(1, 1, 1).python().random()
