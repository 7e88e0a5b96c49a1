import pytest

from agents.apportion import largest_remainder


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [
        (10, [50, 30, 20], [5, 3, 2]),
        (7, [1, 1, 1], [3, 2, 2]),
        (100, [33.3, 33.3, 33.4], [33, 33, 34]),
        (3, [50, 50], [2, 1]),
        (1_000_001, [25, 25, 25, 25], [250_001, 250_000, 250_000, 250_000]),
        (0, [1, 2], [0, 0]),
    ],
)
def test_parts_are_exact_and_add_up(total, weights, expected):
    parts = largest_remainder(total, weights)
    assert parts == expected
    assert sum(parts) == total


def test_largest_fraction_gets_the_leftover():
    # quotas 1.4, 2.6, 1.0 -> floors 1, 2, 1 and the one unit left goes to the 0.6
    assert largest_remainder(5, [1.4, 2.6, 1.0]) == [1, 3, 1]


@pytest.mark.parametrize("weights", [[0, 0], [-1, 2], []])
def test_bad_weights_are_refused(weights):
    with pytest.raises(ValueError, match="weights"):
        largest_remainder(5, weights)
