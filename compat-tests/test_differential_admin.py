"""Differential: config changes, DeleteRecords, ElectLeaders and the ACL
APIs, Strom against the reference Kafka, through confluent-kafka's admin
client (librdkafka 2.16).

Each case of ``CASES`` runs on both brokers against a fresh topic made
alike on each (one partition, 10 records): what is compared is the error
the admin client reports (its name and the broker's message), or that it
succeeded. Where the two answer differently the case must be a row of
docs/compatibility.md, section "Admin operations", with both answers as
observed; a listed row whose case now answers the same fails too.

Then what the changes do, on both brokers alike where both can be checked:
a raised ``max.message.bytes`` lets a larger record in, a broker-level
``log.retention.ms`` reaches a topic (DescribeConfigs source), and records
deleted by DeleteRecords stay deleted (ListOffsets earliest, a read from
the start). On Strom also across a kill -9 and restart: the changed configs
and the new log start offset are on disk before the answer.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field

import pytest
from confluent_kafka import ElectionType, KafkaException, TopicPartition
from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType, AlterConfigOpType,
                                   ConfigEntry, ConfigResource, ConfigSource, NewTopic, ResourcePatternType,
                                   ResourceType)

import kafka_wire
import reference_kafka as rk
from helpers import (CONFLUENT, DEFAULT_TIMEOUT, Rec, ck_admin, ck_consumer, ck_poll_records, ck_result, produce,
                     unique_name, wait_until)

SECTION = "Admin operations"
RECORDS = 10

SET, DELETE = AlterConfigOpType.SET, AlterConfigOpType.DELETE
APPEND, SUBTRACT = AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT
TOPIC, BROKER = ResourceType.TOPIC, ResourceType.BROKER


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    kind: str                     # "configs", "delete-records", "elect", "acls"
    resource: ResourceType = TOPIC
    ops: tuple = ()               # (name, value, op) for "configs"
    validate_only: bool = False
    offsets: tuple = ()           # (partition, offset) for "delete-records"
    args: dict = field(default_factory=dict)


CASES = [
    Case("topic-set", "SET retention.ms on a topic", "configs", ops=(("retention.ms", "1000", SET),)),
    Case("topic-unknown-key", "SET a key topics do not have", "configs", ops=(("no.such.key", "1", SET),)),
    Case("topic-bad-value", "SET retention.ms to abc", "configs", ops=(("retention.ms", "abc", SET),)),
    Case("topic-below-minimum", "SET retention.ms to -5", "configs", ops=(("retention.ms", "-5", SET),)),
    Case("topic-bad-enum", "SET cleanup.policy to shred", "configs", ops=(("cleanup.policy", "shred", SET),)),
    Case("topic-append-not-list", "APPEND to retention.ms (a LONG)", "configs", ops=(("retention.ms", "5", APPEND),)),
    Case("topic-append-list", "APPEND compact to cleanup.policy", "configs",
         ops=(("cleanup.policy", "compact", APPEND),)),
    Case("topic-subtract-list", "SUBTRACT delete from cleanup.policy", "configs",
         ops=(("cleanup.policy", "delete", SUBTRACT),)),
    Case("topic-delete", "DELETE an override", "configs", ops=(("retention.ms", None, DELETE),)),
    Case("topic-delete-unknown-key", "DELETE a key topics do not have", "configs",
         ops=(("no.such.key", None, DELETE),)),
    Case("topic-validate-only", "SET segment.ms with validate_only", "configs",
         ops=(("segment.ms", "100000", SET),), validate_only=True),
    Case("topic-unknown", "SET on a topic that does not exist", "configs", ops=(("retention.ms", "1", SET),),
         args={"topic": "missing"}),
    Case("broker-set-dynamic", "SET log.retention.ms on the broker", "configs", resource=BROKER,
         ops=(("log.retention.ms", "86400000", SET),)),
    Case("broker-set-static", "SET num.partitions on the broker", "configs", resource=BROKER,
         ops=(("num.partitions", "3", SET),)),
    Case("broker-bad-value", "SET log.retention.ms to x on the broker", "configs", resource=BROKER,
         ops=(("log.retention.ms", "x", SET),)),
    Case("broker-unknown-key", "SET a key Kafka does not know on the broker", "configs", resource=BROKER,
         ops=(("strom.test.unknown.key", "3", SET),)),
    Case("broker-max-connections", "SET max.connections on the broker", "configs", resource=BROKER,
         ops=(("max.connections", "1000", SET),)),
    Case("broker-max-connections-per-ip", "SET max.connections.per.ip on the broker", "configs", resource=BROKER,
         ops=(("max.connections.per.ip", "1000", SET),)),
    Case("broker-delete", "DELETE log.retention.ms on the broker", "configs", resource=BROKER,
         ops=(("log.retention.ms", None, DELETE),)),
    Case("delete-records", "DeleteRecords before offset 4", "delete-records", offsets=((0, 4),)),
    Case("delete-records-high-watermark", "DeleteRecords before the high watermark (-1)", "delete-records",
         offsets=((0, -1),)),
    Case("delete-records-past-end", "DeleteRecords before offset 1000 (past the end)", "delete-records",
         offsets=((0, 1000),)),
    Case("delete-records-unknown-partition", "DeleteRecords on partition 5 of a one-partition topic",
         "delete-records", offsets=((5, 1),)),
    Case("delete-records-compacted", "DeleteRecords on a compacted topic", "delete-records",
         offsets=((0, 1),), args={"configs": {"cleanup.policy": "compact"}}),
    Case("elect-preferred", "preferred election of partition 0", "elect", args={"type": ElectionType.PREFERRED}),
    Case("elect-unclean", "unclean election of partition 0", "elect", args={"type": ElectionType.UNCLEAN}),
    Case("elect-unknown-partition", "preferred election of partition 9", "elect",
         args={"type": ElectionType.PREFERRED, "partition": 9}),
    Case("describe-acls", "DescribeAcls, any filter", "acls"),
]
CASE_IDS = [c.id for c in CASES]


def error_text(exc: BaseException) -> str:
    """An admin client's error as the table writes it: NAME: message."""
    if isinstance(exc, KafkaException) and exc.args:
        err = exc.args[0]
        return f"{err.name()}: {err.str()}"
    return f"{type(exc).__name__}: {exc}"


