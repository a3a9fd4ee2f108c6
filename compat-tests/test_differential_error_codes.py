"""Differential: the error codes of classic groups, idempotent and
transactional producers, and ListOffsets, Strom against the reference
Kafka, over the raw wire (kafka-python's protocol classes encode the
requests; no client logic retries or hides an answer).

Also the answers to bad topic names and CreateTopics' validation, produce
and fetch of unknown topics and partitions, a fetch past the end, and a
request with an unknown api key (the connection is closed).

Each scenario is a script of requests run once against each broker, on
names made fresh for it; every step writes down what a client observes
(the error name, and where it matters a generation, an epoch's change, an
offset). The two transcripts must be equal, step by step, and each step's
error must be the one ``EXPECTED`` names (Kafka's, so a change in either
broker shows).

- groups: JoinGroup v5 with an unknown member id, without one
  (MEMBER_ID_REQUIRED), with another protocol type; SyncGroup, Heartbeat and
  OffsetCommit with a wrong generation and an unknown member; a second
  member's join putting the group in rebalance (REBALANCE_IN_PROGRESS to
  the first member's heartbeat; its commit at the current generation still
  taken) until the first rejoins;
  LeaveGroup of an unknown member;
- idempotence: a duplicate sequence (the first append's offset answered
  again), a gap in sequences, an unknown producer id (taken at any
  sequence since KIP-360);
- transactions: EndTxn with no transaction open, AddPartitionsToTxn with
  another producer's id, a transactional produce to a partition not in the
  transaction, and after a second InitProducerId (the epoch bump that
  fences) AddPartitionsToTxn, EndTxn and Produce with the old epoch; a
  transaction left open past its timeout (1 s) aborted by the coordinator,
  so that read_committed reads past it and the producer cannot commit it;
- ListOffsets v7: earliest, latest, max timestamp, by timestamp (between
  records, after all), read_committed latest (the last stable offset) while
  a transaction is open, an unknown partition.

Not here: NOT_COORDINATOR (on one node every coordinator is this node; the
cluster issue brings it), CONCURRENT_TRANSACTIONS (a race with marker
writes, not a deterministic answer).
"""

from __future__ import annotations

import threading
import time

from kafka.protocol.admin.topics import CreateTopicsRequest, CreateTopicsResponse
from kafka.protocol.consumer.group import (HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
                                           JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
                                           OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest,
                                           SyncGroupResponse)
from kafka.protocol.consumer.offsets import ListOffsetsRequest, ListOffsetsResponse
from kafka.protocol.metadata.find_coordinator import FindCoordinatorRequest, FindCoordinatorResponse
from kafka.protocol.producer.transaction import (AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
                                                 EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
                                                 InitProducerIdResponse)

import kafka_wire as kw
from helpers import assert_same_transcripts, unique_name, wait_until

