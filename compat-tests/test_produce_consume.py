"""Produce and Fetch round trips with kafka-python and confluent-kafka.

Consumers use manual assignment only (no consumer groups).
"""

from __future__ import annotations

import os
import time

import confluent_kafka
import kafka
import kafka.errors as kerr
import pytest
from confluent_kafka import KafkaError

from helpers import (
    CODECS, CONFLUENT, DEFAULT_MAX_MESSAGE_BYTES, KAFKA_PYTHON, LIB_PAIRS, LIBS, Rec,
    assert_stored_codec, ck_consumer, ck_error_code, consume, content, create_topic, end_offsets,
    kp_consumer, produce, sample_records, wait_until,
)


def compression_config(lib: str, codec: str | None) -> dict:
    """Producer settings for ``codec`` with enough lingering to batch records."""
    if lib == KAFKA_PYTHON:
        return {"compression_type": codec, "linger_ms": 50}
    return {"compression.type": codec or "none", "linger.ms": 50}


def acks_config(lib: str, acks: str) -> dict:
    if lib == KAFKA_PYTHON:
        # kafka-python 3 is idempotent by default, which requires acks=all.
        return {"acks": acks if acks == "all" else int(acks), "enable_idempotence": acks == "all"}
    return {"acks": acks}


def large_record_config(lib: str) -> dict:
    """Lift the producers' own size limits so that the broker is the one to judge."""
    if lib == KAFKA_PYTHON:
        # A single-record batch rejected with MESSAGE_TOO_LARGE is not split or
        # retried; non-idempotent so the error stays local to that record.
        return {"max_request_size": 4 * 1024 * 1024, "enable_idempotence": False}
    return {"message.max.bytes": 4 * 1024 * 1024}


def assert_rejected_as_too_large(lib: str, broker, topic: str, value: bytes) -> None:
    if lib == KAFKA_PYTHON:
        with pytest.raises(kerr.MessageSizeTooLargeError):
            produce(lib, broker, topic, [Rec(None, value)], **large_record_config(lib))
    else:
        with pytest.raises(confluent_kafka.KafkaException) as info:
            produce(lib, broker, topic, [Rec(None, value)], **large_record_config(lib))
        assert ck_error_code(info.value) == KafkaError.MSG_SIZE_TOO_LARGE


# --------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("codec", [None, *CODECS])
@pytest.mark.parametrize("producer_lib,consumer_lib", LIB_PAIRS)
def test_round_trip(broker, producer_lib, consumer_lib, codec):
    topic = create_topic(broker)
    records = sample_records(60)

    deliveries = produce(producer_lib, broker, topic, records, **compression_config(producer_lib, codec))
    assert [(d.partition, d.offset) for d in deliveries] == [(0, i) for i in range(60)]

    got = consume(consumer_lib, broker, topic, 60)
    assert [g.offset for g in got] == list(range(60))
    assert content(got) == content(records)
    assert_stored_codec(broker, topic, codec, 60)


@pytest.mark.parametrize("producer_lib,consumer_lib", LIB_PAIRS)
def test_null_keys_and_empty_values(broker, producer_lib, consumer_lib):
    topic = create_topic(broker)
    records = [
        Rec(None, b""),
        Rec(b"", b"empty key"),
        Rec(b"tombstone", None),
        Rec(None, b"only headers", headers=(("a", b"1"), ("a", b"2"))),
        Rec(b"\x00binary\xff", b"\x00" * 100),
    ]
    produce(producer_lib, broker, topic, records)
    got = consume(consumer_lib, broker, topic, len(records))
    assert content(got) == content(records)


@pytest.mark.parametrize("producer_lib,consumer_lib", LIB_PAIRS)
def test_create_time_timestamps_round_trip(broker, producer_lib, consumer_lib):
    topic = create_topic(broker)
    base = int(time.time() * 1000) - 3_600_000
    records = [Rec(b"k", b"v%d" % i, timestamp_ms=base + 1000 * i) for i in range(10)]
    produce(producer_lib, broker, topic, records)
    got = consume(consumer_lib, broker, topic, 10)
    assert [g.timestamp_ms for g in got] == [r.timestamp_ms for r in records]


@pytest.mark.parametrize("acks", ["0", "1", "all"])
@pytest.mark.parametrize("lib", LIBS)
def test_acks(broker, lib, acks):
    topic = create_topic(broker)
    records = [Rec(b"k%d" % (i % 3), b"acks-%s-%d" % (acks.encode(), i)) for i in range(200)]
    deliveries = produce(lib, broker, topic, records, **acks_config(lib, acks))
    assert len(deliveries) == len(records)
    if acks != "0":  # acks=0 gets no response, hence no offsets
        assert [d.offset for d in deliveries] == list(range(200))

    got = consume(KAFKA_PYTHON if lib == CONFLUENT else CONFLUENT, broker, topic, 200)
    assert [g.offset for g in got] == list(range(200))
    assert content(got) == content(records)


