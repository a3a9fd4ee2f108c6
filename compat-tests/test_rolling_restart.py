"""A rolling restart of a three-node cluster that loses nothing.

The nodes are restarted one at a time as Kubernetes restarts a
StatefulSet's pods: SIGTERM (the node moves its leaderships away, leaves
every ISR and exits), wait for the exit, start it again, wait for
``/health/ready`` to answer 200 (the readiness probe); the next node goes
only once the restarted one is ready, every partition's ISR is full again
and the controller's leader balancing (every 2 s here) has given it back
leaderships, so that every SIGTERM moves leaders under load.
Meanwhile three idempotent acks=all confluent-kafka producers write
numbered records, each to seeded partitions of a topic with replication
factor 3 and min.insync.replicas 2, and a group of two confluent-kafka
consumers reads and commits.

Afterwards: no delivery error at all (librdkafka retried through every
leadership move), every acknowledged record is in the log exactly once at
the offset it was acknowledged at, each producer's records are in order
within a partition, nothing unacknowledged is in the log, the group read
every record and committed each partition's end. Each node's SIGTERM to
exit, start to ready and ready to full-ISR seconds, and the longest a
partition went without an acknowledgement, are printed (with ``-s``).

``STROM_TEST_SEED=N`` repeats a run's partition choices and traffic
amounts.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field

import confluent_kafka
import pytest
from confluent_kafka import TopicPartition

from helpers import ck_common, create_topic, end_offsets, kp_admin, read_partition, unique_name, wait_until

PARTITIONS = 6
PRODUCERS = 3
CONSUMERS = 2
GROUP_CONFIG = {"group.initial.rebalance.delay.ms": 200, "group.min.session.timeout.ms": 1000}
# Each producer sends BURST records every PAUSE seconds (500 a second),
# which a two-core machine keeps up with while it restarts nodes.
BURST, PAUSE = 10, 0.02
# librdkafka's own log lines (connection refused while a node restarts...)
# go to pytest's log capture, shown only for a failure; error_cb records
# the same errors.
RDKAFKA_LOG = logging.getLogger("rdkafka")


def value_of(producer: int, seq: int) -> bytes:
    return f"p{producer}-{seq:08d}".encode()


def parse(value: bytes | None) -> tuple[int, int] | None:
    try:
        p, s = value.decode().split("-")
        assert p[0] == "p"
        return int(p[1:]), int(s)
    except Exception:  # noqa: BLE001 - not one of ours: reported by the checker
        return None


@dataclass
class Producer:
    """One idempotent acks=all producer in a thread, writing p<id>-<seq> to
    seeded partitions until stopped, then flushing."""
    index: int
    bootstrap: str
    topic: str
    seed: int
    intended: dict[int, int] = field(default_factory=dict)            # seq -> partition
    acked: dict[int, tuple[int, int]] = field(default_factory=dict)   # seq -> (partition, offset)
    ack_times: list[tuple[float, int]] = field(default_factory=list)  # (when, partition)
    errors: list[tuple[int, str]] = field(default_factory=list)       # delivery errors: (seq, error)
    client_errors: list[str] = field(default_factory=list)            # error_cb (transport etc.)
    fatal: list[str] = field(default_factory=list)
    unflushed: int | None = None
    crash: BaseException | None = None

    def __post_init__(self):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"producer-{self.index}", daemon=True)

    def _on_error(self, err):
        (self.fatal if err.fatal() else self.client_errors).append(str(err))

    def _on_delivery(self, err, msg):
        seq = parse(msg.value())[1]
        if err is not None:
            self.errors.append((seq, str(err)))
        else:
            self.acked[seq] = (msg.partition(), msg.offset())
            self.ack_times.append((time.monotonic(), msg.partition()))

    def _run(self):
        try:
            rng = random.Random(f"{self.seed}-{self.index}")
            producer = confluent_kafka.Producer(ck_common(
                self, **{"client.id": f"roll-producer-{self.index}", "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5, "message.timeout.ms": 120_000, "error_cb": self._on_error,
                         "logger": RDKAFKA_LOG}))
            seq, burst_at = 0, time.monotonic()
            while not self.stop.is_set() and not self.fatal:
                for _ in range(BURST):
                    partition = rng.randrange(PARTITIONS)
                    self.intended[seq] = partition
                    while True:
                        try:
                            producer.produce(self.topic, value=value_of(self.index, seq), partition=partition,
                                             on_delivery=self._on_delivery)
                            break
                        except BufferError:
                            producer.poll(0.1)
                    seq += 1
                # Serve the delivery reports until the next burst is due
                # (poll returns early whenever it served one).
                burst_at += PAUSE
                while (left := burst_at - time.monotonic()) > 0:
                    producer.poll(left)
            self.unflushed = producer.flush(120)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.crash = exc


@dataclass
class Member:
    """A group member in a thread: subscribes, reads, auto-commits every
    second, and commits synchronously before it closes."""
    index: int
    bootstrap: str
    topic: str
    group: str
    seen: list[tuple[int, int, bytes]] = field(default_factory=list)  # (partition, offset, value)
    assigned: list[int] = field(default_factory=list)
    rebalances: int = 0
    errors: list[str] = field(default_factory=list)
    fatal: list[str] = field(default_factory=list)
    final_commit: str | None = None
    crash: BaseException | None = None

    def __post_init__(self):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"member-{self.index}", daemon=True)

    def _on_assign(self, consumer, partitions):
        self.rebalances += 1
        self.assigned = sorted(tp.partition for tp in partitions)

    def _on_revoke(self, consumer, partitions):
        self.assigned = []

    def _run(self):
        try:
            consumer = confluent_kafka.Consumer(ck_common(self, **{
                "client.id": f"roll-member-{self.index}", "group.id": self.group,
                "auto.offset.reset": "earliest", "enable.auto.commit": True, "auto.commit.interval.ms": 1000,
                "session.timeout.ms": 10_000, "heartbeat.interval.ms": 1000,
                "error_cb": lambda err: (self.fatal if err.fatal() else self.errors).append(str(err)),
                "logger": RDKAFKA_LOG}))
            consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            try:
                while not self.stop.is_set():
                    msg = consumer.poll(0.2)
                    if msg is None:
                        continue
                    if msg.error() is not None:
                        (self.fatal if msg.error().fatal() else self.errors).append(str(msg.error()))
                        continue
                    self.seen.append((msg.partition(), msg.offset(), msg.value()))
                try:
                    consumer.commit(asynchronous=False)
                    self.final_commit = "ok"
                except confluent_kafka.KafkaException as exc:
                    # _NO_OFFSET: nothing consumed since the last auto-commit.
                    self.final_commit = exc.args[0].name()
            finally:
                consumer.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.crash = exc


def stop_members(members) -> None:
    for m in members:
        m.stop.set()
    for m in members:
        m.thread.join(60)


def describe(cluster) -> list[dict]:
    with kp_admin(cluster, request_timeout_ms=5000) as admin:
        return admin.describe_topics()


def isr_full(topics: list[dict]) -> bool:
    """Every partition of every topic (__consumer_offsets too) has a leader
    and all its replicas in sync."""
    return bool(topics) and all(
        t["error_code"] == 0 and all(p["error_code"] == 0 and p["leader_id"] >= 1
                                     and sorted(p["isr_nodes"]) == sorted(p["replica_nodes"])
                                     for p in t["partitions"])
        for t in topics)


def led_by(topics: list[dict], node_id: int, topic: str | None = None) -> int:
    """How many partitions (of ``topic``, or of every topic) ``node_id`` leads."""
    return sum(p["leader_id"] == node_id for t in topics if topic in (None, t["name"]) for p in t["partitions"])


def acked_total(producers) -> int:
    return sum(len(p.acked) for p in producers)


def assert_healthy(producers, members) -> None:
    """Fails at once (inside wait_until too) on what must never happen while
    the traffic runs."""
    for p in producers:
        assert p.crash is None, f"producer {p.index} raised {p.crash!r}"
        assert not p.fatal, f"producer {p.index} fatal error: {p.fatal}"
        assert not p.errors, f"producer {p.index} delivery errors (first 5 of {len(p.errors)}): {p.errors[:5]}"
    for m in members:
        assert m.crash is None, f"member {m.index} raised {m.crash!r}"
        assert not m.fatal, f"member {m.index} fatal error: {m.fatal}"


def wait_more_acks(producers, members, n: int, timeout: float = 60, what: str = "") -> None:
    """Each producer gets n more records acknowledged."""
    want = [len(p.acked) + n for p in producers]

    def more():
        assert_healthy(producers, members)
        return all(len(p.acked) >= w for p, w in zip(producers, want))
    wait_until(more, timeout=timeout, interval=0.1, what=f"{n} more acks per producer {what}")


def longest_ack_gap(producers, start: float, end: float) -> float:
    """The longest time in [start, end] in which some partition had no
    record acknowledged (each gets about 250 a second)."""
    longest = 0.0
    for partition in range(PARTITIONS):
        times = sorted([start, end] + [t for p in producers for t, at in list(p.ack_times)
                                       if at == partition and start <= t <= end])
        longest = max([longest] + [b - a for a, b in zip(times, times[1:])])
    return longest


def check_log(cluster, topic: str, producers) -> tuple[dict[int, list], list[str]]:
    """Reads every partition from offset 0 with a fresh consumer; returns
    the records by partition and everything wrong with them."""
    problems: list[str] = []
    log = {p: read_partition(cluster, topic, p, timeout=90) for p in range(PARTITIONS)}
    where: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for p, records in log.items():
        offsets = [r.offset for r in records]
        if offsets != list(range(len(records))):
            problems.append(f"partition {p}: offsets are not 0..{len(records) - 1} without gaps")
        last: dict[int, int] = {}
        for r in records:
            ident = parse(r.value)
            if ident is None:
                problems.append(f"partition {p} offset {r.offset}: foreign value {r.value!r}")
                continue
            where.setdefault(ident, []).append((p, r.offset))
            producer, seq = ident
            if producer in last and seq <= last[producer]:
                problems.append(f"partition {p} offset {r.offset}: p{producer} seq {seq} after seq "
                                f"{last[producer]} (out of order)")
            last[producer] = seq
    acked = {(pr.index, seq): at for pr in producers for seq, at in pr.acked.items()}
    lost = [(k, at) for k, at in acked.items() if k not in where]
    moved = [(k, at, where[k]) for k, at in acked.items() if k in where and where[k] != [at]]
    unacked = [(k, at) for k, at in where.items() if k not in acked]
    duplicated = [(k, at) for k, at in where.items() if len(at) > 1]
    wrong_partition = [(pr.index, seq, at[0], pr.intended[seq]) for pr in producers
                       for seq, at in pr.acked.items() if at[0] != pr.intended[seq]]
    for what, items in [("acknowledged but lost", lost), ("not at the acknowledged offset", moved),
                        ("in the log but never acknowledged", unacked), ("in the log more than once", duplicated),
                        ("acknowledged on another partition than produced to", wrong_partition)]:
        if items:
            problems.append(f"{len(items)} records {what}, e.g. {sorted(items)[:5]}")
    return log, problems


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_rolling_restart_loses_and_duplicates_nothing(strom_cluster):
    seed = int(os.environ.get("STROM_TEST_SEED", time.time_ns() % 2**32))
    print(f"\nseed {seed} (STROM_TEST_SEED={seed} repeats it)")
    rng = random.Random(seed)
    # The controller moves leadership back to a restarted node soon (every
    # 2 s, not 300), so that each restart moves leaderships both ways
    # under load and each node leads partitions when its SIGTERM comes.
    cluster = strom_cluster(3, {**GROUP_CONFIG, "min.insync.replicas": 2,
                                "leader.imbalance.check.interval.seconds": 2})
    topic = create_topic(cluster, partitions=PARTITIONS, replication_factor=3,
                         configs={"min.insync.replicas": "2"})
    group = unique_name("roll")
    producers = [Producer(i, cluster.bootstrap, topic, seed) for i in range(PRODUCERS)]
    members = [Member(i, cluster.bootstrap, topic, group) for i in range(CONSUMERS)]
    figures: list[dict] = []
    done = False
    try:
        for worker in producers + members:
            worker.thread.start()
        wait_until(lambda: assert_healthy(producers, members) or all(m.assigned for m in members),
                   timeout=60, what="both group members assigned partitions")
        wait_more_acks(producers, members, 200, what="before the first restart")

        for node in cluster.nodes:
            topics = wait_until(
                lambda: assert_healthy(producers, members) or (
                    (t := describe(cluster)) and isr_full(t) and led_by(t, node.node_id, topic) and t),
                timeout=60, interval=0.1, what=f"every ISR full and node {node.node_id} leading a partition of {topic}")
            leaders = led_by(topics, node.node_id)
            began = time.monotonic()
            acked_before = acked_total(producers)
            stopped = node.terminate(timeout=60)
            # The controlled shutdown moved its leaderships away and took it
            # out of every ISR (as the other nodes' metadata answers).
            wait_until(lambda: (t := describe(cluster)) and not led_by(t, node.node_id)
                       and not any(node.node_id in p["isr_nodes"] for x in t for p in x["partitions"]),
                       timeout=10, interval=0.02, what=f"node {node.node_id} out of every leadership and ISR")
            launched = time.monotonic()
            node.launch()
            node.wait_http_ready(timeout=60)
            ready = time.monotonic()
            wait_until(lambda: assert_healthy(producers, members) or isr_full(describe(cluster)), timeout=120,
                       interval=0.05, what=f"every ISR full again after node {node.node_id} restarted")
            in_sync = time.monotonic()
            figures.append(f := {
                "node": node.node_id, "leaders": leaders, "sigterm_to_exit_s": stopped,
                "start_to_ready_s": ready - launched, "ready_to_isr_full_s": in_sync - ready,
                "longest_ack_gap_s": longest_ack_gap(producers, began, in_sync),
                "acked_during": acked_total(producers) - acked_before,
            })
            print(f"node {node.node_id} (leading {leaders} partitions): SIGTERM->exit {stopped:.2f}s, "
                  f"start->ready {f['start_to_ready_s']:.2f}s, ready->ISR full {f['ready_to_isr_full_s']:.2f}s, "
                  f"longest a partition went without an ack {f['longest_ack_gap_s']:.2f}s, "
                  f"{f['acked_during']} acked meanwhile")
            # Traffic flows through the restarted cluster before the next node
            # goes (a seeded amount).
            wait_more_acks(producers, members, rng.randint(300, 1500), what=f"after node {node.node_id}'s restart")

        wait_until(lambda: assert_healthy(producers, members) or isr_full(describe(cluster)), timeout=60,
                   interval=0.1, what="every ISR full after the restarts")
        wait_more_acks(producers, members, rng.randint(500, 1500), what="after the last restart")
        done = True
    finally:
        for p in producers:
            p.stop.set()
        for p in producers:
            p.thread.join(150)
        if not done:
            stop_members(members)
    errors = {p.index: p.errors for p in producers if p.errors}
    assert not errors, f"seed {seed}: delivery errors (the client did not retry through): " + "; ".join(
        f"producer {i}: {len(e)}, first {e[:5]}" for i, e in errors.items())
    assert_healthy(producers, [])
    assert all(p.unflushed == 0 for p in producers), \
        f"seed {seed}: records still undelivered after flush: {[p.unflushed for p in producers]}"
    assert all(len(p.acked) == len(p.intended) for p in producers), \
        f"seed {seed}: sent {[len(p.intended) for p in producers]}, acknowledged {[len(p.acked) for p in producers]}"
    acked = {(pr.index, seq): at for pr in producers for seq, at in pr.acked.items()}

    try:
        # The group reads on until it has seen every acknowledged record.
        def group_read_everything():
            assert_healthy([], members)
            seen = {(p, o) for m in members for p, o, _ in list(m.seen)}
            return all(at in seen for at in acked.values())
        wait_until(group_read_everything, timeout=90, interval=0.2,
                   what="the group to read every acknowledged record")
    finally:
        stop_members(members)
    assert_healthy([], members)

    log, problems = check_log(cluster, topic, producers)
    ends = end_offsets(cluster, topic, range(PARTITIONS))
    problems += [f"partition {p}: end offset {ends[p]} but {len(log[p])} records read"
                 for p in range(PARTITIONS) if ends[p] != len(log[p])]
    by_offset = {(p, r.offset): r.value for p, records in log.items() for r in records}
    mismatched = [(m.index, p, o, v, by_offset.get((p, o))) for m in members for p, o, v in m.seen
                  if by_offset.get((p, o)) != v]
    if mismatched:
        problems.append(f"{len(mismatched)} records the group read differ from the log at their offset, "
                        f"e.g. {mismatched[:5]}")
    reader = confluent_kafka.Consumer(ck_common(cluster, **{"group.id": group, "enable.auto.commit": False}))
    try:
        committed = {tp.partition: tp.offset
                     for tp in reader.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)}
    finally:
        reader.close()
    problems += [f"partition {p}: the group committed {committed[p]}, the end is {ends[p]}"
                 for p in range(PARTITIONS) if committed[p] != ends[p]]

    per_producer = {p.index: len(p.acked) for p in producers}
    print(f"acknowledged {sum(per_producer.values())} records ({per_producer} by producer), "
          f"{sum(ends.values())} in the log ({[ends[p] for p in range(PARTITIONS)]} by partition); "
          f"group read {sum(len(m.seen) for m in members)} (with re-reads), "
          f"rebalances {[m.rebalances for m in members]}, final commits {[m.final_commit for m in members]}")
    client_errors = [e for p in producers for e in p.client_errors] + [e for m in members for e in m.errors]
    print(f"{len(client_errors)} transient client errors reported (not delivery errors), e.g. "
          f"{sorted(set(client_errors))[:6]}")
    print("restart figures: " + "; ".join(
        f"node {f['node']} SIGTERM->exit {f['sigterm_to_exit_s']:.2f}s start->ready {f['start_to_ready_s']:.2f}s "
        f"ready->ISR full {f['ready_to_isr_full_s']:.2f}s" for f in figures))
    print(f"seed {seed}")
    assert not problems, f"seed {seed}: " + "\n".join(problems)
