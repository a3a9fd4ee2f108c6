"""Acknowledged data survives kill -9; idempotent producers see exactly-once
appends across a broker crash; a SIGTERM shutdown is clean."""

from __future__ import annotations

import threading
from collections import Counter

import kafka
import pytest
from kafka.admin import ConfigResource
from kafka.net.compat import KafkaNetClient
from kafka.protocol.producer import InitProducerIdRequest, ProduceRequest
from kafka.record.default_records import DefaultRecordBatchBuilder

from helpers import (
    CONFLUENT, KAFKA_PYTHON, BackgroundTask, Rec, create_topic, end_offsets, kp_admin, produce,
    read_partition, wait_topic_ready, wait_until,
)

pytestmark = pytest.mark.slow


def test_acked_records_survive_kill9(broker):
    n = 2000
    topic = create_topic(broker)
    records = [Rec(b"key-%d" % (i % 10), b"durable-%05d" % i) for i in range(n)]
    deliveries = produce(CONFLUENT, broker, topic, records, acks="all", timeout=60)
    assert [d.offset for d in deliveries] == list(range(n))

    broker.kill9()
    broker.restart()

    assert end_offsets(broker, topic) == {0: n}
    got = read_partition(broker, topic)
    assert [g.offset for g in got] == list(range(n))
    assert [(g.key, g.value) for g in got] == [(r.key, r.value) for r in records]

    (d,) = produce(KAFKA_PYTHON, broker, topic, [Rec(b"k", b"after restart")])
    assert d.offset == n
    assert read_partition(broker, topic)[-1].value == b"after restart"


def test_topics_and_configs_survive_kill9(broker):
    topic = create_topic(broker, partitions=3, configs={"retention.ms": "123456"})
    broker.kill9()
    broker.restart()
    with kp_admin(broker) as admin:
        wait_topic_ready(admin, topic, 3)
        configs = admin.describe_configs([ConfigResource("TOPIC", topic)])["topic"][topic]
    assert {k: v["value"] for k, v in configs.items()} == {"retention.ms": "123456"}


def test_sigterm_shuts_down_cleanly_and_keeps_data(broker):
    topic = create_topic(broker, partitions=2)
    records = [Rec(b"k", b"%d" % i, partition=i % 2) for i in range(100)]
    produce(KAFKA_PYTHON, broker, topic, records)
    broker.terminate()  # asserts exit code 0
    broker.restart()
    assert end_offsets(broker, topic, [0, 1]) == {0: 50, 1: 50}
    assert [g.value for g in read_partition(broker, topic, 1)] == [b"%d" % i for i in range(1, 100, 2)]


def test_idempotent_producer_exactly_once_across_kill9(broker):
    """kafka-python's idempotent producer keeps retrying through a broker
    crash; batches whose ack was lost are re-sent with the same producer id
    and sequence numbers and must be de-duplicated (which requires the broker
    to recover producer state from its log on restart)."""
    total = 3000
    window = 300  # max sent-but-unacked records: keeps the stream going across the crash
    topic = create_topic(broker)

    acked = 0
    failures: list[BaseException] = []
    lock = threading.Lock()

    def on_ack(_metadata):
        nonlocal acked
        with lock:
            acked += 1

    def crash_midway() -> int:
        wait_until(lambda: acked >= total // 3, timeout=60, what="a third of the stream to be acked")
        at_kill = acked
        broker.kill9()
        broker.restart()
        return at_kill

    producer = kafka.KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        enable_idempotence=True,
        acks="all",
        retries=2**31 - 1,
        delivery_timeout_ms=120_000,
        request_timeout_ms=10_000,
        max_in_flight_requests_per_connection=5,
        linger_ms=2,
        batch_size=4096,
        retry_backoff_ms=50,
        reconnect_backoff_ms=50,
        reconnect_backoff_max_ms=500,
        max_block_ms=120_000,
    )
    try:
        killer = BackgroundTask(crash_midway, name="crash-midway")
        futures = []
        for i in range(total):
            if i - acked >= window:
                wait_until(lambda: i - acked < window or failures or killer.failed, timeout=90,
                           what="the producer to make progress")
                assert not failures, failures[0]
            future = producer.send(topic, value=b"%d" % i, partition=0)
            future.add_callback(on_ack)
            future.add_errback(failures.append)
            futures.append(future)
        acked_at_kill = killer.result(timeout=90)  # the restart is done
        producer.flush(timeout=120)
        offsets = [f.get(timeout=1).offset for f in futures]
    finally:
        producer.close(timeout=10)

    assert not failures, failures[0]
    assert acked_at_kill < total, "the broker was killed only after the stream ended"
    values = [int(g.value) for g in read_partition(broker, topic)]
    duplicates = sorted(v for v, n in Counter(values).items() if n > 1)
    assert not duplicates, f"{len(duplicates)} values appended twice, e.g. {duplicates[:10]}"
    assert sorted(values) == list(range(total)), f"{total - len(set(values))} acknowledged values lost"
    assert values == list(range(total)), "values out of order"
    # A re-sent duplicate batch is acknowledged with its original offsets.
    assert offsets == list(range(total))


