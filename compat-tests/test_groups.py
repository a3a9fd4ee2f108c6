"""Consumer groups (classic protocol) with kafka-python and confluent-kafka:
members split a topic, commit, resume, hand over; admin list/describe/delete;
committed offsets survive kill -9."""

from __future__ import annotations

import threading
import time

import confluent_kafka
import kafka
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition as CkTP
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

import kafka_wire
from helpers import (CONFLUENT, KAFKA_PYTHON, Rec, ck_admin, ck_common, ck_result, coordinator_node, create_topic,
                     kp_common, produce, unique_name, wait_until)

# A short initial delay keeps the tests quick; sessions as clients set them.
GROUP_CONFIG = {"group.initial.rebalance.delay.ms": 200}


@pytest.fixture
def gbroker(strom_factory):
    return strom_factory(GROUP_CONFIG)


def records(n: int, prefix: str) -> list[Rec]:
    return [Rec(key=None, value=f"{prefix}-{i}".encode()) for i in range(n)]


def kp_group_consumer(broker, group: str, topic: str | None = None, **overrides) -> kafka.KafkaConsumer:
    cfg = kp_common(broker, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
                    session_timeout_ms=10000, heartbeat_interval_ms=500)
    cfg.update(overrides)
    c = kafka.KafkaConsumer(**cfg)
    if topic:
        c.subscribe([topic])
    return c


