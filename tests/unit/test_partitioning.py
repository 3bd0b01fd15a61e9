"""The bridge's murmur2 partitioner picks exactly the partitions Kafka's default one does."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.partitioning import murmur2, partition_for


@settings(max_examples=500, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_murmur2_matches_the_reference_implementation(data: bytes) -> None:
    assert murmur2(data) == reference_murmur2(data)


def test_known_kafka_vectors() -> None:
    # Values from Kafka's own UtilsTest.testMurmur2 (as unsigned 32-bit integers).
    assert murmur2(b"21") & 0xFFFFFFFF == (-973932308) & 0xFFFFFFFF
    assert murmur2(b"foobar") & 0xFFFFFFFF == (-790332482) & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") & 0xFFFFFFFF == (-985981536) & 0xFFFFFFFF


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(min_size=1, max_size=80), st.integers(min_value=1, max_value=64))
def test_keyed_partition_matches_the_default_partitioner(key: bytes, count: int) -> None:
    partitions = list(range(count))

    assert partition_for(key, partitions, partitions) == DefaultPartitioner()(
        key, partitions, partitions
    )


def test_records_without_a_key_go_to_an_available_partition() -> None:
    picks = {partition_for(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)}

    assert picks == {1, 3}
