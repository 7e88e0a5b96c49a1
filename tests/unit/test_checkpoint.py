"""Checkpoints as bytes: what is encoded is decoded, and those stored before zstd still read."""

import pickle
import zlib

import numpy as np

from backend.workflow import checkpoint


def state() -> dict:
    rng = np.random.default_rng(5)
    columns = {4: {"k": rng.integers(0, 4, 100_000)}}
    return {"round": 7, "scenario": {"last": {"avg": 31.5}}, "columns": columns}


def same(a: dict, b: dict) -> bool:
    return pickle.dumps(a) == pickle.dumps(b)


def test_a_checkpoint_reads_back_as_it_was_written():
    written = state()
    data = checkpoint.encode(written)
    assert data.startswith(b"MYZ1")
    assert len(data) < len(pickle.dumps(written)) / 4  # compressed
    assert same(checkpoint.decode(data), written)


def test_a_checkpoint_stored_before_zstd_still_reads():
    written = state()
    stored = zlib.compress(pickle.dumps(written, protocol=pickle.HIGHEST_PROTOCOL), 1)  # the old encoding
    assert same(checkpoint.decode(stored), written)