@pytest.mark.parametrize("producer_lib,consumer_lib", [(KAFKA_PYTHON, CONFLUENT), (CONFLUENT, KAFKA_PYTHON)])
def test_multiple_partitions_preserve_per_partition_order(broker, producer_lib, consumer_lib):
    partitions, per_partition = 4, 30
    topic = create_topic(broker, partitions=partitions)
    records = [Rec(b"k", b"p%d-%03d" % (i % partitions, i // partitions), partition=i % partitions)
               for i in range(partitions * per_partition)]

    deliveries = produce(producer_lib, broker, topic, records)
    for rec, d in zip(records, deliveries):
        assert d.partition == rec.partition
        assert d.offset == int(rec.value.split(b"-")[1])

    got = consume(consumer_lib, broker, topic, len(records), partitions=range(partitions))
    assert len(got) == len(records)
    for p in range(partitions):
        mine = [g for g in got if g.partition == p]
        assert [g.offset for g in mine] == list(range(per_partition))
        assert [g.value for g in mine] == [b"p%d-%03d" % (p, i) for i in range(per_partition)]
    assert end_offsets(broker, topic, range(partitions)) == {p: per_partition for p in range(partitions)}


@pytest.mark.parametrize("lib", LIBS)
def test_keyed_records_stay_in_one_partition_in_order(broker, lib):
    topic = create_topic(broker, partitions=3)
    records = [Rec(b"key-%d" % (i % 10), b"%d" % i) for i in range(100)]
    deliveries = produce(lib, broker, topic, records)

    partition_of_key: dict[bytes, set[int]] = {}
    for rec, d in zip(records, deliveries):
        partition_of_key.setdefault(rec.key, set()).add(d.partition)
    assert all(len(ps) == 1 for ps in partition_of_key.values()), partition_of_key

    got = consume(lib, broker, topic, 100, partitions=range(3))
    for key in partition_of_key:
        assert [int(g.value) for g in got if g.key == key] == [int(r.value) for r in records if r.key == key]


# --------------------------------------------------------------------------
# size limits


@pytest.mark.parametrize("lib", LIBS)
def test_record_just_under_max_message_bytes(broker, lib):
    topic = create_topic(broker)
    # A v2 batch holding one uncompressed record with a null key and no
    # headers is 61 (batch header) + ~11 (record framing) bytes bigger than
    # the value; 200 bytes of slack keeps the batch just under the limit.
    value = os.urandom(DEFAULT_MAX_MESSAGE_BYTES - 200)
    (d,) = produce(lib, broker, topic, [Rec(None, value)], **large_record_config(lib))
    assert d.offset == 0

    # Fetch must return the whole first batch even when it is larger than the
    # consumer's per-partition fetch size (KIP-74).
    (got,) = consume(KAFKA_PYTHON, broker, topic, 1, max_partition_fetch_bytes=64 * 1024)
    assert got.value == value
    (got,) = consume(CONFLUENT, broker, topic, 1, **{"max.partition.fetch.bytes": 64 * 1024})
    assert got.value == value


@pytest.mark.parametrize("lib", LIBS)
def test_record_over_max_message_bytes_is_rejected(broker, lib):
    topic = create_topic(broker)
    assert_rejected_as_too_large(lib, broker, topic, os.urandom(DEFAULT_MAX_MESSAGE_BYTES + 1000))
    assert end_offsets(broker, topic) == {0: 0}
    # The partition is still writable and nothing of the rejected batch shows.
    (d,) = produce(lib, broker, topic, [Rec(b"k", b"small")])
    assert d.offset == 0


@pytest.mark.parametrize("lib", LIBS)
def test_topic_max_message_bytes_override(broker, lib):
    topic = create_topic(broker, configs={"max.message.bytes": "4096"})
    (d,) = produce(lib, broker, topic, [Rec(None, os.urandom(3000))], **large_record_config(lib))
    assert d.offset == 0
    assert_rejected_as_too_large(lib, broker, topic, os.urandom(6000))
    assert end_offsets(broker, topic) == {0: 1}


def test_broker_message_max_bytes_from_config_file(strom_factory):
    broker = strom_factory({"message.max.bytes": 50000})
    topic = create_topic(broker)
    (d,) = produce(KAFKA_PYTHON, broker, topic, [Rec(None, os.urandom(40000))])
    assert d.offset == 0
    assert_rejected_as_too_large(KAFKA_PYTHON, broker, topic, os.urandom(60000))
    assert_rejected_as_too_large(CONFLUENT, broker, topic, os.urandom(60000))


# --------------------------------------------------------------------------
# offsets out of range and auto.offset.reset


def ten_record_topic(broker) -> str:
    topic = create_topic(broker)
    produce(KAFKA_PYTHON, broker, topic, [Rec(b"k", b"%d" % i) for i in range(10)])
    return topic


@pytest.mark.parametrize("lib", LIBS)
def test_out_of_range_offset_resets_to_earliest(broker, lib):
    topic = ten_record_topic(broker)
    reset = {"auto_offset_reset": "earliest"} if lib == KAFKA_PYTHON else {"auto.offset.reset": "earliest"}
    got = consume(lib, broker, topic, 10, offset=1000, **reset)
    assert [g.offset for g in got] == list(range(10))


def test_out_of_range_offset_resets_to_latest_kafka_python(broker):
    topic = ten_record_topic(broker)
    tp = kafka.TopicPartition(topic, 0)
    with kp_consumer(broker, auto_offset_reset="latest") as consumer:
        consumer.assign([tp])
        consumer.seek(tp, 1000)

        def reset_to_end():
            assert consumer.poll(timeout_ms=100) == {}
            return consumer.position(tp) == 10
        wait_until(reset_to_end, what="position reset to the log end offset")

        produce(KAFKA_PYTHON, broker, topic, [Rec(b"k", b"after reset")])
        got = wait_until(lambda: [m for ms in consumer.poll(timeout_ms=200).values() for m in ms],
                         what="the record produced after the reset")
    assert [(m.offset, m.value) for m in got] == [(10, b"after reset")]


def test_out_of_range_offset_resets_to_latest_confluent(broker):
    topic = ten_record_topic(broker)
    with ck_consumer(broker, **{"auto.offset.reset": "latest", "enable.partition.eof": True}) as consumer:
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, 1000)])

        def at_eof():
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is not None and msg.error().code() == KafkaError._PARTITION_EOF:
                return msg
            assert msg is None or msg.error() is not None, f"unexpected record at {msg.offset()}"
            return None
        eof = wait_until(at_eof, what="partition EOF after the offset reset")
        assert eof.offset() == 10

        produce(CONFLUENT, broker, topic, [Rec(b"k", b"after reset")])

        def next_record():
            msg = consumer.poll(0.2)
            return msg if msg is not None and msg.error() is None else None
        msg = wait_until(next_record, what="the record produced after the reset")
    assert (msg.offset(), msg.value()) == (10, b"after reset")