def outcome(fn) -> str:
    try:
        result = fn()
    except Exception as exc:  # the admin client's error is the outcome
        return error_text(exc)
    return "ok" if result is None else f"ok {result}"


def make_topic(broker, configs: dict | None = None) -> str:
    name = unique_name("diff-admin")
    admin = ck_admin(broker)
    ck_result(admin.create_topics([NewTopic(name, 1, 1, config=dict(configs or {}))])[name])
    produce(CONFLUENT, broker, name, [Rec(key=f"k{i}".encode(), value=f"v{i}".encode()) for i in range(RECORDS)])
    return name


def broker_resource(broker) -> str:
    """The broker's node id (confluent-kafka cannot name the cluster default)."""
    return str(ck_admin(broker).list_topics(timeout=DEFAULT_TIMEOUT).controller_id)


def run_case(broker, case: Case) -> str:
    """The case's outcome, with its topics' names written T."""
    return re.sub(r"diff-admin(-missing)?-[0-9a-f]{12}", "T", raw_case(broker, case))


def raw_case(broker, case: Case) -> str:
    admin = ck_admin(broker)
    topic = make_topic(broker, case.args.get("configs"))
    if case.kind == "configs":
        name = broker_resource(broker) if case.resource == BROKER else case.args.get("topic", topic)
        if name == "missing":
            name = unique_name("diff-admin-missing")
        resource = ConfigResource(case.resource, name, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=op) for k, v, op in case.ops])

        def alter():
            for future in admin.incremental_alter_configs([resource], validate_only=case.validate_only).values():
                ck_result(future)
        return outcome(alter)
    if case.kind == "delete-records":
        def delete():
            futures = admin.delete_records([TopicPartition(topic, p, o) for p, o in case.offsets])
            return [ck_result(f).low_watermark for f in futures.values()]
        return outcome(delete)
    if case.kind == "elect":
        partition = case.args.get("partition", 0)

        def elect():
            result = ck_result(admin.elect_leaders(case.args["type"], [TopicPartition(topic, partition)]))
            return sorted(str(e) if e is None else error_text(KafkaException(e)) for e in result.values())
        return outcome(elect)
    if case.kind == "acls":
        acl_filter = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                      AclOperation.ANY, AclPermissionType.ANY)
        return outcome(lambda: ck_result(admin.describe_acls(acl_filter)))
    raise AssertionError(case.kind)


