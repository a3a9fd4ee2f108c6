"""Differential: KIP-848 ConsumerGroupHeartbeat (v1), Strom against the
reference Kafka over the raw wire: the request checks Kafka makes before a
group is touched, the member-epoch check, and static membership.

- checks: a v1 join without a member id, without a rebalance timeout,
  with a null TopicPartitions, with neither names nor a regex, with an
  assignor the broker lacks; a static leave (-2) without an instance id;
  an epoch below -2; a heartbeat to a group that does not exist;
- epochs: a heartbeat ahead of the member's epoch, one from a member the
  group does not know;
- static membership: a second process joining with an instance id still
  in use (UNRELEASED_INSTANCE_ID); an instance id the group does not know;
  the member leaving for now (-2) and its successor, under a new member
  id, taking over its partitions at the same epoch; the old member id then
  fenced (FENCED_INSTANCE_ID); leaving for good.

Each step writes down the error's name and, where it matters, the epoch
and the number of partitions assigned; both transcripts must be equal and
each error the one ``EXPECTED`` names (what Kafka 4.1.1 answers).
"""

from __future__ import annotations

import uuid

import kafka_wire as kw
from helpers import assert_same_transcripts, unique_name, wait_until

EXPECTED = {
    "join: v1 without a member id": "INVALID_REQUEST",
    "join: no rebalance timeout": "INVALID_REQUEST",
    "join: null TopicPartitions": "INVALID_REQUEST",
    "join: neither names nor a regex": "INVALID_REQUEST",
    "join: an unknown assignor": "UNSUPPORTED_ASSIGNOR",
    "leave for now: no instance id": "INVALID_REQUEST",
    "heartbeat: epoch -3": "INVALID_REQUEST",
    "heartbeat: a group that does not exist": "GROUP_ID_NOT_FOUND",
    "join: static member a1": "NONE",
    "join: a2 with a1's instance id": "UNRELEASED_INSTANCE_ID",
    "heartbeat: a1 under an unknown instance id": "UNKNOWN_MEMBER_ID",
    "heartbeat: a1 ahead of its epoch": "FENCED_MEMBER_EPOCH",
    "heartbeat: an unknown member": "UNKNOWN_MEMBER_ID",
    "heartbeat: a1": "NONE",
    "leave for now: a1": "NONE",
    "join: a2 takes over a1's instance": "NONE",
    "heartbeat: a1, replaced": "FENCED_INSTANCE_ID",
    "heartbeat: a2": "NONE",
    "leave: an unknown member": "UNKNOWN_MEMBER_ID",
    "leave: a2": "NONE",
}

# COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR.
NOT_READY = (14, 15, 16)
PARTITIONS = 4


def offsets_partition(group: str, partitions: int = 50) -> int:
    """The __consumer_offsets partition of ``group``, as Kafka picks it:
    the absolute value of Java's String.hashCode (0 for Integer.MIN_VALUE)
    modulo offsets.topic.num.partitions (50 on both brokers here)."""
    h = 0
    units = group.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= 1 << 31 else h
    return (0 if h == -(1 << 31) else abs(h)) % partitions