def test_out_of_range_offset_without_reset_policy_kafka_python(broker):
    topic = ten_record_topic(broker)
    tp = kafka.TopicPartition(topic, 0)
    with kp_consumer(broker, auto_offset_reset="none") as consumer:
        consumer.assign([tp])
        consumer.seek(tp, 1000)

        def raised():
            try:
                consumer.poll(timeout_ms=100)
            except kerr.OffsetOutOfRangeError as exc:
                return exc
            return None
        exc = wait_until(raised, what="OffsetOutOfRangeError")
    assert exc.args[0] == {tp: 1000}


def test_out_of_range_offset_without_reset_policy_confluent(broker):
    topic = ten_record_topic(broker)
    with ck_consumer(broker, **{"auto.offset.reset": "error"}) as consumer:
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, 1000)])

        def reset_error():
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is not None and msg.error().code() == KafkaError._AUTO_OFFSET_RESET:
                return msg
            assert msg is None or msg.error() is not None, f"unexpected record at {msg.offset()}"
            return None
        wait_until(reset_error, what="an _AUTO_OFFSET_RESET consumer error")


# --------------------------------------------------------------------------
# manual assignment and seeking


def twenty_record_topic(broker) -> str:
    """20 records written in 4 batches of 5, so seeks land inside batches."""
    topic = create_topic(broker)
    for start in range(0, 20, 5):
        produce(CONFLUENT, broker, topic, [Rec(b"k", b"%d" % i) for i in range(start, start + 5)])
    return topic


def test_assign_and_seek_kafka_python(broker):
    topic = twenty_record_topic(broker)
    tp = kafka.TopicPartition(topic, 0)
    with kp_consumer(broker) as consumer:
        consumer.assign([tp])

        consumer.seek(tp, 7)
        got = wait_until(lambda: consumer.poll(timeout_ms=200).get(tp), what="records from offset 7")
        assert got[0].offset == 7 and got[0].value == b"7"

        consumer.seek(tp, 13)
        got = wait_until(lambda: consumer.poll(timeout_ms=200).get(tp), what="records from offset 13")
        assert got[0].offset == 13

        consumer.seek_to_beginning(tp)
        got = wait_until(lambda: consumer.poll(timeout_ms=200).get(tp), what="records from the beginning")
        assert got[0].offset == 0

        consumer.seek_to_end(tp)
        assert consumer.position(tp) == 20


def test_assign_and_seek_confluent(broker):
    topic = twenty_record_topic(broker)

    def next_record(consumer):
        def poll():
            msg = consumer.poll(0.2)
            return msg if msg is not None and msg.error() is None else None
        return wait_until(poll, what="a record")

    with ck_consumer(broker) as consumer:
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
        assert next_record(consumer).offset() == 0

        consumer.seek(confluent_kafka.TopicPartition(topic, 0, 12))
        msg = next_record(consumer)
        assert (msg.offset(), msg.value()) == (12, b"12")

    with ck_consumer(broker) as consumer:
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, 17)])
        assert [next_record(consumer).offset() for _ in range(3)] == [17, 18, 19]
