"""Hostile input (issue 8): what a careless or malicious client can send, on
the raw wire, against Strom alone.

Each case checks the answer (error code), that the broker is still running,
that its peak resident memory (VmHWM in /proc/<pid>/status) stayed under
1 GiB, and that an ordinary produce and fetch through kafka-python still
work afterwards:

* the reserved name ``__cluster_metadata`` (the broker's own metadata log):
  not auto-created, not creatable, not deletable, and a restart keeps every
  topic and its records;
* CreateTopics / CreatePartitions asking for millions of partitions: refused
  up front (POLICY_VIOLATION) before anything is allocated;
* the produced batches of ``kafka_wire.produce_cases()``, answered with the
  codes of docs/architecture.md's Produce rules, nothing of a refused one
  stored; an 8 GiB zstd bomb; a snappy block that declares far more than it
  holds;
* memory and connection bounds: Fetch max_bytes 2^31-1 from 8 connections,
  8 connections that each sent a ~100 MiB frame and then idle, idle
  connections closed after ``connections.max.idle.ms``,
  ``max.connections.per.ip``.

The differences from Apache Kafka in what is answered are
test_differential_produce.py's business; here the broker's own rules hold.
"""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest

import kafka_wire as kw
from helpers import KAFKA_PYTHON, Rec, consume, create_topic, produce, read_partition, unique_name, wait_until

GIB = 1 << 30
MIB = 1 << 20
RSS_LIMIT = GIB                       # issue 8: peak RSS under each probe
FETCH_MAX_BYTES = 57671680            # fetch.max.bytes, Kafka's default (55 MiB)
EXCESSIVE_PARTITIONS = "Excessively large number of partitions per request."
QUICK = 10.0                          # seconds: "refused up front" answers come well within this


# ---------------------------------------------------------------------------
# the broker process


def proc_status_bytes(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmHWM, VmRSS), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def peak_rss(broker) -> int:
    return proc_status_bytes(broker.pid, "VmHWM")


def rss(broker) -> int:
    return proc_status_bytes(broker.pid, "VmRSS")


def mib(n: int) -> str:
    return f"{n / MIB:.0f} MiB"


def assert_bounded(broker, what: str) -> None:
    assert broker.is_running(), f"strom died ({what})"
    peak = peak_rss(broker)
    assert peak < RSS_LIMIT, f"{what}: strom's peak RSS reached {mib(peak)} (limit {mib(RSS_LIMIT)})"


def assert_serving(broker, what: str) -> None:
    """Bounded memory, and an ordinary produce and fetch through a real client."""
    assert_bounded(broker, what)
    topic = create_topic(broker, unique_name("after-hostile"))
    produce(KAFKA_PYTHON, broker, topic, [Rec(b"k", b"still serving")])
    (got,) = consume(KAFKA_PYTHON, broker, topic, 1)
    assert got.value == b"still serving"
    assert_bounded(broker, what)


def wait_ready_partition(broker, topic: str) -> int:
    """The latest offset once the partition answers ListOffsets."""
    def ready():
        code, _, offset = kw.list_offsets(broker.host, broker.port, topic)
        return (offset,) if code == kw.ERROR_NONE else None
    return wait_until(ready, what=f"{topic}-0 answering ListOffsets")[0]


def raw_create(broker, topic: str, partitions: int = 1, configs: dict[str, str] | None = None) -> int:
    code, message = kw.create_topics(broker.host, broker.port, [(topic, partitions, configs or {})])[topic]
    assert code == kw.ERROR_NONE, f"CreateTopics {topic}: {kw.error_name(code)} {message}"
    return wait_ready_partition(broker, topic)


