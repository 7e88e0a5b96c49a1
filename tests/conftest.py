"""Shared factories for specs and agents."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agents.spec import RunSpec

BASE_SPEC: dict[str, Any] = {
    "name": "test",
    "scenario": {"name": "guess_two_thirds", "params": {"ratio": "2/3", "max_value": 100}},
    "rounds": 3,
    "seed": 11,
    "population": {
        "total": 1000,
        "attributes": {"gender": {"female": 50, "male": 50}, "education": {"school": 60, "university": 40}},
        "kinds": [
            {"kind": "level_k", "share": 20, "params": {"k": 0}},
            {"kind": "level_k", "share": 30, "params": {"k": 1}},
            {"kind": "level_k", "share": 20, "params": {"k": 2}},
            {"kind": "adaptive", "share": 20},
            {"kind": "uniform", "share": 10},
        ],
    },
}


def spec_data(**changes: Any) -> dict[str, Any]:
    """The base spec as data, with `changes` applied; keys use dots for nesting
    (`spec_data(**{"population.total": 5})`)."""
    data = copy.deepcopy(BASE_SPEC)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        target = data
        for key in parents:
            target = target.setdefault(key, {}) if isinstance(target, dict) else target[int(key)]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return data


@pytest.fixture
def make_spec():
    def make(**changes: Any) -> RunSpec:
        return RunSpec.parse(spec_data(**changes))

    return make