@pytest.fixture
def reset_broker_configs(broker, kafka_ref):
    """Broker-level changes are undone on both brokers after each case."""
    yield
    for b in (broker, kafka_ref):
        admin = ck_admin(b)
        for key in ("log.retention.ms", "strom.test.unknown.key", "max.connections", "max.connections.per.ip"):
            resource = ConfigResource(BROKER, broker_resource(b), incremental_configs=[
                ConfigEntry(key, None, incremental_operation=DELETE)])
            for future in admin.incremental_alter_configs([resource]).values():
                ck_result(future)


def test_table_header_and_ids(kafka_ref):
    rk.check_case_table(SECTION, kafka_ref.version, CASE_IDS, "CASES")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_admin_operation_differs_only_as_listed(broker, kafka_ref, reset_broker_configs, case):
    kafka = run_case(kafka_ref, case)
    strom = run_case(broker, case)
    assert broker.is_running(), "strom died"
    rk.check_case(SECTION, case.id, case.what, kafka, strom)


# -- what the changes do --------------------------------------------------------

def topic_config(broker, topic: str, key: str):
    resource = ConfigResource(TOPIC, topic)
    admin = ck_admin(broker)
    (described,) = admin.describe_configs([resource]).values()
    entry = ck_result(described)[key]
    return entry.value, ConfigSource(entry.source)


def set_configs(broker, kind, name: str, entries: list[tuple]) -> None:
    resource = ConfigResource(kind, name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=op) for k, v, op in entries])
    admin = ck_admin(broker)
    for future in admin.incremental_alter_configs([resource]).values():
        ck_result(future)


def earliest(broker, topic: str) -> int:
    with ck_consumer(broker, **{"group.id": unique_name("diff-admin-g")}) as c:
        low, _ = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=DEFAULT_TIMEOUT)
        return low


def first_offset_read(broker, topic: str) -> int:
    with ck_consumer(broker, **{"group.id": unique_name("diff-admin-g"), "auto.offset.reset": "earliest"}) as c:
        c.assign([TopicPartition(topic, 0, 0)])
        (got, *_) = ck_poll_records(c, 1)
        return got.offset


def produce_outcome(broker, topic: str, size: int) -> str:
    try:
        produce(CONFLUENT, broker, topic, [Rec(key=b"big", value=b"x" * size)],
                **{"message.max.bytes": 10_000_000})
    except Exception as exc:
        return error_text(exc)
    return "ok"


