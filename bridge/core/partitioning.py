"""Kafka's default key partitioning (murmur2, as the Java client computes it), faster.

Records with the same key must land where every other Kafka producer puts them, so the
hash is Kafka's own; this version reads the input four bytes at a time with ``struct``,
about twice as fast as aiokafka's byte-by-byte loop, which is on the per-event path.
"""

from __future__ import annotations

import functools
import random
import struct
from collections.abc import Sequence
from typing import Final

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF
_WORDS: dict[int, struct.Struct] = {}


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` (``org.apache.kafka.common.utils.Utils.murmur2``)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    words = length >> 2
    if words:
        unpack = _WORDS.get(words)
        if unpack is None:
            unpack = struct.Struct(f"<{words}I")
            if len(_WORDS) < 256:
                _WORDS[words] = unpack
        for k in unpack.unpack_from(data):
            k = (k * _M) & _MASK
            k ^= k >> 24
            h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = length & 3
    if tail:
        base = length & ~3
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(
    key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
) -> int:
    """The partition Kafka's default partitioner picks; a random available one without a key."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[(_cached_murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]


# The events of one learner share a key, and a learner's events come in bursts: a hit
# costs a tenth of hashing again. Bounded, at a few hundred bytes an entry.
_cached_murmur2: Final = functools.lru_cache(maxsize=8192)(murmur2)
