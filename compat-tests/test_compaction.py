"""Log compaction (cleanup.policy=compact), Strom beside the reference Kafka.

The same keyed writes go to a compacted topic on both brokers: five rounds
of ten keys, each round stamped a second after the last so that every round
rolls a segment (segment.ms=100), the last version of one key a tombstone,
and one more record after them so the last round's segment closes. Once the
cleaners ran, a consumer reading from the start must see on both brokers
exactly the latest record of each key, at the offset it was written at: the
same records a CDC consumer or a Kafka Streams changelog restore would read.
The tombstone is still there (its delete horizon, delete.retention.ms=0, is
stamped by that first cleaning); one more write makes the log dirty again,
and the next cleaning removes it. The Java client reads the compacted log
from the beginning on both brokers, as a CDC sink or a Kafka Streams
restore does, and builds the same table.

On Strom alone, also: the cleaned log survives a kill -9 and restart;
``__consumer_offsets`` is compacted, so thousands of commits of one group's
offset leave a small log, and the committed offset is still there after a
restart.
"""

from __future__ import annotations

import time

import kafka
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from helpers import (CONFLUENT, DEFAULT_TIMEOUT, Rec, ck_admin, ck_consumer, ck_result, create_topic, produce, read_partition,
                     unique_name, wait_until)
from test_java_client import java  # noqa: F401 (the Java programs fixture)

KEYS = 10
ROUNDS = 5
TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "0",
}
# The cleaners look for work this often while the test runs.
BACKOFF_MS = "200"


def rounds_of_writes(t0: int) -> list[list[Rec]]:
    """The rounds, each to be produced (and so batched) apart."""
    rounds = []
    for r in range(ROUNDS):
        records = []
        for k in range(KEYS):
            last = r == ROUNDS - 1
            value = None if (last and k == 0) else f"v{r}-{k}".encode()
            records.append(Rec(f"k{k}".encode(), value, timestamp_ms=t0 + r * 1000))
        rounds.append(records)
    rounds.append([Rec(b"end", b"end", timestamp_ms=t0 + ROUNDS * 1000)])
    return rounds


def expected_after_compaction(tombstone: bool) -> list[tuple[int, bytes, bytes | None]]:
    """(offset, key, value) of what a consumer reads once the log is clean."""
    last_round = (ROUNDS - 1) * KEYS
    kept = [(last_round, b"k0", None)] if tombstone else []
    kept += [(last_round + k, f"k{k}".encode(), f"v{ROUNDS - 1}-{k}".encode()) for k in range(1, KEYS)]
    return kept + [(ROUNDS * KEYS, b"end", b"end")]


def compacted_view(broker, topic: str) -> list[tuple[int, bytes, bytes]]:
    return [(g.offset, g.key, g.value) for g in read_partition(broker, topic)]


def wait_for_view(broker, topic: str, want: list, what: str) -> list:
    return wait_until(lambda: (v := compacted_view(broker, topic)) == want and v, timeout=90,
                      interval=0.5, what=f"{topic} {what}")


def write_and_compact(broker, topic_prefix: str) -> tuple[str, int, list]:
    """The topic, its rounds' first timestamp, and what a consumer reads
    after the first cleaning."""
    topic = create_topic(broker, unique_name(topic_prefix), configs=TOPIC_CONFIGS)
    t0 = int(time.time() * 1000) - 600_000
    offsets = [d.offset for records in rounds_of_writes(t0) for d in produce(CONFLUENT, broker, topic, records)]
    assert offsets == list(range(ROUNDS * KEYS + 1))
    first = wait_for_view(broker, topic, expected_after_compaction(tombstone=True),
                          "compacted to the latest record of each key")
    return topic, t0, first


def write_and_wait(broker, topic_prefix: str) -> tuple[str, list, list]:
    """The topic, and what a consumer reads after the first cleaning and
    after the one that removes the tombstone."""
    topic, t0, first = write_and_compact(broker, topic_prefix)
    produce(CONFLUENT, broker, topic, [Rec(b"end", b"again", timestamp_ms=t0 + (ROUNDS + 2) * 1000)])
    want = expected_after_compaction(tombstone=False) + [(ROUNDS * KEYS + 1, b"end", b"again")]
    second = wait_for_view(broker, topic, want, "cleaned again without the tombstone")
    return topic, first, second


def set_cleaner_backoff(broker, value: str | None) -> None:
    """Sets (or with None removes) the broker's dynamic log.cleaner.backoff.ms."""
    admin = ck_admin(broker)
    node = str(admin.list_topics(timeout=DEFAULT_TIMEOUT).controller_id)
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    entry = ConfigEntry("log.cleaner.backoff.ms", value or "", incremental_operation=op)
    res = ConfigResource(ResourceType.BROKER, node, incremental_configs=[entry])
    for fut in admin.incremental_alter_configs([res]).values():
        ck_result(fut)


