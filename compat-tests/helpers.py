"""Client-side helpers shared by the compatibility tests.

Everything here drives the real, unmodified client libraries (kafka-python
and confluent-kafka/librdkafka); the broker handle comes from conftest.py.

Conventions:

* ``lib`` is ``"kafka-python"`` or ``"confluent"`` (see LIBS).
* These helpers' consumers never join a group: partitions are assigned
  manually (test_groups.py builds its own group members).
  librdkafka refuses to build a consumer without ``group.id``, so the
  confluent consumers get one, with auto-commit and offset store disabled:
  nothing is ever committed.
* Waiting is always done by polling a condition against a deadline.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import confluent_kafka
import kafka
from confluent_kafka.admin import AdminClient

import kafka_wire
import reference_kafka as rk

T = TypeVar("T")

KAFKA_PYTHON = "kafka-python"
CONFLUENT = "confluent"
LIBS = (KAFKA_PYTHON, CONFLUENT)
LIB_PAIRS = [(p, c) for p in LIBS for c in LIBS]
CODECS = ("gzip", "snappy", "lz4", "zstd")

DEFAULT_TIMEOUT = 30.0

# Kafka's defaults, which Strom is expected to share.
DEFAULT_MAX_MESSAGE_BYTES = 1048588
DEFAULT_RETENTION_MS = 604800000
SOCKET_REQUEST_MAX_BYTES = 104857600


# --------------------------------------------------------------------------
# generic


def wait_until(predicate: Callable[[], T], timeout: float = DEFAULT_TIMEOUT,
               interval: float = 0.05, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Exceptions raised by the predicate count as "not yet" (the last one is
    reported if the deadline passes), except AssertionError, which fails at
    once: predicates may assert on things that must never happen meanwhile.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported on timeout
            # Keep only the text: holding the exception would keep the
            # predicate's frames (and any client objects they reference) alive.
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last result: {last}")
        time.sleep(interval)


def run_json_program(what: str, cmd: list[str], timeout: float, **popen) -> tuple[dict, float]:
    """Runs a test program (a Java or Node scenario) that prints one JSON
    line of what it observed: the parsed line, with its stderr under
    ``_stderr``, and the seconds it ran. Fails with the output's
    tail if it does not finish within ``timeout`` seconds, prints no JSON
    line, exits non-zero or reports ``fatal``. It dies with pytest, even a
    SIGKILLed one (setpriv's parent-death signal)."""
    began = time.monotonic()
    proc = subprocess.Popen(rk._pdeathsig_prefix() + cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{what} did not finish within {timeout} s\n"
                             f"--- stdout ---\n{out[-4000:]}\n--- stderr ---\n{err[-6000:]}") from None
    elapsed = time.monotonic() - began
    lines = [line for line in out.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(f"{what} (exit {proc.returncode}, {elapsed:.1f} s) printed no JSON line\n"
                             f"--- stdout ---\n{out[-4000:]}\n--- stderr ---\n{err[-6000:]}") from None
    if proc.returncode != 0 or "fatal" in result:
        raise AssertionError(f"{what} failed (exit {proc.returncode}, {elapsed:.1f} s): "
                             f"{json.dumps(result.get('fatal', result), indent=1)}\n"
                             f"--- stderr ---\n{err[-6000:]}")
    result["_stderr"] = err
    return result, elapsed


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------
# client construction


def kp_common(broker, **overrides) -> dict:
    cfg = dict(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000, client_id="strom-compat-kp")
    cfg.update(overrides)
    return cfg


@contextmanager
def kp_admin(broker, **overrides) -> Iterator[kafka.KafkaAdminClient]:
    client = kafka.KafkaAdminClient(**kp_common(broker, **overrides))
    try:
        yield client
    finally:
        client.close()


@contextmanager
def kp_producer(broker, **overrides) -> Iterator[kafka.KafkaProducer]:
    cfg = kp_common(broker, max_block_ms=30000, linger_ms=5)
    cfg.update(overrides)
    producer = kafka.KafkaProducer(**cfg)
    try:
        yield producer
    finally:
        producer.close(timeout=10)


@contextmanager
def kp_consumer(broker, **overrides) -> Iterator[kafka.KafkaConsumer]:
    cfg = kp_common(broker, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    cfg.update(overrides)
    consumer = kafka.KafkaConsumer(**cfg)
    try:
        yield consumer
    finally:
        consumer.close()


def ck_common(broker, **overrides) -> dict:
    cfg = {"bootstrap.servers": broker.bootstrap, "client.id": "strom-compat-ck"}
    cfg.update(overrides)
    return cfg


def ck_admin(broker, **overrides) -> AdminClient:
    """A confluent AdminClient. Keep a reference to it until its futures are
    resolved: a garbage-collected client fails them with _DESTROY."""
    return AdminClient(ck_common(broker, **overrides))


@contextmanager
def ck_producer(broker, **overrides) -> Iterator[confluent_kafka.Producer]:
    cfg = ck_common(broker, **{"linger.ms": 5})
    cfg.update(overrides)
    producer = confluent_kafka.Producer(cfg)
    try:
        yield producer
    finally:
        producer.flush(10)


# librdkafka will not construct a consumer without group.id (checked with
# confluent-kafka 2.16.1: "ValueError: Failed to create consumer: group.id
# must be set"). It is only a label here: we assign() partitions and never
# commit. Note that librdkafka still sends FindCoordinator for it.
ASSIGN_ONLY_GROUP = "strom-compat-assign-only"


@contextmanager
def ck_consumer(broker, **overrides) -> Iterator[confluent_kafka.Consumer]:
    cfg = ck_common(broker, **{
        "group.id": ASSIGN_ONLY_GROUP,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    })
    cfg.update(overrides)
    consumer = confluent_kafka.Consumer(cfg)
    try:
        yield consumer
    finally:
        consumer.close()


def ck_result(future, timeout: float = DEFAULT_TIMEOUT):
    """Result of a confluent admin future; re-raises the KafkaException."""
    return future.result(timeout=timeout)


def ck_error_code(exc: BaseException) -> int:
    """The KafkaError code carried by a confluent KafkaException."""
    assert isinstance(exc, confluent_kafka.KafkaException), f"not a KafkaException: {exc!r}"
    return exc.args[0].code()


# --------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class Rec:
    """A record to produce."""
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None
    partition: int | None = None


@dataclass(frozen=True)
class Got:
    """A record as a consumer returned it."""
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


def content(records: Iterable[Rec | Got]) -> list[tuple]:
    return [(r.key, r.value, tuple(r.headers)) for r in records]


def sample_records(n: int, prefix: str = "r") -> list[Rec]:
    """Keys, compressible values and (repeated) headers that vary per record."""
    return [
        Rec(
            key=f"{prefix}-key-{i % 7}".encode(),
            value=(f"{prefix}-value-{i:05d}-" + "payload " * (10 + i % 13)).encode(),
            headers=(("seq", str(i).encode()), ("h", b"\x00\xff" * (i % 3)), ("h", b"dup")),
        )
        for i in range(n)
    ]


@dataclass
class Delivery:
    partition: int
    offset: int


def produce(lib: str, broker, topic: str, records: Sequence[Rec], timeout: float = DEFAULT_TIMEOUT,
            **config) -> list[Delivery]:
    """Produce ``records`` in order and wait for every acknowledgement.

    Returns one Delivery per record, in input order. Any delivery error fails
    the call (raising the library's own exception).
    """
    if lib == KAFKA_PYTHON:
        with kp_producer(broker, **config) as producer:
            futures = [
                producer.send(topic, key=r.key, value=r.value, headers=list(r.headers) or None,
                              partition=r.partition, timestamp_ms=r.timestamp_ms)
                for r in records
            ]
            producer.flush(timeout=timeout)
            return [Delivery(m.partition, m.offset) for m in (f.get(timeout=timeout) for f in futures)]
    if lib == CONFLUENT:
        reports: list = [None] * len(records)
        with ck_producer(broker, **config) as producer:
            for i, r in enumerate(records):
                kwargs = {"key": r.key, "value": r.value, "on_delivery": _ck_report(reports, i)}
                if r.headers:
                    kwargs["headers"] = list(r.headers)
                if r.partition is not None:
                    kwargs["partition"] = r.partition
                if r.timestamp_ms is not None:
                    kwargs["timestamp"] = r.timestamp_ms
                ck_produce_with_backpressure(producer, topic, **kwargs)
            remaining = producer.flush(timeout)
            assert remaining == 0, f"{remaining} messages still undelivered after {timeout}s"
        errors = [(i, err) for i, (err, _) in enumerate(reports) if err is not None]
        if errors:
            raise confluent_kafka.KafkaException(errors[0][1])
        return [Delivery(p, o) for _, (p, o) in reports]
    raise ValueError(lib)


def _ck_report(reports: list, index: int):
    def on_delivery(err, msg):
        reports[index] = (err, None) if err is not None else (None, (msg.partition(), msg.offset()))
    return on_delivery


def ck_produce_with_backpressure(producer: confluent_kafka.Producer, topic: str, **kwargs) -> None:
    while True:
        try:
            producer.produce(topic, **kwargs)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.1)


def consume(lib: str, broker, topic: str, count: int, partitions: Iterable[int] = (0,),
            offset: int = 0, timeout: float = DEFAULT_TIMEOUT, **config) -> list[Got]:
    """Assign ``partitions`` at ``offset`` and read until ``count`` records arrived.

    Records come back in delivery order (per-partition order is the broker's).
    More than ``count`` may be returned if they arrive in the same poll.
    """
    partitions = list(partitions)
    if lib == KAFKA_PYTHON:
        with kp_consumer(broker, **config) as consumer:
            tps = [kafka.TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, offset)
            return kp_poll_records(consumer, count, timeout)
    if lib == CONFLUENT:
        with ck_consumer(broker, **config) as consumer:
            consumer.assign([confluent_kafka.TopicPartition(topic, p, offset) for p in partitions])
            return ck_poll_records(consumer, count, timeout)
    raise ValueError(lib)


def kp_poll_records(consumer: kafka.KafkaConsumer, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Got]:
    got: list[Got] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        if time.monotonic() >= deadline:
            raise AssertionError(f"kafka-python consumer got {len(got)} of {count} records in {timeout}s")
        got.extend(kp_poll_once(consumer))
    return got


def kp_poll_once(consumer: kafka.KafkaConsumer, timeout_ms: int = 200) -> list[Got]:
    return [
        Got(m.topic, m.partition, m.offset, m.key, m.value, tuple((k, v) for k, v in (m.headers or [])),
            m.timestamp)
        for batch in consumer.poll(timeout_ms=timeout_ms).values() for m in batch
    ]


def ck_poll_records(consumer: confluent_kafka.Consumer, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Got]:
    got: list[Got] = []
    errors: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        if time.monotonic() >= deadline:
            raise AssertionError(f"confluent consumer got {len(got)} of {count} records in {timeout}s; "
                                 f"errors seen: {errors[-5:]}")
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error() is not None:
            err = msg.error()
            if err.fatal():
                raise confluent_kafka.KafkaException(err)
            errors.append(err)  # transient (e.g. coordinator lookups for the unused group.id)
            continue
        _, ts = msg.timestamp()
        got.append(Got(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                       tuple(msg.headers() or ()), ts))
    return got


def read_partition(broker, topic: str, partition: int = 0, timeout: float = 60.0, **config) -> list[Got]:
    """Every record of one partition, from offset 0 to the current end offset."""
    with kp_consumer(broker, **config) as consumer:
        tp = kafka.TopicPartition(topic, partition)
        end = consumer.end_offsets([tp])[tp]
        consumer.assign([tp])
        consumer.seek(tp, 0)
        got: list[Got] = []
        deadline = time.monotonic() + timeout
        while end > 0 and (not got or got[-1].offset < end - 1):
            if time.monotonic() >= deadline:
                raise AssertionError(f"read {len(got)} records of {topic}-{partition} (end offset {end}) "
                                     f"in {timeout}s")
            got.extend(kp_poll_once(consumer))
        return got


# --------------------------------------------------------------------------
# topics


def create_topic(broker, name: str | None = None, partitions: int = 1,
                 configs: dict[str, str] | None = None, replication_factor: int = 1) -> str:
    """Create a topic with kafka-python's admin client and wait until every
    partition has a leader (and, replicated, every replica in sync) in
    metadata. Returns the name."""
    name = name or unique_name()
    with kp_admin(broker) as admin:
        admin.create_topics({name: {"num_partitions": partitions, "replication_factor": replication_factor,
                                    "configs": dict(configs or {})}})
        wait_topic_ready(admin, name, partitions, replicas=replication_factor)
    return name


def wait_topic_ready(admin: kafka.KafkaAdminClient, name: str, partitions: int,
                     timeout: float = DEFAULT_TIMEOUT, replicas: int = 1) -> dict:
    def ready():
        (topic,) = admin.describe_topics([name])
        parts = topic["partitions"]
        if (topic["error_code"] == 0 and len(parts) == partitions
                and all(p["error_code"] == 0 and p["leader_id"] >= 1 and len(p["isr_nodes"]) == replicas
                        for p in parts)):
            return topic
        return None
    return wait_until(ready, timeout, what=f"topic {name} with {partitions} led partitions in metadata")


def topic_names(broker) -> set[str]:
    with kp_admin(broker) as admin:
        return set(admin.list_topics())


def end_offsets(broker, topic: str, partitions: Iterable[int] = (0,)) -> dict[int, int]:
    with kp_consumer(broker) as consumer:
        tps = [kafka.TopicPartition(topic, p) for p in partitions]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}


def assert_stored_codec(broker, topic: str, codec: str | None, records: int, partition: int = 0) -> None:
    """Check, via raw Fetch v4, how the partition's batches are stored.

    The broker keeps batches as the producer compressed them
    (compression.type=producer), so this shows what the client really sent:
    librdkafka silently sends uncompressed batches when it believes the
    broker can't take a codec. librdkafka also sends a batch uncompressed
    when compressing does not make it smaller, so "none" is tolerated next to
    the codec.
    """
    batches = kafka_wire.stored_batches(broker.host, broker.port, topic, partition)
    codecs = {b.codec for b in batches}
    if codec is None:
        assert codecs == {"none"}, codecs
    else:
        assert codec in codecs, f"no batch stored with {codec}: {codecs}"
        assert codecs <= {codec, "none"}, codecs
    assert sum(b.record_count for b in batches) == records


# --------------------------------------------------------------------------
# threads


class BackgroundTask:
    """Run ``fn`` in a thread; ``result()`` joins and re-raises its exception."""

    def __init__(self, fn: Callable[[], T], name: str = "background"):
        self._result: list = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn):
        try:
            self._result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in result()
            self._error.append(exc)

    @property
    def failed(self) -> bool:
        return bool(self._error)

    def result(self, timeout: float = DEFAULT_TIMEOUT):
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"background task {self._thread.name} still running after {timeout}s")
        if self._error:
            raise self._error[0]
        return self._result[0]


def coordinator_node(cluster, key: str, key_type: int) -> int:
    """The node id that a running node names as the coordinator of ``key``."""
    def ask():
        for node in cluster.running():
            try:
                code, node_id = kafka_wire.find_coordinator(node.host, node.port, key, key_type)
            except (OSError, kafka_wire.ProtocolError):
                continue
            if code == 0:
                return node_id
        return None
    return wait_until(ask, timeout=30, interval=0.1, what=f"a coordinator for {key}")


def assert_same_transcripts(kafka: list[tuple], strom: list[tuple], expected: dict[str, str]) -> None:
    """A differential script's transcripts, (step, error name, what was
    seen...) each: Kafka's errors are the ones ``expected`` names, every
    expected step ran in order, and Strom's transcript is Kafka's."""
    for theirs in kafka:
        assert theirs[1] == expected[theirs[0]], f"Kafka answers {theirs} where EXPECTED says {expected[theirs[0]]}"
    for ours, theirs in zip(strom, kafka, strict=True):
        assert ours == theirs, f"step {ours[0]!r}: Strom {ours[1:]} but Kafka {theirs[1:]}"
    assert [s[0] for s in kafka] == list(expected), "every expected step ran, in order"
