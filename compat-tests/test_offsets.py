"""ListOffsets: earliest/latest, by timestamp (CreateTime) and max timestamp."""

from __future__ import annotations

import time

import confluent_kafka
import kafka
import pytest
from confluent_kafka.admin import OffsetSpec as CkOffsetSpec
from kafka.admin import OffsetSpec as KpOffsetSpec

import kafka_wire
from helpers import (
    KAFKA_PYTHON, Rec, ck_admin, ck_consumer, ck_result, create_topic, kp_admin, kp_consumer, produce,
)

BASE_TS = int(time.time() * 1000) - 3_600_000  # an hour ago: inside any timestamp-skew limit


def produce_one_batch(broker, topic: str, records: list[Rec], codec: str | None = None) -> None:
    produce(KAFKA_PYTHON, broker, topic, records, linger_ms=200, compression_type=codec)
    batches = kafka_wire.stored_batches(broker.host, broker.port, topic)
    assert len(batches) == 1, f"test setup: expected one batch, got {len(batches)}"


def produce_separate_batches(broker, topic: str, records: list[Rec]) -> None:
    for rec in records:
        produce(KAFKA_PYTHON, broker, topic, [rec])
    assert len(kafka_wire.stored_batches(broker.host, broker.port, topic)) == len(records)


def test_beginning_and_end_offsets(broker):
    topic = create_topic(broker, partitions=3)
    tps = [kafka.TopicPartition(topic, p) for p in range(3)]
    with kp_consumer(broker) as consumer:
        assert consumer.beginning_offsets(tps) == {tp: 0 for tp in tps}
        assert consumer.end_offsets(tps) == {tp: 0 for tp in tps}

    counts = {0: 5, 1: 0, 2: 12}
    produce(KAFKA_PYTHON, broker, topic,
            [Rec(b"k", b"v", partition=p) for p, n in counts.items() for _ in range(n)])
    with kp_consumer(broker) as consumer:
        assert consumer.beginning_offsets(tps) == {tp: 0 for tp in tps}
        assert consumer.end_offsets(tps) == {tp: counts[tp.partition] for tp in tps}

    with ck_consumer(broker) as consumer:
        for p, n in counts.items():
            assert consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p), timeout=10) == (0, n)


def test_earliest_latest_confluent_admin(broker):
    topic = create_topic(broker)
    produce(KAFKA_PYTHON, broker, topic, [Rec(b"k", b"v")] * 7)
    tp = confluent_kafka.TopicPartition(topic, 0)
    admin = ck_admin(broker)
    assert ck_result(admin.list_offsets({tp: CkOffsetSpec.earliest()})[tp]).offset == 0
    assert ck_result(admin.list_offsets({tp: CkOffsetSpec.latest()})[tp]).offset == 7


@pytest.mark.parametrize("codec", [None, "gzip"])
def test_offsets_for_times_kafka_python(broker, codec):
    """The answer is the first record with timestamp >= target, even inside a
    (compressed) batch."""
    topic = create_topic(broker)
    produce_one_batch(broker, topic, [Rec(b"k", b"%d" % i, timestamp_ms=BASE_TS + 1000 * i) for i in range(10)],
                      codec)
    tp = kafka.TopicPartition(topic, 0)
    with kp_consumer(broker) as consumer:
        def lookup(ts):
            found = consumer.offsets_for_times({tp: ts})[tp]
            return None if found is None else (found.offset, found.timestamp)
        assert lookup(BASE_TS - 5000) == (0, BASE_TS)
        assert lookup(BASE_TS) == (0, BASE_TS)
        assert lookup(BASE_TS + 2500) == (3, BASE_TS + 3000)
        assert lookup(BASE_TS + 3000) == (3, BASE_TS + 3000)
        assert lookup(BASE_TS + 9000) == (9, BASE_TS + 9000)
        assert lookup(BASE_TS + 9001) is None  # past the last timestamp


def test_offsets_for_times_confluent(broker):
    topic = create_topic(broker)
    produce_separate_batches(broker, topic, [Rec(b"k", b"%d" % i, timestamp_ms=BASE_TS + 1000 * i)
                                             for i in range(5)])
    with ck_consumer(broker) as consumer:
        def lookup(ts):
            (found,) = consumer.offsets_for_times([confluent_kafka.TopicPartition(topic, 0, ts)], timeout=10)
            assert found.error is None
            return found.offset
        assert lookup(BASE_TS - 1) == 0
        assert lookup(BASE_TS + 1500) == 2
        assert lookup(BASE_TS + 4000) == 4
        assert lookup(BASE_TS + 4001) == confluent_kafka.OFFSET_END  # -1: no such record

    tp = confluent_kafka.TopicPartition(topic, 0)
    admin = ck_admin(broker)
    found = ck_result(admin.list_offsets({tp: CkOffsetSpec.for_timestamp(BASE_TS + 2200)})[tp])
    assert (found.offset, found.timestamp) == (3, BASE_TS + 3000)


MAX_TS_TIMESTAMPS = [BASE_TS + 1000, BASE_TS + 5000, BASE_TS + 3000, BASE_TS + 2000]


def assert_max_timestamp(broker, topic: str, offset: int, timestamp: int) -> None:
    kp_tp = kafka.TopicPartition(topic, 0)
    with kp_admin(broker) as admin:
        found = admin.list_partition_offsets({kp_tp: KpOffsetSpec.MAX_TIMESTAMP})[kp_tp]
    assert (found.offset, found.timestamp) == (offset, timestamp)

    ck_tp = confluent_kafka.TopicPartition(topic, 0)
    admin = ck_admin(broker)
    found = ck_result(admin.list_offsets({ck_tp: CkOffsetSpec.max_timestamp()})[ck_tp])
    assert (found.offset, found.timestamp) == (offset, timestamp)


def test_max_timestamp_across_batches(broker):
    topic = create_topic(broker)
    produce_separate_batches(broker, topic, [Rec(b"k", b"v", timestamp_ms=ts) for ts in MAX_TS_TIMESTAMPS])
    assert_max_timestamp(broker, topic, 1, BASE_TS + 5000)


def test_max_timestamp_inside_one_batch(broker):
    """Kafka >= 3.8 (KAFKA-16310) returns the offset of the record carrying the
    max timestamp, not the batch's last offset."""
    topic = create_topic(broker)
    produce_one_batch(broker, topic, [Rec(b"k", b"v", timestamp_ms=ts) for ts in MAX_TS_TIMESTAMPS])
    assert_max_timestamp(broker, topic, 1, BASE_TS + 5000)


def test_max_timestamp_of_empty_partition(broker):
    topic = create_topic(broker)
    assert_max_timestamp(broker, topic, -1, -1)