@pytest.fixture
def strom_cleaning(strom_factory):
    return strom_factory({"log.cleaner.backoff.ms": int(BACKOFF_MS)})


def test_compacted_topic_reads_alike_on_both_brokers(strom_cleaning, kafka_ref):
    set_cleaner_backoff(kafka_ref, BACKOFF_MS)
    try:
        _, kafka_first, kafka_second = write_and_wait(kafka_ref, "compaction-ref")
    finally:
        set_cleaner_backoff(kafka_ref, None)
    _, strom_first, strom_second = write_and_wait(strom_cleaning, "compaction")
    assert strom_first == kafka_first
    assert strom_second == kafka_second


@pytest.mark.parametrize("which", ["strom", "kafka"])
def test_java_consumer_reads_a_compacted_changelog_from_the_beginning(java, which, request):
    """The Java client, as a CDC sink or a Streams restore reads a changelog:
    from the beginning to the end offset across the cleaner's offset gaps,
    a tombstone deleting its key from the table it builds."""
    if which == "strom":
        broker = request.getfixturevalue("strom_cleaning")
    else:
        broker = request.getfixturevalue("kafka_ref")
        set_cleaner_backoff(broker, BACKOFF_MS)
    try:
        topic, _, _ = write_and_compact(broker, "compaction-java")
    finally:
        if which == "kafka":
            set_cleaner_backoff(broker, None)
    r = java.run("CompactedRead", bootstrap=broker.bootstrap, topic=topic)
    want = expected_after_compaction(tombstone=True)
    assert r["records"] == [[o, k.decode(), v and v.decode()] for o, k, v in want]
    assert (r["beginning"], r["end"], r["position"]) == (0, ROUNDS * KEYS + 1, ROUNDS * KEYS + 1)
    assert r["table"] == {k.decode(): v.decode() for _, k, v in want if v is not None}
    assert "k0" not in r["table"], "the tombstone deleted its key"


def test_cleaned_log_survives_kill_9(strom_cleaning):
    topic, _, before = write_and_wait(strom_cleaning, "compaction-crash")
    # More versions after the cleanings, then a crash.
    t0 = int(time.time() * 1000) - 300_000
    more = [Rec(f"k{k}".encode(), f"w-{k}".encode(), timestamp_ms=t0) for k in range(1, KEYS)]
    produce(CONFLUENT, strom_cleaning, topic, more, **{"enable.idempotence": True})
    produce(CONFLUENT, strom_cleaning, topic, [Rec(b"end", b"last", timestamp_ms=t0 + 1000)])
    strom_cleaning.kill9()
    strom_cleaning.restart()
    base = before[-1][0] + 1
    want = [(base + k - 1, f"k{k}".encode(), f"w-{k}".encode()) for k in range(1, KEYS)]
    want.append((base + KEYS - 1, b"end", b"last"))
    # Nothing is lost across the crash: each key's latest value is there at
    # its offset, and the only others are versions the cleanings kept
    # (until the cleaner, running again, removes them too).
    after = compacted_view(strom_cleaning, topic)
    assert [r for r in after if r[0] >= base] == want
    assert set(r for r in after if r[0] < base) <= set(before)
    # ("end" stays once more: its latest version is in the active segment,
    # which the cleaner leaves alone.)
    wait_for_view(strom_cleaning, topic, [before[-1]] + want, "compacted again after a restart")


def test_consumer_offsets_are_compacted(strom_factory):
    broker = strom_factory({"log.cleaner.backoff.ms": int(BACKOFF_MS), "offsets.topic.segment.bytes": 65536,
                            "offsets.topic.num.partitions": 1})
    topic = create_topic(broker, unique_name("commits"))
    produce(CONFLUENT, broker, topic, [Rec(b"k", b"v")])
    group = unique_name("committer")
    commits = 5000
    with ck_consumer(broker, **{"group.id": group, "enable.auto.commit": False}) as consumer:
        for i in range(commits):
            consumer.commit(offsets=[TopicPartition(topic, 0, i)], asynchronous=False)

    def offsets_log_bytes() -> int:
        admin = kafka.KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            answers = admin.describe_log_dirs(["__consumer_offsets"])
        finally:
            admin.close()
        return sum(p["partition_size"] for a in answers for d in a["log_dirs"] for t in d["topics"]
                   if t["name"] == "__consumer_offsets" for p in t["partitions"])

    # Uncleaned, each commit is a record of about 100 bytes.
    small = wait_until(lambda: (n := offsets_log_bytes()) < 65536 * 2 and n, timeout=90, interval=0.5,
                       what="__consumer_offsets compacted below two segments")
    assert small < commits * 50
    broker.kill9()
    broker.restart()
    with ck_consumer(broker, **{"group.id": group, "enable.auto.commit": False}) as consumer:
        committed = consumer.committed([TopicPartition(topic, 0)], timeout=30)
    assert committed[0].offset == commits - 1