class Script:
    def __init__(self, broker):
        host, port = broker.bootstrap.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.topic = unique_name("diff-848")
        self.group = unique_name("diff-848-group")
        code, message = kw.create_topics(self.host, self.port, [(self.topic, PARTITIONS, {})])[self.topic]
        assert code == 0, f"{kw.error_name(code)} {message}"
        wait_until(lambda: kw.find_coordinator(self.host, self.port, self.group)[0] == 0,
                   interval=0.1, what=f"the coordinator of {self.group}")
        self.sock = kw.connect(self.host, self.port, timeout=30.0)
        self.correlation = 0
        self.transcript: list[tuple] = []
        self._wait_until_the_coordinator_sees_the_topic()

    def _wait_until_the_coordinator_sees_the_topic(self) -> None:
        """Kafka's coordinator assigns from its own metadata image, which
        learns of a new topic some tens of milliseconds after CreateTopics
        and Metadata show it: a join before that gets nothing assigned.
        A probe group kept in the same __consumer_offsets partition (so on
        the same coordinator shard) joins until it is given every partition,
        then leaves."""
        probe = next(g for g in (f"{self.group}-probe-{i}" for i in range(10_000))
                     if offsets_partition(g) == offsets_partition(self.group))
        member = str(uuid.uuid4())

        def assigned_all():
            r = self.beat(member, 0, group=probe, rebalance_timeout_ms=30_000, topics=[self.topic], owned={})
            self.beat(member, -1, group=probe)
            return r.error_code == 0 and sum(len(ps) for ps in (r.assignment or {}).values()) == PARTITIONS
        wait_until(assigned_all, interval=0.05, what=f"the coordinator of {self.group} seeing {self.topic}")

    def beat(self, member: str, epoch: int, group: str | None = None, **fields) -> kw.ConsumerHeartbeat:
        def once():
            self.correlation += 1
            r = kw.consumer_group_heartbeat(self.sock, self.correlation, group or self.group, member, epoch,
                                            **fields)
            return None if r.error_code in NOT_READY else r
        return wait_until(once, interval=0.1, what="a coordinator that answers")

    def join(self, member: str, **fields) -> kw.ConsumerHeartbeat:
        fields = {"rebalance_timeout_ms": 30_000, "topics": [self.topic], "owned": {}, **fields}
        return self.beat(member, 0, **fields)

    def note(self, step: str, r: kw.ConsumerHeartbeat, *seen) -> None:
        self.transcript.append((step, kw.error_name(r.error_code), *seen))

    def run(self) -> list[tuple]:
        a1, a2 = str(uuid.uuid4()), str(uuid.uuid4())
        self.note("join: v1 without a member id", self.join(""))
        self.note("join: no rebalance timeout", self.join(a1, rebalance_timeout_ms=-1))
        self.note("join: null TopicPartitions", self.join(a1, owned=None))
        self.note("join: neither names nor a regex", self.join(a1, topics=None))
        self.note("join: an unknown assignor", self.join(a1, assignor="sticky"))
        self.note("leave for now: no instance id", self.beat(a1, -2))
        self.note("heartbeat: epoch -3", self.beat(a1, -3))
        self.note("heartbeat: a group that does not exist", self.beat(a1, 1, group=unique_name("nowhere")))

        first = self.join(a1, instance_id="inst-a")
        assigned = sum(len(ps) for ps in (first.assignment or {}).values())
        self.note("join: static member a1", first, first.member_epoch, assigned)
        epoch = first.member_epoch
        owned = first.assignment or {}
        self.note("join: a2 with a1's instance id", self.join(a2, instance_id="inst-a"))
        self.note("heartbeat: a1 under an unknown instance id",
                  self.beat(a1, epoch, instance_id="inst-x", owned=owned))
        self.note("heartbeat: a1 ahead of its epoch", self.beat(a1, epoch + 5, instance_id="inst-a"))
        self.note("heartbeat: an unknown member", self.beat(str(uuid.uuid4()), epoch))
        r = self.beat(a1, epoch, instance_id="inst-a", owned=owned)
        self.note("heartbeat: a1", r, r.member_epoch)
        r = self.beat(a1, -2, instance_id="inst-a")
        self.note("leave for now: a1", r, r.member_epoch)
        r = self.join(a2, instance_id="inst-a")
        taken = sum(len(ps) for ps in (r.assignment or {}).values())
        self.note("join: a2 takes over a1's instance", r, r.member_epoch == epoch, taken)
        self.note("heartbeat: a1, replaced", self.beat(a1, epoch, instance_id="inst-a", owned=owned))
        r = self.beat(a2, r.member_epoch, instance_id="inst-a", owned=r.assignment or {})
        self.note("heartbeat: a2", r, r.member_epoch == epoch)
        self.note("leave: an unknown member", self.beat(str(uuid.uuid4()), -1))
        r = self.beat(a2, -1, instance_id="inst-a")
        self.note("leave: a2", r, r.member_epoch)
        self.sock.close()
        return self.transcript


def test_consumer_group_heartbeats_answer_as_kafka(broker, kafka_ref):
    kafka = Script(kafka_ref).run()
    strom = Script(broker).run()
    assert_same_transcripts(kafka, strom, EXPECTED)