@pytest.mark.parametrize("target", ["kafka", "strom"])
def test_raised_max_message_bytes_takes_effect(broker, kafka_ref, target):
    b = kafka_ref if target == "kafka" else broker
    topic = make_topic(b)
    assert "MSG_SIZE_TOO_LARGE" in produce_outcome(b, topic, 1_500_000)
    set_configs(b, TOPIC, topic, [("max.message.bytes", "2000000", SET)])
    assert topic_config(b, topic, "max.message.bytes") == ("2000000", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert produce_outcome(b, topic, 1_500_000) == "ok"


@pytest.mark.parametrize("target", ["kafka", "strom"])
def test_broker_level_config_reaches_topics(broker, kafka_ref, reset_broker_configs, target):
    b = kafka_ref if target == "kafka" else broker
    topic = make_topic(b)
    # Kafka applies a change once its broker has the metadata record, a
    # moment after the answer; Strom before the answer.
    def shows(key, expected, what):
        if target == "strom":
            assert topic_config(b, topic, key) == expected
        else:
            wait_until(lambda: topic_config(b, topic, key) == expected, what=what)
    set_configs(b, BROKER, broker_resource(b), [("log.retention.ms", "86400000", SET)])
    shows("retention.ms", ("86400000", ConfigSource.DYNAMIC_BROKER_CONFIG), "the broker's log.retention.ms")
    set_configs(b, TOPIC, topic, [("retention.ms", "3600000", SET)])
    shows("retention.ms", ("3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG), "the topic's retention.ms override")


@pytest.mark.parametrize("target", ["kafka", "strom"])
def test_deleted_records_stay_deleted(broker, kafka_ref, target):
    b = kafka_ref if target == "kafka" else broker
    topic = make_topic(b)
    admin = ck_admin(b)
    (future,) = admin.delete_records([TopicPartition(topic, 0, 6)]).values()
    assert ck_result(future).low_watermark == 6
    assert earliest(b, topic) == 6
    assert first_offset_read(b, topic) == 6


def test_changes_survive_a_kill_and_restart(strom_factory):
    broker = strom_factory()
    topic = make_topic(broker)
    set_configs(broker, TOPIC, topic, [("retention.ms", "3600000", SET), ("cleanup.policy", "compact", APPEND)])
    set_configs(broker, BROKER, broker_resource(broker), [("log.segment.bytes", "50000000", SET)])
    admin = ck_admin(broker)
    (future,) = admin.delete_records([TopicPartition(topic, 0, 7)]).values()
    assert ck_result(future).low_watermark == 7
    broker.kill9()
    broker.start()
    wait_until(lambda: earliest(broker, topic) == 7, what=f"{topic}'s log start offset 7 after the restart")
    assert first_offset_read(broker, topic) == 7
    assert topic_config(broker, topic, "retention.ms") == ("3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert topic_config(broker, topic, "cleanup.policy") == ("delete,compact", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert topic_config(broker, topic, "segment.bytes") == ("50000000", ConfigSource.DYNAMIC_BROKER_CONFIG)


def test_a_lowered_per_ip_limit_refuses_new_connections(strom_factory):
    """max.connections.per.ip changed at run time, on Strom: a new
    connection past the limit is closed at once, the open one stays; with
    the override deleted, two are served again."""
    broker = strom_factory()
    set_configs(broker, BROKER, broker_resource(broker), [("max.connections.per.ip", "1", SET)])
    with socket.create_connection((broker.host, broker.port), timeout=DEFAULT_TIMEOUT) as first:
        first.sendall(kafka_wire.api_versions_request(1))
        assert first.recv(4), "the first connection is served"
        with socket.create_connection((broker.host, broker.port), timeout=DEFAULT_TIMEOUT) as second:
            second.sendall(kafka_wire.api_versions_request(2))
            try:
                answer = second.recv(4)
            except ConnectionResetError:
                answer = b""
            assert answer == b"", "a second connection from the address is closed"
    set_configs(broker, BROKER, broker_resource(broker), [("max.connections.per.ip", None, DELETE)])
    with socket.create_connection((broker.host, broker.port), timeout=DEFAULT_TIMEOUT) as a, \
            socket.create_connection((broker.host, broker.port), timeout=DEFAULT_TIMEOUT) as b:
        for i, conn in enumerate((a, b)):
            conn.sendall(kafka_wire.api_versions_request(3 + i))
            assert conn.recv(4), "with the limit gone, both are served"
