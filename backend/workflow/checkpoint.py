"""Checkpoints as bytes: the engine's state, pickled and compressed."""

from __future__ import annotations

import pickle
import zlib
from typing import Any

__all__ = ["decode", "encode"]


def encode(state: dict[str, Any]) -> bytes:
    # Level 1: most of the gain for a fraction of the time; checkpoints are written often.
    return zlib.compress(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), 1)


def decode(data: bytes) -> dict[str, Any]:
    """Only for checkpoints this service wrote to its own database (pickle trusts its input)."""
    return pickle.loads(zlib.decompress(data))