# step -> the error Kafka 4.1.1 answers (checked on both brokers).
EXPECTED = {
    "create: a name with a slash": "INVALID_TOPIC_EXCEPTION",
    "create: a name of 250 characters": "INVALID_TOPIC_EXCEPTION",
    "create: the name ..": "INVALID_TOPIC_EXCEPTION",
    "create: the metadata log's name": "INVALID_REQUEST",
    "create: zero partitions": "INVALID_PARTITIONS",
    "create: replication factor 2 on one broker": "INVALID_REPLICATION_FACTOR",
    "create: a bad config value": "INVALID_CONFIG",
    "create: an unknown config": "INVALID_CONFIG",
    "create: validate only": "NONE",
    "create: existing": "TOPIC_ALREADY_EXISTS",
    "produce: unknown topic": "UNKNOWN_TOPIC_OR_PARTITION",
    "produce: unknown partition": "UNKNOWN_TOPIC_OR_PARTITION",
    "fetch: unknown topic": "UNKNOWN_TOPIC_OR_PARTITION",
    "fetch: past the end": "OFFSET_OUT_OF_RANGE",
    "request: unknown api key": "NONE",
    "join: unknown member id, new group": "UNKNOWN_MEMBER_ID",
    "join: no member id": "MEMBER_ID_REQUIRED",
    "join: with the given id": "NONE",
    "sync: wrong generation": "ILLEGAL_GENERATION",
    "sync: unknown member": "UNKNOWN_MEMBER_ID",
    "sync: the leader's assignment": "NONE",
    "heartbeat: wrong generation": "ILLEGAL_GENERATION",
    "heartbeat: unknown member": "UNKNOWN_MEMBER_ID",
    "heartbeat: unknown group": "UNKNOWN_MEMBER_ID",
    "heartbeat": "NONE",
    "commit: wrong generation": "ILLEGAL_GENERATION",
    "commit: unknown member": "UNKNOWN_MEMBER_ID",
    "commit": "NONE",
    "join: another protocol type": "INCONSISTENT_GROUP_PROTOCOL",
    "join: a second member's id": "MEMBER_ID_REQUIRED",
    "heartbeat: while the second joins": "REBALANCE_IN_PROGRESS",
    "commit: while the second joins": "NONE",
    "join: the first rejoins": "NONE",
    "join: the second, answered": "NONE",
    "leave: unknown member": "UNKNOWN_MEMBER_ID",
    "leave: both": "NONE",
    "init: idempotent": "NONE",
    "produce: sequence 0": "NONE",
    "produce: sequence 0 again": "NONE",
    "produce: sequence 5": "OUT_OF_ORDER_SEQUENCE_NUMBER",
    "produce: unknown producer, sequence 3": "NONE",
    "init: transactional": "NONE",
    "end: no transaction open": "INVALID_TXN_STATE",
    "add partitions: another producer id": "INVALID_PRODUCER_ID_MAPPING",
    "add partitions": "NONE",
    "produce: to a partition not added": "INVALID_TXN_STATE",
    "produce: transactional": "NONE",
    "list offsets: earliest": "NONE",
    "list offsets: latest": "NONE",
    "list offsets: max timestamp": "NONE",
    "list offsets: between two records": "NONE",
    "list offsets: after every record": "NONE",
    "list offsets: read_committed latest, transaction open": "NONE",
    "list offsets: unknown partition": "UNKNOWN_TOPIC_OR_PARTITION",
    "init: again, fencing": "NONE",
    "add partitions: old epoch": "PRODUCER_FENCED",
    "end: old epoch": "PRODUCER_FENCED",
    "produce: old epoch": "INVALID_PRODUCER_EPOCH",
    "transaction timeout: read_committed passes it": "NONE",
    "end: after the timeout's abort": "PRODUCER_FENCED",
}

# COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR:
# a coordinator still loading, waited out before a step is noted.
NOT_READY = (14, 15, 16)

JOIN_V, SYNC_V, HEARTBEAT_V, COMMIT_V, LEAVE_V = 5, 3, 3, 7, 3
INIT_V, ADD_V, END_V, LIST_V = 3, 3, 3, 7
GROUP_TIMEOUT_MS = 30_000


def ready(call, code_of=lambda c: c):
    """``call()``, again while the coordinator answers that it is loading
    or not there yet, as clients retry; the first other answer."""
    return wait_until(lambda: (r := call()) is not None and code_of(r) not in NOT_READY and [r],
                      interval=0.1, what="a coordinator that answers")[0]


def name(code: int) -> str:
    return kw.error_name(code)


class Wire:
    """One connection; ``call`` sends a request and decodes its answer."""

    def __init__(self, host: str, port: int):
        self.sock = kw.connect(host, port, timeout=60.0)
        self.correlation = 0

    def call(self, req, resp_cls, version: int):
        self.correlation += 1
        req.with_header(correlation_id=self.correlation, client_id="strom-compat")
        self.sock.sendall(req.encode(version=version, header=True, framed=True))
        return resp_cls.decode(kw.recv_frame(self.sock), version=version, header=True)

    def close(self) -> None:
        self.sock.close()