def closed_without_answer(sock: socket.socket, timeout: float) -> bool:
    """True if the peer closes within ``timeout`` having sent nothing;
    raises if it answers."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096)
    except socket.timeout:
        return False
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        return True
    assert not data, f"the broker answered ({len(data)} bytes) instead of closing"
    return True


# ---------------------------------------------------------------------------
# reserved names


@pytest.mark.slow
def test_cluster_metadata_is_reserved_and_a_restart_keeps_everything(broker):
    topics = {unique_name("keep-a"): 1, unique_name("keep-b"): 3}
    records = {name: [Rec(f"{name}-{i}".encode(), f"value {i}".encode(), partition=i % parts)
                      for i in range(6)]
               for name, parts in topics.items()}
    for name, parts in topics.items():
        create_topic(broker, name, partitions=parts)
        produce(KAFKA_PYTHON, broker, name, records[name])

    reserved = "__cluster_metadata"
    md = kw.metadata(broker.host, broker.port, [reserved], allow_auto_topic_creation=True)
    assert md[reserved].error_code == kw.ERROR_UNKNOWN_TOPIC_OR_PARTITION, (
        f"Metadata auto-creation of {reserved}: {kw.error_name(md[reserved].error_code)}")
    code, message = kw.create_topics(broker.host, broker.port, [(reserved, 1, {})])[reserved]
    assert code == kw.ERROR_INVALID_REQUEST, f"CreateTopics {reserved}: {kw.error_name(code)} {message}"
    code, message = kw.create_topics(broker.host, broker.port, [(reserved, 1, {})], validate_only=True)[reserved]
    assert code == kw.ERROR_INVALID_REQUEST, f"CreateTopics {reserved} (validate_only): {kw.error_name(code)}"
    deleted = kw.delete_topics(broker.host, broker.port, [reserved])
    assert deleted[reserved] == kw.ERROR_UNKNOWN_TOPIC_OR_PARTITION, (
        f"DeleteTopics {reserved}: {kw.error_name(deleted[reserved])}")
    assert reserved not in kw.metadata(broker.host, broker.port, None, allow_auto_topic_creation=False)
    assert_bounded(broker, reserved)

    broker.restart()
    listed = kw.metadata(broker.host, broker.port, None, allow_auto_topic_creation=False)
    assert reserved not in listed
    for name, parts in topics.items():
        assert name in listed, f"{name} is gone after the restart"
        assert listed[name].error_code == kw.ERROR_NONE
        assert sorted(listed[name].partitions) == list(range(parts))
        got = [g for p in range(parts) for g in read_partition(broker, name, p)]
        assert sorted((g.key, g.value) for g in got) == sorted((r.key, r.value) for r in records[name]), (
            f"{name}: records changed across the restart")
    assert_serving(broker, "after the restart")


# ---------------------------------------------------------------------------
# partition counts


@pytest.mark.parametrize("partitions,validate_only", [
    (16_777_216, False),
    (2**31 - 1, True),
    (2**31 - 1, False),
    (100_000, False),
    (10_001, True),
], ids=["16M", "int-max-validate-only", "int-max", "100k", "10001-validate-only"])
def test_create_topics_with_too_many_partitions(broker, partitions, validate_only):
    topic = unique_name("huge")
    started = time.monotonic()
    code, message = kw.create_topics(broker.host, broker.port, [(topic, partitions, {})],
                                     validate_only=validate_only, timeout=QUICK * 3)[topic]
    elapsed = time.monotonic() - started
    assert (code, message) == (kw.ERROR_POLICY_VIOLATION, EXCESSIVE_PARTITIONS), (
        f"CreateTopics with {partitions} partitions: {kw.error_name(code)} {message!r}")
    assert elapsed < QUICK, f"the refusal took {elapsed:.1f}s"
    md = kw.metadata(broker.host, broker.port, [topic], allow_auto_topic_creation=False)
    assert md[topic].error_code == kw.ERROR_UNKNOWN_TOPIC_OR_PARTITION, "the refused topic exists"
    assert_serving(broker, f"CreateTopics of {partitions} partitions")


def test_create_topics_at_the_partition_limit_validate_only(broker):
    """10,000 partitions in one request is Kafka's limit, not past it."""
    topic = unique_name("limit")
    code, message = kw.create_topics(broker.host, broker.port, [(topic, 10_000, {})], validate_only=True)[topic]
    assert code == kw.ERROR_NONE, f"{kw.error_name(code)} {message}"
    assert_bounded(broker, "CreateTopics of 10,000 partitions, validate_only")


