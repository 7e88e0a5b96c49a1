"""Checkpoints as bytes: the engine's state, pickled and compressed with zstd.

zstd (through pyarrow, as the actions are) packs a million agents' state in a third of the time
zlib took, smaller; checkpoints stored before it, zlib streams, are still read.
"""

from __future__ import annotations

import pickle
import struct
import zlib
from typing import Any

from backend.store.actions import zstd

__all__ = ["decode", "encode"]

_MAGIC = b"MYZ1"  # no zlib stream starts so: its first byte is 0x78 at the levels Python writes
_SIZE = struct.Struct("<Q")  # the pickle's size, which zstd's decompression is given


def encode(state: dict[str, Any]) -> bytes:
    """CPU work for a large run: call it in a thread."""
    data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    return _MAGIC + _SIZE.pack(len(data)) + zstd().compress(data, asbytes=True)


def decode(data: bytes) -> dict[str, Any]:
    """Only for checkpoints this service wrote to its own database (pickle trusts its input)."""
    if not data.startswith(_MAGIC):
        return pickle.loads(zlib.decompress(data))  # stored before checkpoints were zstd
    (size,) = _SIZE.unpack_from(data, len(_MAGIC))
    raw = zstd().decompress(data[len(_MAGIC) + _SIZE.size :], decompressed_size=size, asbytes=True)
    return pickle.loads(raw)