class SequencedProducer:
    """kafka-python's network client and record-batch builder, used to send
    batches with hand-picked (producer id, epoch, base sequence): what an
    idempotent producer re-sends after losing an acknowledgement."""

    ERROR_OUT_OF_ORDER_SEQUENCE = 45

    def __init__(self, broker):
        self.client = KafkaNetClient(bootstrap_servers=broker.bootstrap)
        self.client.check_version()

    def close(self):
        self.client.close()

    def init_producer_id(self) -> tuple[int, int]:
        resp = self.client.send_and_receive(1, InitProducerIdRequest(
            transactional_id=None, transaction_timeout_ms=60000, producer_id=-1, producer_epoch=-1,
            max_version=4))
        assert resp.error_code == 0
        return resp.producer_id, resp.producer_epoch

    def send(self, topic: str, pid: int, epoch: int, sequence: int, values: list[bytes]) -> tuple[int, int]:
        """-> (error_code, base_offset) of an acks=all Produce of one batch."""
        builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                            producer_id=pid, producer_epoch=epoch, base_sequence=sequence,
                                            batch_size=1 << 20)
        for i, value in enumerate(values):
            builder.append(i, timestamp=None, key=None, value=value, headers=[])
        topic_data = ProduceRequest.TopicProduceData
        request = ProduceRequest(
            transactional_id=None, acks=-1, timeout_ms=10000, max_version=9,
            topic_data=[topic_data(name=topic, partition_data=[
                topic_data.PartitionProduceData(index=0, records=bytes(builder.build()))])])
        (topic_resp,) = self.client.send_and_receive(1, request).responses
        (part,) = topic_resp.partition_responses
        return part.error_code, part.base_offset


def test_duplicate_sequenced_batches_are_not_appended(broker):
    """Deterministic version of the race above: the last batches of a
    producer, re-sent with the same sequence numbers, are acknowledged with
    their original offsets and not appended, also after kill -9."""
    topic = create_topic(broker)
    producer = SequencedProducer(broker)
    try:
        pid, epoch = producer.init_producer_id()
        assert producer.send(topic, pid, epoch, 0, [b"a0", b"a1", b"a2"]) == (0, 0)
        assert producer.send(topic, pid, epoch, 3, [b"b3", b"b4"]) == (0, 3)
        assert producer.send(topic, pid, epoch, 3, [b"b3", b"b4"]) == (0, 3)  # duplicate of the last batch
        assert producer.send(topic, pid, epoch, 0, [b"a0", b"a1", b"a2"]) == (0, 0)  # one of the last five
    finally:
        producer.close()
    assert end_offsets(broker, topic) == {0: 5}

    broker.kill9()
    broker.restart()

    producer = SequencedProducer(broker)
    try:
        assert producer.send(topic, pid, epoch, 3, [b"b3", b"b4"]) == (0, 3)  # state rebuilt from the log
        error, _ = producer.send(topic, pid, epoch, 9, [b"gap"])
        assert error == SequencedProducer.ERROR_OUT_OF_ORDER_SEQUENCE
        assert producer.send(topic, pid, epoch, 5, [b"c5"]) == (0, 5)
        assert producer.init_producer_id()[0] != pid, "producer id handed out twice"
    finally:
        producer.close()
    assert [g.value for g in read_partition(broker, topic)] == [b"a0", b"a1", b"a2", b"b3", b"b4", b"c5"]
