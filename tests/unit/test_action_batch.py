import numpy as np
import pytest

from agents.core import ActionBatch, Message, narrowest


def test_numeric_payloads_compact_into_one_array():
    ints = ActionBatch(range(3), [1, 2, 3])
    ints.compact()
    assert ints.payloads.dtype == np.int64
    mixed = ActionBatch(range(2), [1, 2.5])
    mixed.compact()
    assert mixed.payloads.dtype == np.float64
    assert mixed.payloads.tolist() == [1.0, 2.5]


@pytest.mark.parametrize("payloads", [[1, None], ["a", 1], [True, 2], [2**70, 1], []])
def test_other_payloads_stay_a_list(payloads):
    batch = ActionBatch(range(len(payloads)), list(payloads))
    batch.compact()
    assert batch.payloads == payloads


def test_concat_joins_adjacent_batches_in_order():
    a = ActionBatch(range(0, 2), [1, 2], errors={1: "x"}, messages=[Message(0, 5, "hi")])
    b = ActionBatch(range(2, 5), ["a", "b", "c"], tokens={3: 9})
    a.compact()
    merged = ActionBatch.concat([a, b])
    assert merged.ids == range(0, 5)
    assert merged.payloads == [1, 2, "a", "b", "c"]
    assert (merged.errors, merged.tokens, merged.failures) == ({1: "x"}, {3: 9}, 1)
    assert merged.messages == [Message(0, 5, "hi")]


def test_concat_of_arrays_stays_an_array():
    parts = [ActionBatch(range(0, 2), [1, 2]), ActionBatch(range(2, 3), [3.5])]
    for p in parts:
        p.compact()
    merged = ActionBatch.concat(parts)
    assert isinstance(merged.payloads, np.ndarray)
    assert merged.payloads.tolist() == [1.0, 2.0, 3.5]


def test_concat_refuses_gaps():
    with pytest.raises(ValueError, match="does not follow"):
        ActionBatch.concat([ActionBatch(range(0, 2), [1, 2]), ActionBatch(range(3, 4), [1])])


def test_hosts_counts_of_the_agents_a_broadcast_reached_add_up():
    parts = [
        ActionBatch(range(0, 2), [1, 2], reached=[2, 0]),
        ActionBatch(range(2, 5), [3, 4, 5], reached=[1, 3]),
    ]
    assert ActionBatch.concat(parts).reached == [3, 3]
    assert ActionBatch.concat([ActionBatch(range(0, 2), [1, 2]), ActionBatch(range(2, 3), [3])]).reached == []


@pytest.mark.parametrize(
    ("values", "given", "narrowed"),
    [
        ([0, 100], "i8", "u1"),
        ([-1, 100], "i8", "i1"),
        ([-1, 200], "i8", "i2"),
        ([0, 2**40], "i8", "i8"),
        ([-1, 2**33], "i8", "i8"),  # numpy's own common type of int8 and uint64 is a float
        ([0, 2**64 - 1], "u8", "u8"),
        ([], "i8", "i8"),
    ],
)
def test_integers_are_narrowed_to_the_smallest_type_that_holds_them(values, given, narrowed):
    found = narrowest(np.array(values, dtype=given))
    assert (found.dtype, found.tolist()) == (np.dtype(narrowed), values)
