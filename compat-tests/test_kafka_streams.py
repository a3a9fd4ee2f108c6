"""Kafka Streams (4.1.1, the reference Kafka's version) with
``processing.guarantee=exactly_once_v2`` against Strom: the word count of
compat-tests/java (WordCount.java), stopped abruptly in the middle of its
work and started again (issue 9, item 3).

The application reads lines, re-keys them by word through a repartition
topic, counts in a state store backed by a changelog topic and writes each
new count to an output topic, with the record cache off: so every word read
gives one output record, and exactly-once processing means that, read with
read_committed, each word's counts on the output run 1, 2, ..., n with no
gap and no repeat, n being how often the word was produced. A count seen
twice would be a line processed twice (a transaction whose output became
visible although its offsets were not committed, or a store restored from a
changelog that kept an aborted write); a gap, a lost one.

The run: a first batch of lines; the application is halted (no close, no
commit, its open transaction left hanging) once half of the batch's words
have visible counts; a second batch; the application again, with the same
state directory (so its transactional id, which fences the hanging
transaction), until every word has its final count. The store is in memory,
so the second start restores it from the changelog. Then the same run
against the reference Kafka, which must give the same output.
"""

from __future__ import annotations

import random
import struct
import time
from collections import Counter, defaultdict

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from helpers import CONFLUENT, DEFAULT_TIMEOUT, Rec, ck_admin, ck_consumer, ck_result, produce, unique_name
from test_java_client import java  # noqa: F401  (the fixture)

WORDS = ["kafka", "strom", "stream", "table", "log", "offset", "epoch", "fence", "commit", "abort",
         "record", "batch", "topic", "leader", "replica", "group"]
LINES_PER_BATCH = 150
PARTITIONS = 3
STREAMS_TIMEOUT = 110.0


def lines(rng: random.Random, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))) for _ in range(n)]


def produce_lines(broker, topic: str, batch: list[str]) -> None:
    produce(CONFLUENT, broker, topic, [Rec(key=None, value=line.encode()) for line in batch])


def read_output(broker, topic: str, expected: int) -> list[tuple[str, int]]:
    """Every record of the output topic, read_committed, as (word, count)."""
    out: list[tuple[str, int]] = []
    with ck_consumer(broker, **{"isolation.level": "read_committed", "group.id": unique_name("wc-reader")}) as c:
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        ends = {}
        for p in range(PARTITIONS):
            _, ends[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=DEFAULT_TIMEOUT)
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]

        def at_end() -> bool:
            # Positions pass the transaction markers that end each partition.
            return all(tp.offset >= ends[tp.partition] for tp in c.position(parts))
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        while not at_end() and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append((msg.key().decode(), struct.unpack(">q", msg.value())[0]))
        assert at_end(), f"read {len(out)} output records, not to the end of every partition ({ends})"
    assert len(out) >= expected, f"{len(out)} output records, expected {expected}"
    return out


def word_count_run(java, broker, tmp_path, seed: int) -> tuple[dict, list]:
    """The halted-then-restarted run on ``broker``; the per-word counts seen."""
    rng = random.Random(seed)
    name = unique_name("wc")
    input_topic, output_topic = f"{name}-in", f"{name}-out"
    admin = ck_admin(broker)
    for f in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (input_topic, output_topic)]).values():
        ck_result(f)
    first, second = lines(rng, LINES_PER_BATCH), lines(rng, LINES_PER_BATCH)
    words_first = sum(len(line.split()) for line in first)
    words_all = words_first + sum(len(line.split()) for line in second)
    args = dict(bootstrap=broker.bootstrap, input=input_topic, output=output_topic, app_id=f"{name}-app",
                state_dir=str(tmp_path / f"state-{name}"))

    produce_lines(broker, input_topic, first)
    halted = java.run("WordCount", timeout=STREAMS_TIMEOUT, halt_after=words_first // 2, **args)
    assert halted["seen"] >= words_first // 2, halted
    produce_lines(broker, input_topic, second)
    done = java.run("WordCount", timeout=STREAMS_TIMEOUT, expect=words_all, **args)
    assert done["seen"] == words_all and done["state"] == "NOT_RUNNING", done

    counts: dict[str, list[int]] = defaultdict(list)
    for word, count in read_output(broker, output_topic, words_all):
        counts[word].append(count)
    expected = Counter(w for line in first + second for w in line.split())
    return {w: sorted(c) for w, c in counts.items()}, expected


def check_exactly_once(counts: dict, expected: Counter, where: str) -> None:
    assert set(counts) == set(expected), f"{where}: words {sorted(counts)} on the output, produced {sorted(expected)}"
    wrong = {w: (c[:3], "...", c[-3:], len(c)) for w, c in counts.items() if c != list(range(1, expected[w] + 1))}
    assert not wrong, (f"{where}: per-word counts are not exactly 1..n (n = times produced); "
                       f"first/last counts and how many: {wrong}; expected n: "
                       f"{ {w: expected[w] for w in wrong} }")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_word_count_exactly_once_across_a_halt(java, broker, kafka_ref, tmp_path):  # noqa: F811
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    counts, expected = word_count_run(java, broker, tmp_path, seed)
    check_exactly_once(counts, expected, f"Strom (seed {seed})")
    assert broker.is_running(), "strom died"
    kafka_counts, kafka_expected = word_count_run(java, kafka_ref, tmp_path, seed)
    check_exactly_once(kafka_counts, kafka_expected, f"the reference Kafka (seed {seed})")
    assert counts == kafka_counts, f"seed {seed}: Strom's output differs from Kafka's"