class Script:
    def __init__(self, broker):
        host, port = broker.bootstrap.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.topic = unique_name("diff-codes")
        code, message = kw.create_topics(self.host, self.port, [(self.topic, 2, {})])[self.topic]
        assert code == kw.ERROR_NONE, f"{kw.error_name(code)} {message}"
        wait_until(lambda: all(kw.list_offsets(self.host, self.port, self.topic, p)[0] == 0 for p in (0, 1)),
                   what=f"{self.topic} ready")
        self.wire = Wire(self.host, self.port)
        self.transcript: list[tuple] = []

    def coordinator(self, key: str, key_type: int) -> None:
        """Waits until FindCoordinator names this node (Kafka creates the
        internal topic on the first ask)."""
        def found():
            r = self.wire.call(FindCoordinatorRequest(key=key, key_type=key_type), FindCoordinatorResponse, 3)
            return r.error_code == 0
        wait_until(found, interval=0.1, what=f"the coordinator of {key}")

    def note(self, step: str, code: int, *seen) -> None:
        self.transcript.append((step, name(code), *seen))

    # -- topics and requests ------------------------------------------------

    def create(self, topic: str, partitions: int = 1, replication: int = 1, configs: dict | None = None,
               validate_only: bool = False) -> int:
        Topic = CreateTopicsRequest.CreatableTopic
        req = CreateTopicsRequest(topics=[Topic(
            name=topic, num_partitions=partitions, replication_factor=replication, assignments=[],
            configs=[Topic.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()])],
            timeout_ms=30_000, validate_only=validate_only)
        return self.wire.call(req, CreateTopicsResponse, 5).topics[0].error_code

    def requests(self) -> None:
        fresh = unique_name("diff-codes-new")
        self.note("create: a name with a slash", self.create("bad/name"))
        self.note("create: a name of 250 characters", self.create("t" * 250))
        self.note("create: the name ..", self.create(".."))
        self.note("create: the metadata log's name", self.create("__cluster_metadata"))
        self.note("create: zero partitions", self.create(fresh, partitions=0))
        self.note("create: replication factor 2 on one broker", self.create(fresh, replication=2))
        self.note("create: a bad config value", self.create(fresh, configs={"retention.ms": "soon"}))
        self.note("create: an unknown config", self.create(fresh, configs={"no.such.config": "1"}))
        self.note("create: validate only", self.create(fresh, validate_only=True))
        self.note("create: existing", self.create(self.topic))
        batch = kw.record_batch(kw.encode_record(0, b"v"), 1)
        self.note("produce: unknown topic",
                  kw.produce(self.host, self.port, unique_name("no-such"), batch).error_code)
        self.note("produce: unknown partition",
                  kw.produce(self.host, self.port, self.topic, batch, partition=9).error_code)
        with kw.connect(self.host, self.port) as sock:
            sock.sendall(kw.fetch_v4_request(1, unique_name("no-such"), 0, 0))
            self.note("fetch: unknown topic", kw.parse_fetch_v4_response(kw.recv_frame(sock), 1).error_code)
            sock.sendall(kw.fetch_v4_request(2, self.topic, 1, 1000))
            self.note("fetch: past the end", kw.parse_fetch_v4_response(kw.recv_frame(sock), 2).error_code)
        with kw.connect(self.host, self.port) as sock:
            sock.sendall(kw.frame(kw.request_header_v1(999, 0, 3) + b"\0" * 8))
            self.note("request: unknown api key", 0, "closed" if kw.wait_for_close(sock, 10.0) else "open")

    # -- groups -------------------------------------------------------------

    def join(self, wire: Wire, group: str, member: str, protocol_type: str = "consumer"):
        req = JoinGroupRequest(
            group_id=group, session_timeout_ms=GROUP_TIMEOUT_MS, rebalance_timeout_ms=GROUP_TIMEOUT_MS,
            member_id=member, group_instance_id=None, protocol_type=protocol_type,
            protocols=[JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=b"m")])
        return ready(lambda: wire.call(req, JoinGroupResponse, JOIN_V), lambda r: r.error_code)

    def sync(self, group: str, generation: int, member: str, assignments=()):
        req = SyncGroupRequest(
            group_id=group, generation_id=generation, member_id=member, group_instance_id=None,
            assignments=[SyncGroupRequest.SyncGroupRequestAssignment(member_id=m, assignment=a)
                         for m, a in assignments])
        return ready(lambda: self.wire.call(req, SyncGroupResponse, SYNC_V).error_code)

    def heartbeat(self, group: str, generation: int, member: str) -> int:
        req = HeartbeatRequest(group_id=group, generation_id=generation, member_id=member, group_instance_id=None)
        return ready(lambda: self.wire.call(req, HeartbeatResponse, HEARTBEAT_V).error_code)

    def commit(self, group: str, generation: int, member: str) -> int:
        part = OffsetCommitRequest.OffsetCommitRequestTopic.OffsetCommitRequestPartition(
            partition_index=0, committed_offset=0, committed_leader_epoch=-1, committed_metadata="")
        req = OffsetCommitRequest(
            group_id=group, generation_id_or_member_epoch=generation, member_id=member, group_instance_id=None,
            topics=[OffsetCommitRequest.OffsetCommitRequestTopic(name=self.topic, partitions=[part])])
        return ready(lambda: self.wire.call(req, OffsetCommitResponse, COMMIT_V)
                     .topics[0].partitions[0].error_code)

    def leave(self, group: str, *members: str) -> list[int]:
        req = LeaveGroupRequest(group_id=group, members=[
            LeaveGroupRequest.MemberIdentity(member_id=m, group_instance_id=None) for m in members])
        resp = ready(lambda: self.wire.call(req, LeaveGroupResponse, LEAVE_V), lambda r: r.error_code)
        assert resp.error_code == 0, name(resp.error_code)
        return [m.error_code for m in resp.members]

    def groups(self) -> None:
        group = unique_name("diff-codes-group")
        self.coordinator(group, 0)
        r = self.join(self.wire, group, "ghost")
        self.note("join: unknown member id, new group", r.error_code)
        r = self.join(self.wire, group, "")
        self.note("join: no member id", r.error_code, bool(r.member_id))
        first = r.member_id
        r = self.join(self.wire, group, first)
        gen = r.generation_id
        self.note("join: with the given id", r.error_code, gen, r.leader == first, len(r.members))
        self.note("sync: wrong generation", self.sync(group, gen + 1, first))
        self.note("sync: unknown member", self.sync(group, gen, "ghost"))
        self.note("sync: the leader's assignment", self.sync(group, gen, first, [(first, b"a")]))
        self.note("heartbeat: wrong generation", self.heartbeat(group, gen + 1, first))
        self.note("heartbeat: unknown member", self.heartbeat(group, gen, "ghost"))
        self.note("heartbeat: unknown group", self.heartbeat(unique_name("no-group"), 1, "ghost"))
        self.note("heartbeat", self.heartbeat(group, gen, first))
        self.note("commit: wrong generation", self.commit(group, gen + 1, first))
        self.note("commit: unknown member", self.commit(group, gen, "ghost"))
        self.note("commit", self.commit(group, gen, first))
        self.note("join: another protocol type", self.join(self.wire, group, "", "connect").error_code)
        # A second member: its join waits for the first to rejoin.
        second_wire = Wire(self.host, self.port)
        r = self.join(second_wire, group, "")
        self.note("join: a second member's id", r.error_code)
        second = r.member_id
        answered = {}
        joiner = threading.Thread(target=lambda: answered.update(r=self.join(second_wire, group, second)))
        joiner.start()
        code = wait_until(lambda: (c := self.heartbeat(group, gen, first)) == 27 and c, interval=0.05,
                          what="the first member told of the rebalance")
        self.note("heartbeat: while the second joins", code)
        self.note("commit: while the second joins", self.commit(group, gen, first))
        r = self.join(self.wire, group, first)
        joiner.join(timeout=60)
        assert not joiner.is_alive(), "the second member's join was never answered"
        self.note("join: the first rejoins", r.error_code, r.generation_id - gen, r.leader == first, len(r.members))
        r2 = answered["r"]
        self.note("join: the second, answered", r2.error_code, r2.generation_id == r.generation_id,
                  r2.leader == first, len(r2.members))
        second_wire.close()
        self.note("leave: unknown member", *self.leave(group, "ghost"))
        codes = self.leave(group, first, second)
        self.note("leave: both", max(codes), codes)

    # -- producers ----------------------------------------------------------

    def init(self, txn_id: str | None, timeout_ms: int = 60_000) -> tuple[int, int, int]:
        """InitProducerId, retried as clients do while the coordinator loads
        or (CONCURRENT_TRANSACTIONS) aborts the transaction an epoch bump
        ended."""
        req = InitProducerIdRequest(transactional_id=txn_id, transaction_timeout_ms=timeout_ms,
                                    producer_id=-1, producer_epoch=-1)
        r = wait_until(lambda: (r := self.wire.call(req, InitProducerIdResponse, INIT_V)).error_code
                       not in NOT_READY + (51,) and r, interval=0.1, what=f"InitProducerId {txn_id}")
        return r.error_code, r.producer_id, r.producer_epoch

    def produce(self, partition: int, pid: int, epoch: int, seq: int, txn: str | None = None,
                timestamp: int | None = None) -> tuple[int, int]:
        attributes = kw.ATTR_TRANSACTIONAL if txn else 0
        records = kw.encode_record(0, b"v", key=b"k")
        batch = kw.record_batch(records, 1, producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                                attributes=attributes, base_timestamp=timestamp)
        r = kw.produce(self.host, self.port, self.topic, batch, partition, acks=-1, transactional_id=txn)
        return r.error_code, r.base_offset

    def add_partitions(self, txn_id: str, pid: int, epoch: int, partition: int) -> int:
        req = AddPartitionsToTxnRequest(
            v3_and_below_transactional_id=txn_id, v3_and_below_producer_id=pid,
            v3_and_below_producer_epoch=epoch,
            v3_and_below_topics=[AddPartitionsToTxnRequest.AddPartitionsToTxnTopic(
                name=self.topic, partitions=[partition])])
        r = self.wire.call(req, AddPartitionsToTxnResponse, ADD_V)
        return r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code

    def end(self, txn_id: str, pid: int, epoch: int, commit: bool) -> int:
        req = EndTxnRequest(transactional_id=txn_id, producer_id=pid, producer_epoch=epoch, committed=commit)
        return self.wire.call(req, EndTxnResponse, END_V).error_code

    def producers(self) -> None:
        code, pid, epoch = self.init(None)
        self.note("init: idempotent", code, epoch)
        code, first = self.produce(0, pid, epoch, 0)
        self.note("produce: sequence 0", code, first)
        code, again = self.produce(0, pid, epoch, 0)
        self.note("produce: sequence 0 again", code, again == first)
        self.note("produce: sequence 5", self.produce(0, pid, epoch, 5)[0])
        self.note("produce: unknown producer, sequence 3", self.produce(0, pid + 1_000_000, 0, 3)[0])
        txn = unique_name("diff-codes-txn")
        self.coordinator(txn, 1)
        code, tpid, e0 = self.init(txn)
        self.note("init: transactional", code, e0)
        self.note("end: no transaction open", self.end(txn, tpid, e0, True))
        self.note("add partitions: another producer id", self.add_partitions(txn, tpid + 1_000_000, e0, 1))
        self.note("add partitions", self.add_partitions(txn, tpid, e0, 1))
        self.note("produce: to a partition not added", self.produce(0, tpid, e0, 0, txn)[0])
        self.note("produce: transactional", self.produce(1, tpid, e0, 0, txn)[0])
        self.txn_open = (txn, tpid, e0)

    def fence(self) -> None:
        txn, tpid, e0 = self.txn_open
        code, pid, e1 = self.init(txn)
        self.note("init: again, fencing", code, pid == tpid, e1 - e0)
        self.note("add partitions: old epoch", self.add_partitions(txn, tpid, e0, 1))
        self.note("end: old epoch", self.end(txn, tpid, e0, True))
        self.note("produce: old epoch", self.produce(1, tpid, e0, 1, txn)[0])

    def timeout(self) -> None:
        """A transaction left open past transaction.timeout.ms is aborted by
        the coordinator: read_committed reads past it, and the producer,
        fenced by the abort's epoch bump, cannot commit it."""
        txn = unique_name("diff-codes-timeout")
        self.coordinator(txn, 1)
        code, pid, epoch = self.init(txn, timeout_ms=1000)
        assert code == 0, name(code)
        assert self.add_partitions(txn, pid, epoch, 0) == 0
        code, offset = self.produce(0, pid, epoch, 0, txn)
        assert code == 0, name(code)
        lso = wait_until(lambda: (o := self.list_offsets(0, -1, 1)[2]) > offset and o, timeout=90, interval=0.2,
                         what=f"the timed-out transaction of {txn} aborted")
        self.note("transaction timeout: read_committed passes it", 0, lso - offset)
        self.note("end: after the timeout's abort", self.end(txn, pid, epoch, True))

    # -- ListOffsets ----------------------------------------------------------

    def list_offsets(self, partition: int, timestamp: int, isolation: int = 0):
        part = ListOffsetsRequest.ListOffsetsTopic.ListOffsetsPartition(
            partition_index=partition, current_leader_epoch=-1, timestamp=timestamp)
        req = ListOffsetsRequest(replica_id=-1, isolation_level=isolation, topics=[
            ListOffsetsRequest.ListOffsetsTopic(name=self.topic, partitions=[part])])
        p = self.wire.call(req, ListOffsetsResponse, LIST_V).topics[0].partitions[0]
        return p.error_code, p.timestamp, p.offset

    def offsets(self) -> None:
        # Partition 1 holds the open transaction's record (offset 0, stamped
        # now); these go after it, a second apart and a minute ahead (within
        # message.timestamp.after.max.ms), so that the transaction's is not
        # the latest.
        t0 = int(time.time() * 1000) + 60_000
        code, pid, epoch = self.init(None)
        for i in range(5):
            assert self.produce(1, pid, epoch, i, timestamp=t0 + i * 1000)[0] == 0

        def seen(step, *args):
            code, ts, offset = self.list_offsets(*args)
            self.note(step, code, ts - t0 if ts >= 0 else ts, offset)

        seen("list offsets: earliest", 1, -2)
        seen("list offsets: latest", 1, -1)
        seen("list offsets: max timestamp", 1, -3)
        seen("list offsets: between two records", 1, t0 + 2500)
        seen("list offsets: after every record", 1, t0 + 10_000)
        seen("list offsets: read_committed latest, transaction open", 1, -1, 1)
        seen("list offsets: unknown partition", 7, -1)

    def run(self) -> list[tuple]:
        try:
            self.requests()
            self.groups()
            self.producers()
            self.offsets()
            self.fence()
            self.timeout()
        finally:
            self.wire.close()
        return self.transcript


def test_error_codes_answer_as_kafka(broker, kafka_ref):
    kafka = Script(kafka_ref).run()
    strom = Script(broker).run()
    assert_same_transcripts(kafka, strom, EXPECTED)
