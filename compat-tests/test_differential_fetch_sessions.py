"""Differential: incremental fetch sessions (KIP-227), Strom against the
reference Kafka, over the raw wire (Fetch v12 by topic names, v13 by ids).

One script of fetches runs against each broker on topics made alike: a full
fetch opens a session; incremental fetches answer only the partitions that
changed (records, a moved high watermark, an error); partitions are added,
updated and forgotten; a stale epoch, an unknown session id and a switch
between names and ids are refused with Kafka's codes; forgetting every
partition, or epoch -1, ends the session. What each step observes (the
top-level error, whether the session id is new, the same or 0, and each
answered partition with its error, offsets and record count) must be the
same on both brokers.
"""

from __future__ import annotations

import struct
import time

from confluent_kafka import TopicCollection

import kafka_wire as kw
from helpers import ck_admin, ck_result, unique_name

READY_TIMEOUT = 30.0
UNKNOWN_ID = bytes(range(1, 17))


def host_port(bootstrap: str) -> tuple[str, int]:
    host, port = bootstrap.rsplit(":", 1)
    return host, int(port)


def wait_ready(host: str, port: int, topic: str, partitions: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    for p in range(partitions):
        while True:
            try:
                if kw.list_offsets(host, port, topic, p)[0] == kw.ERROR_NONE:
                    break
            except (OSError, kw.ProtocolError):
                pass
            assert time.monotonic() < deadline, f"{topic}-{p} on {host}:{port} not ready"
            time.sleep(0.05)


def topic_id(broker, name: str) -> bytes:
    admin = ck_admin(broker)
    description = ck_result(admin.describe_topics(TopicCollection([name]))[name])
    uuid = description.topic_id
    return struct.pack(">qq", uuid.get_most_significant_bits(), uuid.get_least_significant_bits())


def produce(host: str, port: int, topic: str, partition: int, count: int) -> None:
    records = b"".join(kw.encode_record(i, b"v%d" % i, key=b"k%d" % i) for i in range(count))
    resp = kw.produce(host, port, topic, kw.record_batch(records, count), partition)
    assert resp.error_code == kw.ERROR_NONE, kw.error_name(resp.error_code)


class Script:
    """Runs fetches on one broker and writes down what each observed."""

    def __init__(self, broker):
        self.host, self.port = host_port(broker.bootstrap)
        self.a, self.b = unique_name("fs-a"), unique_name("fs-b")
        for name, partitions in ((self.a, 2), (self.b, 1)):
            code, message = kw.create_topics(self.host, self.port, [(name, partitions, {})])[name]
            assert code == kw.ERROR_NONE, f"{name}: {kw.error_name(code)} {message}"
            wait_ready(self.host, self.port, name, partitions)
        self.ids = {self.a: topic_id(broker, self.a), self.b: topic_id(broker, self.b)}
        self.labels = {self.a: "A", self.b: "B", self.ids[self.a]: "A", self.ids[self.b]: "B",
                       UNKNOWN_ID: "unknown"}
        self.session = 0
        self.correlation = 0
        self.sock = kw.connect(self.host, self.port)
        self.transcript: list[tuple] = []

    def topic(self, label: str, *partitions: tuple[int, int]) -> kw.FetchTopicRequest:
        name = {"A": self.a, "B": self.b}.get(label, "unknown")
        return kw.FetchTopicRequest(name, self.ids.get(name, UNKNOWN_ID), tuple(partitions))

    def fetch(self, step: str, version: int, epoch: int, topics=(), forgotten=(),
              session: int | None = None) -> kw.SessionFetchResponse:
        self.correlation += 1
        sid = self.session if session is None else session
        self.sock.sendall(kw.fetch_session_request(self.correlation, version, sid, epoch, list(topics),
                                                   list(forgotten)))
        resp = kw.parse_fetch_session_response(kw.recv_frame(self.sock), self.correlation, version)
        if resp.session_id == 0:
            seen = "none"
        elif resp.session_id == self.session:
            seen = "same"
        else:
            seen = "new"
        if resp.session_id != 0:
            self.session = resp.session_id
        parts = sorted(
            (self.labels.get(p.topic, repr(p.topic)), p.partition, kw.error_name(p.error_code), p.high_watermark,
             p.last_stable_offset, p.log_start_offset,
             sum(b.record_count for b in kw.parse_batch_headers(p.records)))
            for p in resp.partitions)
        self.transcript.append((step, kw.error_name(resp.error_code), seen, parts))
        return resp

    def run(self) -> list[tuple]:
        produce(self.host, self.port, self.a, 0, 3)
        produce(self.host, self.port, self.b, 0, 1)
        # By names (v12).
        self.fetch("full opens", 12, 0, [self.topic("A", (0, 0), (1, 0))])
        self.fetch("nothing new", 12, 1, [self.topic("A", (0, 3))])
        produce(self.host, self.port, self.a, 1, 2)
        self.fetch("records on A-1", 12, 2)
        self.fetch("stale epoch", 12, 2)
        self.fetch("add B-0", 12, 3, [self.topic("A", (1, 2)), self.topic("B", (0, 0))])
        self.fetch("unknown session", 12, 4, session=self.session % 0x7FFF_FFFF + 1)
        self.fetch("ids on a names session", 13, 4)
        self.fetch("forget A", 12, 4, [self.topic("B", (0, 1))], [self.topic("A", (0, 0), (1, 0))])
        produce(self.host, self.port, self.a, 0, 1)
        self.fetch("forgotten stay quiet", 12, 5)
        self.fetch("forget the last", 12, 6, forgotten=[self.topic("B", (0, 0))])
        self.fetch("ended", 12, 7)
        # By ids (v13), an unknown id among them.
        self.fetch("full by ids", 13, 0, [self.topic("A", (0, 0)), self.topic("unknown", (0, 0))], session=0)
        self.fetch("errors are always answered", 13, 1, [self.topic("A", (0, 4))])
        self.fetch("names on an ids session", 12, 2)
        self.fetch("final epoch", 13, -1, [self.topic("A", (0, 4))])
        self.fetch("closed", 13, 2)
        self.fetch("sessionless", 12, -1, [self.topic("B", (0, 0))], session=0)
        self.sock.close()
        return self.transcript


def test_fetch_sessions_answer_as_kafka(broker, kafka_ref):
    strom = Script(broker).run()
    kafka = Script(kafka_ref).run()
    # The script exercises sessions at all: Kafka opened one and answered
    # an incremental fetch with only what changed.
    assert kafka[0][2] == "new" and kafka[1] == ("nothing new", "NONE", "same", []), kafka
    for ours, theirs in zip(strom, kafka, strict=True):
        assert ours == theirs, f"step {ours[0]!r}: Strom {ours[1:]} but Kafka {theirs[1:]}"