def ck_group_consumer(broker, group: str, topic: str, **overrides) -> confluent_kafka.Consumer:
    cfg = ck_common(broker, **{"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
                               "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
    cfg.update(overrides)
    c = confluent_kafka.Consumer(cfg)
    c.subscribe([topic])
    return c


def ck_poll_values(c: confluent_kafka.Consumer, timeout: float = 0.2) -> list[bytes]:
    out = []
    for m in c.consume(num_messages=500, timeout=timeout):
        assert m.error() is None, m.error()
        out.append(m.value())
    return out


class KpMember:
    """A kafka-python group member polling in its own thread, as an
    application runs it; the test reads what it saw."""

    def __init__(self, broker, group: str, topic: str):
        self.consumer = kp_group_consumer(broker, group, topic)
        self.values: list[bytes] = []
        self.assignment: set = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            batch = self.consumer.poll(100)
            with self.lock:
                for msgs in batch.values():
                    self.values.extend(m.value for m in msgs)
                self.assignment = {tp.partition for tp in self.consumer.assignment()}
            if batch:
                self.consumer.commit()

    def seen(self) -> tuple[set, list[bytes]]:
        with self.lock:
            return set(self.assignment), list(self.values)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.consumer.close()


def test_kafka_python_members_split_partitions_and_read_each_record_once(gbroker):
    topic = create_topic(gbroker, partitions=6)
    group = unique_name("g")
    a = KpMember(gbroker, group, topic)
    b = KpMember(gbroker, group, topic)
    try:
        def split():
            pa, pb = a.seen()[0], b.seen()[0]
            return len(pa) == 3 and len(pb) == 3 and not (pa & pb)
        wait_until(split, what="both members own three partitions")
        produce(KAFKA_PYTHON, gbroker, topic, records(300, "v"))
        wait_until(lambda: len(a.seen()[1]) + len(b.seen()[1]) >= 300, what="all records consumed")
        got = a.seen()[1] + b.seen()[1]
        assert sorted(got) == sorted(r.value for r in records(300, "v")), "each record exactly once"
    finally:
        a.close()
        b.close()


def test_confluent_group_commits_and_a_new_member_resumes(gbroker):
    topic = create_topic(gbroker, partitions=3)
    group = unique_name("g")
    produce(CONFLUENT, gbroker, topic, records(100, "first"))
    c = ck_group_consumer(gbroker, group, topic)
    got: list[bytes] = []
    try:
        wait_until(lambda: got.extend(ck_poll_values(c)) or len(got) >= 100, what="first batch")
        c.commit(asynchronous=False)
    finally:
        c.close()
    assert sorted(got) == sorted(r.value for r in records(100, "first"))
    produce(CONFLUENT, gbroker, topic, records(50, "second"))
    c = ck_group_consumer(gbroker, group, topic)
    again: list[bytes] = []
    try:
        wait_until(lambda: again.extend(ck_poll_values(c)) or len(again) >= 50, what="second batch")
        # Nothing of the first 100 comes back: the group resumed from its commits.
        assert sorted(again) == sorted(r.value for r in records(50, "second"))
    finally:
        c.close()


def test_a_member_that_leaves_is_taken_over(gbroker):
    topic = create_topic(gbroker, partitions=4)
    group = unique_name("g")
    a = ck_group_consumer(gbroker, group, topic)
    b = ck_group_consumer(gbroker, group, topic)
    try:
        def both_assigned():
            ck_poll_values(a, 0.1)
            ck_poll_values(b, 0.1)
            return len(a.assignment()) == 2 and len(b.assignment()) == 2
        wait_until(both_assigned, what="two members with two partitions each")
        b.close()
        b = None

        def a_owns_all():
            ck_poll_values(a, 0.1)
            return len(a.assignment()) == 4
        wait_until(a_owns_all, what="the remaining member takes every partition")
        produce(CONFLUENT, gbroker, topic, records(40, "after"))
        got: list[bytes] = []
        wait_until(lambda: got.extend(ck_poll_values(a)) or len(got) >= 40, what="records after the handover")
        assert sorted(got) == sorted(r.value for r in records(40, "after"))
    finally:
        a.close()
        if b is not None:
            b.close()


def test_two_groups_read_the_same_topic_independently(gbroker):
    topic = create_topic(gbroker, partitions=2)
    produce(KAFKA_PYTHON, gbroker, topic, records(60, "x"))
    for group in (unique_name("g1"), unique_name("g2")):
        c = kp_group_consumer(gbroker, group, topic)
        got: list[bytes] = []
        try:
            def done():
                for msgs in c.poll(200).values():
                    got.extend(m.value for m in msgs)
                return len(got) >= 60
            wait_until(done, what=f"group {group} reads everything")
        finally:
            c.close()
        assert sorted(got) == sorted(r.value for r in records(60, "x"))


@pytest.mark.slow
def test_committed_offsets_survive_kill_9(gbroker):
    topic = create_topic(gbroker, partitions=3)
    group = unique_name("g")
    c = kp_group_consumer(gbroker, group)
    offsets = {TopicPartition(topic, p): OffsetAndMetadata(10 * (p + 1), f"meta-{p}", -1) for p in range(3)}
    try:
        c.commit(offsets)
    finally:
        c.close()
    gbroker.kill9()
    gbroker.restart()
    c = kp_group_consumer(gbroker, group)
    try:
        for p in range(3):
            committed = wait_until(lambda: c.committed(TopicPartition(topic, p), metadata=True), what="committed offset")
            assert committed.offset == 10 * (p + 1)
            assert committed.metadata == f"meta-{p}"
    finally:
        c.close()


def test_admin_lists_describes_and_deletes_groups(gbroker):
    topic = create_topic(gbroker, partitions=2)
    produce(CONFLUENT, gbroker, topic, records(10, "a"))
    group = unique_name("g")
    c = ck_group_consumer(gbroker, group, topic)
    admin = ck_admin(gbroker)
    try:
        got: list[bytes] = []
        wait_until(lambda: got.extend(ck_poll_values(c)) or len(got) >= 10, what="records")
        c.commit(asynchronous=False)
        listed = ck_result(admin.list_consumer_groups())
        assert group in {g.group_id for g in listed.valid}
        desc = ck_result(admin.describe_consumer_groups([group])[group])
        assert str(desc.state).endswith("STABLE")
        assert len(desc.members) == 1
        assert {tp.partition for tp in desc.members[0].assignment.topic_partitions} == {0, 1}
        # A group with members cannot be deleted.
        with pytest.raises(confluent_kafka.KafkaException) as err:
            ck_result(admin.delete_consumer_groups([group])[group])
        assert err.value.args[0].code() == confluent_kafka.KafkaError.NON_EMPTY_GROUP
        offsets = ck_result(admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group])
        committed = {tp.partition: tp.offset for tp in offsets.topic_partitions}
        assert sum(committed.values()) == 10
    finally:
        c.close()
    wait_until(lambda: str(ck_result(admin.describe_consumer_groups([group])[group]).state).endswith("EMPTY"),
               what="group empty after the member left")
    ck_result(admin.delete_consumer_groups([group])[group])
    assert group not in {g.group_id for g in ck_result(admin.list_consumer_groups()).valid}
    with pytest.raises(confluent_kafka.KafkaException) as err:
        ck_result(admin.delete_consumer_groups([group])[group])
    assert err.value.args[0].code() == confluent_kafka.KafkaError.GROUP_ID_NOT_FOUND


def test_kcat_balanced_consumer_reads_the_topic(gbroker, tmp_path):
    import subprocess
    topic = create_topic(gbroker, partitions=2)
    produce(KAFKA_PYTHON, gbroker, topic, records(20, "k"))
    group = unique_name("g")
    proc = subprocess.run(
        ["kcat", "-b", gbroker.bootstrap, "-G", group, "-o", "beginning", "-e", "-q", "-f", "%s\n", topic],
        capture_output=True, timeout=60, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == sorted(r.value.decode() for r in records(20, "k"))


@pytest.mark.slow
def test_a_stalled_member_is_evicted_after_its_session_timeout_and_not_before(gbroker):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    session_ms = 6000
    topic = create_topic(gbroker, partitions=4)
    group = unique_name("g")
    script = Path(__file__).with_name("group_member.py")
    member = subprocess.Popen([sys.executable, str(script), gbroker.bootstrap, group, topic, str(session_ms)],
                              stdout=subprocess.PIPE, text=True)
    b = ck_group_consumer(gbroker, group, topic, **{"session.timeout.ms": session_ms})
    try:
        def split():
            ck_poll_values(b, 0.1)
            return len(b.assignment()) == 2
        wait_until(split, what="two members with two partitions each")
        os.kill(member.pid, signal.SIGSTOP)
        stopped = time.monotonic()

        def took_over():
            ck_poll_values(b, 0.1)
            return len(b.assignment()) == 4
        wait_until(took_over, timeout=session_ms / 1000 + 20, what="the live member takes every partition")
        waited = time.monotonic() - stopped
        # The stalled member's last heartbeat may predate the SIGSTOP by up
        # to one heartbeat interval (0.5 s).
        assert waited >= session_ms / 1000 - 1.0, f"evicted after {waited:.1f} s, before the session timeout"
    finally:
        b.close()
        os.kill(member.pid, signal.SIGCONT)
        member.kill()
        member.wait()


def test_cooperative_sticky_moves_only_what_must_move(gbroker):
    topic = create_topic(gbroker, partitions=6)
    group = unique_name("g")
    revoked: list = []
    strategy = {"partition.assignment.strategy": "cooperative-sticky"}
    a = confluent_kafka.Consumer(ck_common(gbroker, **{"group.id": group, "enable.auto.commit": False,
                                                       "auto.offset.reset": "earliest", **strategy}))
    a.subscribe([topic], on_revoke=lambda c, parts: revoked.extend(parts))
    b = None
    try:
        def a_owns_all():
            ck_poll_values(a, 0.1)
            return len(a.assignment()) == 6
        wait_until(a_owns_all, what="the first member owns all six partitions")
        before = {tp.partition for tp in a.assignment()}
        b = ck_group_consumer(gbroker, group, topic, **strategy)

        def shared():
            ck_poll_values(a, 0.1)
            ck_poll_values(b, 0.1)
            return len(a.assignment()) == 3 and len(b.assignment()) == 3
        wait_until(shared, what="three partitions each")
        after = {tp.partition for tp in a.assignment()}
        assert after <= before
        assert len(revoked) == 3, f"only the three partitions that moved were revoked: {revoked}"
    finally:
        a.close()
        if b is not None:
            b.close()


def test_a_static_member_rejoins_without_a_rebalance(gbroker):
    topic = create_topic(gbroker, partitions=2)
    group = unique_name("g")
    events: list[str] = []
    dyn = confluent_kafka.Consumer(ck_common(gbroker, **{"group.id": group, "enable.auto.commit": False}))
    dyn.subscribe([topic], on_assign=lambda c, p: events.append("assign"), on_revoke=lambda c, p: events.append("revoke"))
    static_cfg = {"group.instance.id": "instance-1", "session.timeout.ms": 30000}
    s1 = ck_group_consumer(gbroker, group, topic, **static_cfg)
    try:
        def stable():
            ck_poll_values(dyn, 0.1)
            ck_poll_values(s1, 0.1)
            return len(dyn.assignment()) == 1 and len(s1.assignment()) == 1
        wait_until(stable, what="one partition each")
        s1_partitions = {tp.partition for tp in s1.assignment()}
        seen = len(events)
        # A static member closing does not leave the group; its successor
        # with the same instance id takes its place within the session.
        s1.close()
        s1 = ck_group_consumer(gbroker, group, topic, **static_cfg)

        def back():
            ck_poll_values(dyn, 0.1)
            ck_poll_values(s1, 0.1)
            return len(s1.assignment()) == 1
        wait_until(back, what="the restarted static member gets its partition back")
        assert {tp.partition for tp in s1.assignment()} == s1_partitions
        for _ in range(10):
            ck_poll_values(dyn, 0.1)
        assert events[seen:] == [], f"the other member saw a rebalance: {events[seen:]}"
    finally:
        s1.close()
        dyn.close()


CONSUMER_PROTOCOL = {"group.protocol": "consumer"}


def ck_848_consumer(broker, group: str, topic: str, **overrides) -> confluent_kafka.Consumer:
    cfg = ck_common(broker, **{"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
                               **CONSUMER_PROTOCOL})
    cfg.update(overrides)
    c = confluent_kafka.Consumer(cfg)
    c.subscribe([topic])
    return c


@pytest.fixture
def kip848_broker(strom_factory):
    # Short heartbeats keep reconciliation quick in tests.
    return strom_factory({**GROUP_CONFIG, "group.consumer.heartbeat.interval.ms": 500})


def test_consumer_protocol_members_split_and_read_each_record_once(kip848_broker):
    broker = kip848_broker
    topic = create_topic(broker, partitions=6)
    group = unique_name("g848")
    a = ck_848_consumer(broker, group, topic)
    b = ck_848_consumer(broker, group, topic)
    try:
        def split():
            ck_poll_values(a, 0.1)
            ck_poll_values(b, 0.1)
            pa = {tp.partition for tp in a.assignment()}
            pb = {tp.partition for tp in b.assignment()}
            return len(pa) == 3 and len(pb) == 3 and not (pa & pb)
        wait_until(split, what="three partitions each, disjoint")
        # Spread over every partition (null keys would go to a few), so that
        # both members have something to commit.
        spread = [Rec(key=None, value=r.value, partition=i % 6) for i, r in enumerate(records(120, "p"))]
        produce(CONFLUENT, broker, topic, spread)
        got: list[bytes] = []

        def drained():
            got.extend(ck_poll_values(a, 0.1))
            got.extend(ck_poll_values(b, 0.1))
            return len(got) >= 120
        wait_until(drained, what="all records")
        assert sorted(got) == sorted(r.value for r in records(120, "p"))
        a.commit(asynchronous=False)
        b.commit(asynchronous=False)
        admin = ck_admin(broker)
        desc = ck_result(admin.describe_consumer_groups([group])[group])
        assert len(desc.members) == 2
        listing = {g.group_id: g for g in ck_result(admin.list_consumer_groups()).valid}[group]
        assert str(listing.type).endswith("CONSUMER"), f"a KIP-848 group, not {listing.type}"
        offsets = ck_result(admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group])
        assert sum(tp.offset for tp in offsets.topic_partitions if tp.offset >= 0) == 120
    finally:
        a.close()
        b.close()


def test_a_consumer_group_s_members_carry_on_when_its_coordinator_moves(strom_cluster):
    """KIP-848 members keep their ids, epochs and assignments when the node
    leading the group's ``__consumer_offsets`` partition is killed: the new
    leader loads the group from its records, and both members' next
    heartbeats (raw, so nothing retries or rejoins behind the test's back)
    are answered at the epochs they had, with what they owned, without a
    rebalance."""
    cluster = strom_cluster(3, {"min.insync.replicas": 2})
    topic = create_topic(cluster, partitions=4, replication_factor=3)
    group = unique_name("g848-move")
    coordinator = coordinator_node(cluster, group, kafka_wire.COORDINATOR_GROUP)
    correlation = iter(range(1, 1_000_000))
    # COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR.
    not_ready = (14, 15, 16)

    def beat(node: int, member: str, epoch: int, **fields) -> kafka_wire.ConsumerHeartbeat:
        n = cluster.node(node)
        with kafka_wire.connect(n.host, n.port, timeout=10.0) as sock:
            return kafka_wire.consumer_group_heartbeat(sock, next(correlation), group, member, epoch, **fields)

    join = {"rebalance_timeout_ms": 30_000, "topics": [topic], "owned": {}}
    a, b = "member-a", "member-b"
    owned: dict[str, dict] = {}
    epochs: dict[str, int] = {}
    for m in (a, b):
        r = wait_until(lambda m=m: (r := beat(coordinator, m, 0, **join)).error_code not in not_ready and r,
                       what=f"{m} joins")
        assert r.error_code == 0, r
        epochs[m], owned[m] = r.member_epoch, r.assignment or {}

    def converged():
        for m in (a, b):
            r = beat(coordinator, m, epochs[m], owned=owned[m])
            assert r.error_code == 0, r
            epochs[m] = r.member_epoch
            if r.assignment is not None:
                owned[m] = r.assignment
        return (epochs[a] == epochs[b]
                and [sum(map(len, owned[m].values())) for m in (a, b)] == [2, 2])
    wait_until(converged, interval=0.1, what="two partitions each, at one epoch")
    before = (dict(epochs), {m: {t: sorted(ps) for t, ps in owned[m].items()} for m in (a, b)})

    cluster.node(coordinator).kill9()
    moved = wait_until(lambda: (n := coordinator_node(cluster, group, kafka_wire.COORDINATOR_GROUP)) != coordinator
                       and n, timeout=30, what="another node coordinating the group")

    def answered(m: str) -> kafka_wire.ConsumerHeartbeat:
        def once():
            r = beat(moved, m, epochs[m], owned=owned[m])
            return r.error_code not in not_ready and r
        return wait_until(once, timeout=30, interval=0.1, what=f"the new coordinator answering {m}")
    after_epochs, after_owned = {}, {}
    for m in (a, b):
        r = answered(m)
        assert r.error_code == 0, f"{m}: {kafka_wire.error_name(r.error_code)} {r.error_message}"
        after_epochs[m] = r.member_epoch
        # A loaded member hears its assignment again on its first heartbeat.
        assert r.assignment is not None, f"{m}: no assignment sent"
        after_owned[m] = {t: sorted(ps) for t, ps in r.assignment.items()}
    assert (after_epochs, after_owned) == before, "the members carried on where they were"
    cluster.node(coordinator).restart()



def test_a_static_consumer_protocol_member_rejoins_without_a_rebalance(kip848_broker):
    """librdkafka's KIP-848 static member leaves with epoch -2 on close; its
    successor under the same group.instance.id gets the same partitions
    back, and the other member's assignment never changes."""
    broker = kip848_broker
    topic = create_topic(broker, partitions=2)
    group = unique_name("g848-static")
    events: list[tuple[str, list[int]]] = []
    dyn = ck_848_consumer(broker, group, topic)
    dyn.subscribe([topic], on_assign=lambda c, ps: events.append(("assign", [p.partition for p in ps])),
                  on_revoke=lambda c, ps: events.append(("revoke", [p.partition for p in ps])))
    static_cfg = {"group.instance.id": unique_name("instance")}
    s1 = ck_848_consumer(broker, group, topic, **static_cfg)
    try:
        def stable():
            ck_poll_values(dyn, 0.1)
            ck_poll_values(s1, 0.1)
            return len(dyn.assignment()) == 1 and len(s1.assignment()) == 1
        wait_until(stable, what="one partition each")
        s1_partitions = {tp.partition for tp in s1.assignment()}
        seen = len(events)
        s1.close()
        # Three heartbeat intervals with the instance gone: a dynamic
        # member's leave would have given its partition to the other by now.
        for _ in range(15):
            ck_poll_values(dyn, 0.1)
        assert len(dyn.assignment()) == 1, "the static member's partition waits for it"
        s1 = ck_848_consumer(broker, group, topic, **static_cfg)

        def back():
            ck_poll_values(dyn, 0.1)
            ck_poll_values(s1, 0.1)
            return len(s1.assignment()) == 1
        wait_until(back, what="the restarted static member gets its partition back")
        assert {tp.partition for tp in s1.assignment()} == s1_partitions
        for _ in range(10):
            ck_poll_values(dyn, 0.1)
        assert events[seen:] == [], f"the other member's assignment changed: {events[seen:]}"
        admin = ck_admin(broker)
        desc = ck_result(admin.describe_consumer_groups([group])[group])
        assert len(desc.members) == 2, "the successor replaced its predecessor"
    finally:
        s1.close()
        dyn.close()