@pytest.mark.parametrize("validate_only", [False, True], ids=["create", "validate-only"])
def test_create_partitions_to_int_max(broker, validate_only):
    topic = create_topic(broker, unique_name("grow"))
    started = time.monotonic()
    code, message = kw.create_partitions(broker.host, broker.port, topic, 2**31 - 1, validate_only,
                                         timeout=QUICK * 3)
    elapsed = time.monotonic() - started
    assert code == kw.ERROR_POLICY_VIOLATION, f"CreatePartitions to 2^31-1: {kw.error_name(code)} {message!r}"
    assert elapsed < QUICK, f"the refusal took {elapsed:.1f}s"
    md = kw.metadata(broker.host, broker.port, [topic], allow_auto_topic_creation=False)
    assert sorted(md[topic].partitions) == [0], "the partition count changed"
    assert_serving(broker, "CreatePartitions to 2^31-1")


# ---------------------------------------------------------------------------
# produced batches


def refused(code: int, *record_errors: int) -> tuple[int, tuple[int, ...]]:
    return code, record_errors


ACCEPTED = (kw.ERROR_NONE, ())

# docs/architecture.md, "Produce": the code each rule answers, per case.
EXPECTED = {
    # well-formed controls
    "valid": ACCEPTED,
    "valid-gzip": ACCEPTED,
    "valid-snappy": ACCEPTED,
    "valid-lz4": ACCEPTED,
    "valid-zstd": ACCEPTED,
    # exactly one whole batch, magic 2, base offset 0, max.message.bytes, CRC
    "empty-records": refused(kw.ERROR_INVALID_RECORD),
    "two-batches": refused(kw.ERROR_INVALID_RECORD),
    "truncated-batch": refused(kw.ERROR_INVALID_RECORD),
    # A length below the batch overhead is a corrupt size field (Kafka too:
    # "Record size 10 is less than the minimum record overhead").
    "batch-length-too-small": refused(kw.ERROR_CORRUPT_MESSAGE),
    "magic-1": refused(kw.ERROR_INVALID_RECORD),
    "base-offset-5": refused(kw.ERROR_INVALID_RECORD),
    "over-max-message-bytes": refused(kw.ERROR_MESSAGE_TOO_LARGE),
    "crc-flip": refused(kw.ERROR_CORRUPT_MESSAGE),
    # the header: codec, control flag, count, last offset delta, sequence
    "unknown-codec-7": refused(kw.ERROR_UNSUPPORTED_COMPRESSION_TYPE),
    "zstd-produce-v3": refused(kw.ERROR_UNSUPPORTED_COMPRESSION_TYPE),
    "control-flag": refused(kw.ERROR_INVALID_RECORD),
    "count-zero": refused(kw.ERROR_INVALID_RECORD),
    "count-max-int32": refused(kw.ERROR_INVALID_RECORD),
    "count-2-one-record": refused(kw.ERROR_INVALID_RECORD),
    "last-offset-delta-mismatch": refused(kw.ERROR_INVALID_RECORD),
    "idempotent-no-sequence": refused(kw.ERROR_INVALID_RECORD),
    # transactional records without a transactional id (README: Produce)
    "transactional-no-pid": refused(kw.ERROR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
    # every record well formed, exactly count of them, deltas 0, 1, 2, ...
    "garbage-records": refused(kw.ERROR_INVALID_RECORD),
    "trailing-bytes": refused(kw.ERROR_INVALID_RECORD),
    "record-length-short": refused(kw.ERROR_INVALID_RECORD),
    # Kafka reads any negative key or value length as null.
    "negative-key-length": ACCEPTED,
    "overlong-varint": refused(kw.ERROR_INVALID_RECORD),
    "offset-deltas-repeat": refused(kw.ERROR_INVALID_RECORD),
    # compressed: decompresses, within the inflated bound
    "gzip-flag-uncompressed": refused(kw.ERROR_INVALID_RECORD),
    "zstd-garbage": refused(kw.ERROR_INVALID_RECORD),
    "lz4-garbage": refused(kw.ERROR_INVALID_RECORD),
    "snappy-garbage": refused(kw.ERROR_INVALID_RECORD),
    "snappy-huge-block": refused(kw.ERROR_INVALID_RECORD),
    "zstd-window-2gib": refused(kw.ERROR_INVALID_RECORD),
    "offset-deltas-repeat-gzip": refused(kw.ERROR_INVALID_RECORD),
    "zstd-bomb-200mib": refused(kw.ERROR_MESSAGE_TOO_LARGE),            # inflates past 64 MiB
    "gzip-bomb-200mib": refused(kw.ERROR_MESSAGE_TOO_LARGE),
    # timestamps (after.max.ms 1 h, before.max.ms unbounded) and keys
    "timestamp-future-2h": refused(kw.ERROR_INVALID_TIMESTAMP, 0),
    "timestamp-past-10y": ACCEPTED,
    "no-timestamp": ACCEPTED,
    "compacted-keyless": refused(kw.ERROR_INVALID_RECORD, 0),
    # A producer's LogAppendTime flag: kept on a CreateTime topic, refused
    # on a LogAppendTime one (Kafka's answers).
    "log-append-time-flag": ACCEPTED,
    "log-append-time-flag-lat-topic": refused(kw.ERROR_INVALID_TIMESTAMP, 0),
}
CASES = kw.produce_cases()


def test_every_case_has_an_expectation():
    assert {c.id for c in CASES} == set(EXPECTED), "kafka_wire.produce_cases() and EXPECTED disagree"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_batch(broker, case):
    records = case.build()
    topic = unique_name(f"hostile-{case.id}")
    before = raw_create(broker, topic, configs=case.configs)
    resp = kw.produce(broker.host, broker.port, topic, records, version=case.version)
    got = (resp.error_code, tuple(sorted(i for i, _ in resp.record_errors)))
    expected = EXPECTED[case.id]
    assert got == expected, (
        f"{case.id}: answered {kw.error_name(got[0])} record_errors {list(got[1])} "
        f"({resp.error_message!r}), expected {kw.error_name(expected[0])} record_errors {list(expected[1])}")
    after = kw.latest_offset(broker.host, broker.port, topic)
    if expected == ACCEPTED:
        count = kw.BatchHeader(*kw.BATCH_HEADER.unpack_from(records)).last_offset_delta + 1
        assert (resp.base_offset, after) == (before, before + count)
    else:
        assert after == before, f"{case.id} was refused, yet the latest offset moved {before} -> {after}"
        # The partition takes an ordinary batch right after.
        ok = kw.produce(broker.host, broker.port, topic, kw.simple_batch([b"next"], keys=[b"key"]))
        assert (ok.error_code, ok.base_offset) == (kw.ERROR_NONE, before)
    assert_serving(broker, case.id)


def test_zstd_bomb_of_8_gib(broker):
    """~460 KB of zstd that inflates to 8 GiB (8192 well-formed records of
    1 MiB): refused with MESSAGE_TOO_LARGE once past the inflated bound,
    memory bounded, and finding records by time afterwards (which walks the
    stored batches) answers as usual."""
    topic = unique_name("bomb")
    raw_create(broker, topic)
    base = int(time.time() * 1000) - 60_000
    for i in range(3):  # offsets 0, 1, 2 stamped base, base+10, base+20
        resp = kw.produce(broker.host, broker.port, topic, kw.simple_batch([b"before"], timestamp=base + 10 * i))
        assert (resp.error_code, resp.base_offset) == (kw.ERROR_NONE, i)

    bomb = kw.record_batch(kw.zstd_bomb(8192), 8192, attributes=kw.CODEC_IDS["zstd"])
    assert len(bomb) < 1_000_000
    started = time.monotonic()
    resp = kw.produce(broker.host, broker.port, topic, bomb)
    elapsed = time.monotonic() - started
    assert resp.error_code == kw.ERROR_MESSAGE_TOO_LARGE, (
        f"8 GiB bomb: {kw.error_name(resp.error_code)} ({resp.error_message!r})")
    assert elapsed < 30, f"refusing the bomb took {elapsed:.1f}s"
    assert kw.latest_offset(broker.host, broker.port, topic) == 3, "something of the bomb was stored"
    assert_bounded(broker, "8 GiB zstd bomb")

    for timestamp, offset in ((base, 0), (base + 5, 1), (base + 20, 2), (base + 21, -1)):
        code, ts, found = kw.list_offsets(broker.host, broker.port, topic, timestamp=timestamp)
        assert (code, found) == (kw.ERROR_NONE, offset), f"ListOffsets by timestamp {timestamp}"
        if offset >= 0:
            assert ts == base + 10 * offset
    assert_serving(broker, "ListOffsets by timestamp after the bomb")


@pytest.mark.parametrize("framed", [True, False], ids=["xerial", "raw"])
def test_snappy_declared_size_is_not_allocated(broker, framed):
    """A ~100-byte snappy batch whose one block declares 64 MiB - 1 inflated
    bytes (under the inflated bound) but holds 10: refused as corrupt, and
    nothing near the declared size is allocated (issue 8, item 3: no size
    read from the wire sizes an allocation before it is checked against the
    bytes actually there; snappy inflates at most ~22x)."""
    topic = unique_name("snappy-declared")
    raw_create(broker, topic)
    batch = kw.record_batch(kw.snappy_declaring(64 * MIB - 1, framed=framed), 1,
                            attributes=kw.CODEC_IDS["snappy"])
    assert len(batch) < 128
    before = peak_rss(broker)
    resp = kw.produce(broker.host, broker.port, topic, batch)
    assert resp.error_code == kw.ERROR_INVALID_RECORD, kw.error_name(resp.error_code)
    grown = peak_rss(broker) - before
    assert grown < 16 * MIB, (
        f"a {len(batch)}-byte snappy batch declaring 64 MiB took strom's peak RSS up by {mib(grown)}")
    assert_serving(broker, "snappy declared size")


# ---------------------------------------------------------------------------
# memory and connections (issue 8, item 4)


def test_fetch_max_bytes_int_max_from_8_connections(broker):
    """A partition of ~300 MiB (30 batches of 10 MiB), fetched from offset 0
    with max_bytes 2^31-1 on 8 connections at once: each answer stops at
    fetch.max.bytes (55 MiB), holds at least one whole batch, and memory
    stays bounded. A fetch of max_bytes 1 still gets one whole batch."""
    topic = unique_name("big")
    value_size = 10 * MIB
    raw_create(broker, topic, configs={"max.message.bytes": str(value_size + 4096)})
    batch = kw.simple_batch([b"\xa5" * value_size])
    batches = 30
    with kw.connect(broker.host, broker.port, timeout=60) as sock:
        for i in range(batches):
            sock.sendall(kw.produce_request(1000 + i, topic, 0, batch))
            resp = kw.parse_produce_response(kw.recv_frame(sock), 1000 + i)[(topic, 0)]
            assert (resp.error_code, resp.base_offset) == (kw.ERROR_NONE, i)
    stored = batches * len(batch)

    results: list = [None] * 8

    def fetch(slot: int) -> None:
        with kw.connect(broker.host, broker.port, timeout=60) as s:
            s.sendall(kw.fetch_v4_request(7, topic, 0, 0, max_bytes=2**31 - 1))
            results[slot] = kw.read_fetch_v4_summary(s, 7)

    threads = [threading.Thread(target=fetch, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert all(r is not None for r in results), f"fetches failed or hung: {results}"
    for r in results:
        assert (r.error_code, r.high_watermark) == (kw.ERROR_NONE, batches)
        assert r.records_size <= FETCH_MAX_BYTES, (
            f"a Fetch answer carried {mib(r.records_size)} of records of the {mib(stored)} stored: "
            f"more than fetch.max.bytes ({mib(FETCH_MAX_BYTES)})")
        assert r.batches >= 1 and r.first.base_offset == 0
    assert_bounded(broker, "8 fetches of max_bytes 2^31-1")

    with kw.connect(broker.host, broker.port, timeout=60) as s:
        s.sendall(kw.fetch_v4_request(8, topic, 0, 0, max_bytes=1))
        one = kw.read_fetch_v4_summary(s, 8)
    assert (one.error_code, one.batches, one.first.base_offset) == (kw.ERROR_NONE, 1, 0), (
        f"max_bytes 1 must still return the first whole batch: {one}")
    assert kw.delete_topics(broker.host, broker.port, [topic]) == {topic: kw.ERROR_NONE}  # free the disk
    assert_serving(broker, "large fetches")


def test_large_frames_then_idle_connections(broker):
    """8 connections each send a ~100 MiB Produce (a batch far over
    max.message.bytes: refused) and then stay open and idle. The read
    buffers shrink back: resident memory drops well below what 8 retained
    100 MiB buffers would hold, and the connections still answer."""
    topic = unique_name("frames")
    raw_create(broker, topic)
    baseline = rss(broker)
    value_size = 100 * MIB - 64 * 1024     # the frame stays under socket.request.max.bytes (100 MiB)
    request = kw.produce_request(77, topic, 0, kw.simple_batch([b"\x00" * value_size]))
    assert len(request) - 4 <= 104857600

    socks = [kw.connect(broker.host, broker.port, timeout=90) for _ in range(8)]
    answers: list = [None] * 8

    def send(slot: int) -> None:
        socks[slot].sendall(request)
        answers[slot] = kw.parse_produce_response(kw.recv_frame(socks[slot]), 77)[(topic, 0)].error_code

    try:
        threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(100)
        assert answers == [kw.ERROR_MESSAGE_TOO_LARGE] * 8, [kw.error_name(a) if a is not None else None
                                                              for a in answers]
        assert_bounded(broker, "8 frames of ~100 MiB")
        limit = baseline + 200 * MIB       # 8 retained buffers would be 800 MiB
        seen: list[int] = []

        def shrunk() -> bool:
            seen.append(rss(broker))
            return seen[-1] < limit
        try:
            wait_until(shrunk, timeout=15, what="the read buffers to shrink")
        except AssertionError:
            raise AssertionError(
                f"with 8 idle connections that each sent ~100 MiB, strom's RSS stayed at {mib(seen[-1])} "
                f"for 15 s (baseline {mib(baseline)}, limit {mib(limit)}, peak {mib(peak_rss(broker))})") from None
        for i, s in enumerate(socks):  # still open and usable
            assert kw.api_versions_on(s, correlation_id=500 + i).error_code == kw.ERROR_NONE
    finally:
        for s in socks:
            s.close()
    assert_serving(broker, "8 large frames")


def test_idle_connection_is_closed(strom_factory):
    """connections.max.idle.ms=2000: a connection that says nothing more is
    closed by the broker after about 2 s; one that keeps talking (a request
    every 0.4 s) stays open well past that."""
    idle_ms = 2000
    broker = strom_factory({"connections.max.idle.ms": idle_ms})
    with kw.connect(broker.host, broker.port) as idle, kw.connect(broker.host, broker.port) as busy:
        assert kw.api_versions_on(idle, correlation_id=1).error_code == kw.ERROR_NONE
        last_request = time.monotonic()
        deadline = last_request + idle_ms / 1000 + 15
        busy_until = last_request + 2 * idle_ms / 1000
        closed_at = None
        n = 0
        while time.monotonic() < deadline and (closed_at is None or time.monotonic() < busy_until):
            if closed_at is None:
                readable, _, _ = select.select([idle], [], [], 0.4)
                if readable and closed_without_answer(idle, 1.0):
                    closed_at = time.monotonic()
            else:
                select.select([busy], [], [], 0.4)  # nothing comes unasked: a 0.4 s pace
            n += 1
            assert kw.api_versions_on(busy, correlation_id=100 + n).error_code == kw.ERROR_NONE, (
                "the busy connection stopped being served")
        assert closed_at is not None, f"an idle connection was still open {deadline - last_request:.0f}s later"
        idle_for = closed_at - last_request
        assert idle_for >= idle_ms / 1000 * 0.9, f"closed after {idle_for:.2f}s idle, before {idle_ms} ms"
        assert time.monotonic() - last_request >= 2 * idle_ms / 1000
        assert kw.api_versions_on(busy, correlation_id=999).error_code == kw.ERROR_NONE
    assert_serving(broker, "idle connections")


def test_max_connections_per_ip(strom_factory):
    broker = strom_factory({"max.connections.per.ip": 3})

    def open_answering() -> socket.socket:
        """A connection that gets an answer (slots of closed connections,
        the readiness probe's included, are freed asynchronously)."""
        def attempt():
            s = kw.connect(broker.host, broker.port)
            try:
                kw.api_versions_on(s)
                return s
            except (OSError, kw.ProtocolError):
                s.close()
                raise
        return wait_until(attempt, timeout=10, what="a connection within max.connections.per.ip")

    held = [open_answering() for _ in range(3)]
    try:
        with kw.connect(broker.host, broker.port) as fourth:
            try:
                fourth.sendall(kw.api_versions_request(9))
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert closed_without_answer(fourth, 5.0), "the 4th connection from one address was kept open"
        for i, s in enumerate(held):
            assert kw.api_versions_on(s, correlation_id=20 + i).error_code == kw.ERROR_NONE
        held.pop().close()
        held.append(open_answering())  # a freed slot is usable again
    finally:
        for s in held:
            s.close()
    assert_serving(broker, "max.connections.per.ip")
