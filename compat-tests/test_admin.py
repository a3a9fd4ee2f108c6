"""Admin APIs: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
DescribeCluster and Metadata-driven topic auto-creation, through kafka-python's
KafkaAdminClient and confluent-kafka's AdminClient."""

from __future__ import annotations

import confluent_kafka
import kafka.errors as kerr
import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import ConfigResource as CkConfigResource
from confluent_kafka.admin import ConfigSource, NewPartitions, NewTopic, ResourceType
from kafka.admin import ConfigResource

from helpers import (
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_RETENTION_MS, KAFKA_PYTHON, Rec, ck_admin, ck_error_code,
    ck_producer, ck_result, consume, create_topic, end_offsets, kp_admin, kp_producer, produce,
    topic_names, unique_name, wait_topic_ready, wait_until,
)

INVALID_TOPIC_NAMES = ["bad/name", "..", ".", "has space", "x" * 250, "tab\tname", "ünïcode"]


# --------------------------------------------------------------------------
# CreateTopics


def test_create_topic_kafka_python(broker):
    name = unique_name()
    with kp_admin(broker) as admin:
        result = admin.create_topics({name: {"num_partitions": 3, "replication_factor": 1,
                                             "configs": {"retention.ms": "3600000"}}})
        (created,) = result["topics"]
        assert created["name"] == name
        assert created["error_code"] == 0
        # CreateTopics v5+ echoes the resulting layout.
        assert created["num_partitions"] == 3
        assert created["replication_factor"] == 1
        topic = wait_topic_ready(admin, name, 3)
    assert sorted(p["partition_index"] for p in topic["partitions"]) == [0, 1, 2]
    for p in topic["partitions"]:
        assert p["replica_nodes"] == [1]
        assert p["isr_nodes"] == [1]


def test_create_topic_confluent(broker):
    name = unique_name()
    admin = ck_admin(broker)
    futures = admin.create_topics([NewTopic(name, num_partitions=4, replication_factor=1,
                                            config={"cleanup.policy": "delete"})])
    assert ck_result(futures[name]) is None

    def described():
        md = admin.list_topics(topic=name, timeout=10)
        t = md.topics[name]
        return t if t.error is None and len(t.partitions) == 4 else None
    topic = wait_until(described, what=f"{name} in librdkafka metadata")
    for pid, part in topic.partitions.items():
        assert part.leader == 1
        assert part.replicas == [1]
        assert part.isrs == [1]


def test_create_topic_default_partitions(broker):
    """num_partitions=-1 / replication_factor=-1 means broker defaults (CreateTopics v4+)."""
    name = unique_name()
    with kp_admin(broker) as admin:
        admin.create_topics([name])
        wait_topic_ready(admin, name, 1)


def test_duplicate_topic_kafka_python(broker):
    name = create_topic(broker)
    with kp_admin(broker) as admin:
        with pytest.raises(kerr.TopicAlreadyExistsError):
            admin.create_topics({name: {"num_partitions": 1}})
        result = admin.create_topics({name: {"num_partitions": 1}}, raise_errors=False)
        assert result["topics"][0]["error_code"] == kerr.TopicAlreadyExistsError.errno


def test_duplicate_topic_confluent(broker):
    name = create_topic(broker)
    admin = ck_admin(broker)
    futures = admin.create_topics([NewTopic(name, num_partitions=1)])
    with pytest.raises(confluent_kafka.KafkaException) as info:
        ck_result(futures[name])
    assert ck_error_code(info.value) == KafkaError.TOPIC_ALREADY_EXISTS


@pytest.mark.parametrize("name", INVALID_TOPIC_NAMES, ids=lambda n: repr(n[:12]))
def test_invalid_topic_name_kafka_python(broker, name):
    with kp_admin(broker) as admin:
        with pytest.raises(kerr.InvalidTopicError):
            admin.create_topics({name: {"num_partitions": 1}})
    assert name not in topic_names(broker)


@pytest.mark.parametrize("name", ["bad/name", "..", "x" * 250])
def test_invalid_topic_name_confluent(broker, name):
    admin = ck_admin(broker)
    futures = admin.create_topics([NewTopic(name, num_partitions=1)])
    with pytest.raises(confluent_kafka.KafkaException) as info:
        ck_result(futures[name])
    assert ck_error_code(info.value) == KafkaError.TOPIC_EXCEPTION
    assert name not in topic_names(broker)


def test_longest_legal_topic_name(broker):
    """249 characters is Kafka's limit, and legal."""
    name = ("n" * 249)
    with kp_admin(broker) as admin:
        admin.create_topics({name: {"num_partitions": 1}})
        wait_topic_ready(admin, name, 1)


def test_invalid_partition_count_rejected(broker):
    name = unique_name()
    with kp_admin(broker) as admin:
        with pytest.raises(kerr.InvalidPartitionsError):
            admin.create_topics({name: {"num_partitions": 0, "replication_factor": 1}})
    assert name not in topic_names(broker)


def test_validate_only_creates_nothing(broker):
    kp_name, ck_name = unique_name(), unique_name()
    with kp_admin(broker) as admin:
        result = admin.create_topics({kp_name: {"num_partitions": 2}}, validate_only=True)
        assert result["topics"][0]["error_code"] == 0
        # validate_only still validates.
        with pytest.raises(kerr.InvalidTopicError):
            admin.create_topics({"bad/name": {"num_partitions": 1}}, validate_only=True)
    ck = ck_admin(broker)
    futures = ck.create_topics([NewTopic(ck_name, num_partitions=2)], validate_only=True)
    assert ck_result(futures[ck_name]) is None

    names = topic_names(broker)
    assert kp_name not in names and ck_name not in names
    # ... and the names are still free.
    create_topic(broker, kp_name, partitions=1)


# --------------------------------------------------------------------------
# DeleteTopics


def test_delete_topic_kafka_python(broker):
    name = create_topic(broker, partitions=2)
    with kp_admin(broker) as admin:
        result = admin.delete_topics([name])
        assert [t["error_code"] for t in result["topics"]] == [0]
        wait_until(lambda: name not in admin.list_topics(), what=f"{name} gone from metadata")
        (described,) = admin.describe_topics([name])
        assert described["error_code"] == kerr.UnknownTopicOrPartitionError.errno


def test_delete_topic_confluent(broker):
    name = create_topic(broker)
    admin = ck_admin(broker)
    assert ck_result(admin.delete_topics([name])[name]) is None
    wait_until(lambda: name not in admin.list_topics(timeout=10).topics, what=f"{name} gone from metadata")


def test_delete_missing_topic(broker):
    name = unique_name("missing")
    with kp_admin(broker) as admin:
        with pytest.raises(kerr.UnknownTopicOrPartitionError):
            admin.delete_topics([name])
    ck = ck_admin(broker)
    with pytest.raises(confluent_kafka.KafkaException) as info:
        ck_result(ck.delete_topics([name])[name])
    assert ck_error_code(info.value) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_recreate_deleted_topic_starts_empty(broker):
    name = create_topic(broker)
    produce(KAFKA_PYTHON, broker, name, [Rec(b"k", b"v")] * 3)
    with kp_admin(broker) as admin:
        admin.delete_topics([name])
        wait_until(lambda: name not in admin.list_topics(), what=f"{name} gone from metadata")
    create_topic(broker, name, partitions=1)
    assert end_offsets(broker, name) == {0: 0}


# --------------------------------------------------------------------------
# CreatePartitions


def test_create_partitions_kafka_python(broker):
    name = create_topic(broker, partitions=1)
    with kp_admin(broker) as admin:
        admin.create_partitions({name: 3})
        wait_topic_ready(admin, name, 3)


def test_create_partitions_confluent(broker):
    name = create_topic(broker, partitions=2)
    admin = ck_admin(broker)
    assert ck_result(admin.create_partitions([NewPartitions(name, 5)])[name]) is None
    wait_until(lambda: len(admin.list_topics(topic=name, timeout=10).topics[name].partitions) == 5,
               what=f"{name} to have 5 partitions")


def test_create_partitions_places_and_replicates_new_partitions_in_a_cluster(strom_cluster):
    """On three nodes, the partitions CreatePartitions adds get the topic's
    replication factor on distinct brokers, their leaders spread over the
    nodes, every replica in sync; an acks=all write to each new partition
    reads back."""
    cluster = strom_cluster(3, {"min.insync.replicas": 2})
    name = create_topic(cluster, partitions=1, replication_factor=3)
    admin = ck_admin(cluster)
    assert ck_result(admin.create_partitions([NewPartitions(name, 7)])[name]) is None
    with kp_admin(cluster) as kp:
        topic = wait_topic_ready(kp, name, 7, replicas=3)
    parts = sorted(topic["partitions"], key=lambda p: p["partition_index"])
    for p in parts:
        assert sorted(p["replica_nodes"]) == [1, 2, 3], p
        assert p["leader_id"] == p["replica_nodes"][0], f"the preferred replica leads: {p}"
    leaders = [p["leader_id"] for p in parts[1:]]
    assert set(leaders) == {1, 2, 3}, f"the new partitions' leaders spread over the nodes: {leaders}"
    recs = [Rec(key=None, value=f"new-{i}".encode(), partition=i) for i in range(1, 7)]
    delivered = produce(KAFKA_PYTHON, cluster, name, recs, acks="all")
    assert [d.partition for d in delivered] == list(range(1, 7))
    got = consume(KAFKA_PYTHON, cluster, name, 6, partitions=range(1, 7))
    assert sorted(g.value for g in got) == sorted(r.value for r in recs)


def test_create_partitions_cannot_shrink(broker):
    name = create_topic(broker, partitions=3)
    with kp_admin(broker) as admin:
        with pytest.raises(kerr.InvalidPartitionsError):
            admin.create_partitions({name: 2})
        with pytest.raises(kerr.InvalidPartitionsError):
            admin.create_partitions({name: 3})
        with pytest.raises(kerr.UnknownTopicOrPartitionError):
            admin.create_partitions({unique_name("missing"): 4})
        wait_topic_ready(admin, name, 3)


def test_new_partitions_are_writable(broker):
    name = create_topic(broker, partitions=1)
    with kp_admin(broker) as admin:
        admin.create_partitions({name: 2})
        wait_topic_ready(admin, name, 2)
    deliveries = produce(KAFKA_PYTHON, broker, name, [Rec(b"k", b"in-new-partition", partition=1)])
    assert (deliveries[0].partition, deliveries[0].offset) == (1, 0)
    (got,) = consume(KAFKA_PYTHON, broker, name, 1, partitions=[1])
    assert got.value == b"in-new-partition"


# --------------------------------------------------------------------------
# DescribeConfigs


def test_describe_topic_configs_kafka_python(broker):
    overrides = {"retention.ms": "3600000", "cleanup.policy": "compact"}
    name = create_topic(broker, configs=overrides)
    with kp_admin(broker) as admin:
        # Default filter ('modified') returns exactly the per-topic overrides.
        modified = admin.describe_configs([ConfigResource("TOPIC", name)])["topic"][name]
        assert {k: v["value"] for k, v in modified.items()} == overrides
        for entry in modified.values():
            assert entry["config_source"] == "DYNAMIC_TOPIC_CONFIG"

        everything = admin.describe_configs([ConfigResource("TOPIC", name)], config_filter="all")["topic"][name]
    assert everything["retention.ms"]["value"] == "3600000"
    assert everything["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert everything["max.message.bytes"]["value"] == str(DEFAULT_MAX_MESSAGE_BYTES)
    assert everything["max.message.bytes"]["config_source"] == "DEFAULT_CONFIG"


def test_describe_topic_config_defaults_kafka_python(broker):
    name = create_topic(broker)
    with kp_admin(broker) as admin:
        assert admin.describe_configs([ConfigResource("TOPIC", name)])["topic"][name] == {}
        configs = admin.describe_configs([ConfigResource("TOPIC", name)], config_filter="all")["topic"][name]
    expected = {"retention.ms": str(DEFAULT_RETENTION_MS), "cleanup.policy": "delete",
                "max.message.bytes": str(DEFAULT_MAX_MESSAGE_BYTES)}
    for key, value in expected.items():
        assert configs[key]["value"] == value, key
        assert configs[key]["config_source"] == "DEFAULT_CONFIG", key
        assert configs[key]["read_only"] is False, key


def test_describe_selected_topic_configs(broker):
    name = create_topic(broker, configs={"retention.ms": "120000"})
    with kp_admin(broker) as admin:
        configs = admin.describe_configs([ConfigResource("TOPIC", name, ["retention.ms", "cleanup.policy"])],
                                         config_filter="all")["topic"][name]
    assert set(configs) == {"retention.ms", "cleanup.policy"}
    assert configs["retention.ms"]["value"] == "120000"
    assert configs["cleanup.policy"]["value"] == "delete"


def test_describe_topic_configs_confluent(broker):
    name = create_topic(broker, configs={"retention.ms": "7200000"})
    resource = CkConfigResource(ResourceType.TOPIC, name)
    admin = ck_admin(broker)
    configs = ck_result(admin.describe_configs([resource])[resource])
    retention = configs["retention.ms"]
    assert retention.value == "7200000"
    assert ConfigSource(retention.source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert not retention.is_default
    policy = configs["cleanup.policy"]
    assert policy.value == "delete"
    assert ConfigSource(policy.source) == ConfigSource.DEFAULT_CONFIG
    assert configs["max.message.bytes"].value == str(DEFAULT_MAX_MESSAGE_BYTES)


def test_describe_configs_of_missing_topic(broker):
    resource = CkConfigResource(ResourceType.TOPIC, unique_name("missing"))
    admin = ck_admin(broker)
    with pytest.raises(confluent_kafka.KafkaException) as info:
        ck_result(admin.describe_configs([resource])[resource])
    assert ck_error_code(info.value) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_broker_configs(broker):
    with kp_admin(broker) as admin:
        configs = admin.describe_configs([ConfigResource("BROKER", "1")], config_filter="all")["broker"]["1"]
    assert configs["message.max.bytes"]["value"] == str(DEFAULT_MAX_MESSAGE_BYTES)
    assert configs["num.partitions"]["value"] == "1"
    assert configs["auto.create.topics.enable"]["value"] == "true"
    assert configs["num.partitions"]["config_source"] == "DEFAULT_CONFIG"

    resource = CkConfigResource(ResourceType.BROKER, "1")
    ck = ck_admin(broker)
    ck_configs = ck_result(ck.describe_configs([resource])[resource])
    assert ck_configs["message.max.bytes"].value == str(DEFAULT_MAX_MESSAGE_BYTES)


def test_broker_config_file_is_reflected(strom_factory):
    broker = strom_factory({"num.partitions": 3, "message.max.bytes": 200000})
    with kp_admin(broker) as admin:
        configs = admin.describe_configs([ConfigResource("BROKER", "1")], config_filter="all")["broker"]["1"]
        assert configs["num.partitions"]["value"] == "3"
        assert configs["num.partitions"]["config_source"] == "STATIC_BROKER_CONFIG"
        assert configs["message.max.bytes"]["value"] == "200000"

        # Topic-level defaults derive from the broker's settings.
        name = unique_name()
        admin.create_topics([name])
        wait_topic_ready(admin, name, 3)
        topic = admin.describe_configs([ConfigResource("TOPIC", name, ["max.message.bytes"])],
                                       config_filter="all")["topic"][name]
    assert topic["max.message.bytes"]["value"] == "200000"
    assert topic["max.message.bytes"]["config_source"] == "STATIC_BROKER_CONFIG"


# --------------------------------------------------------------------------
# DescribeCluster / Metadata


def test_describe_cluster_kafka_python(broker):
    with kp_admin(broker) as admin:
        cluster = admin.describe_cluster()
    assert cluster["controller_id"] == 1
    assert cluster["cluster_id"]
    (node,) = cluster["brokers"]
    assert (node["broker_id"], node["host"], node["port"]) == (1, broker.host, broker.port)


def test_describe_cluster_confluent(broker):
    admin = ck_admin(broker)
    cluster = ck_result(admin.describe_cluster())
    (node,) = cluster.nodes
    assert (node.id, node.host, node.port) == (1, broker.host, broker.port)
    assert cluster.controller.id == 1
    assert cluster.cluster_id


def test_metadata_lists_broker_and_topics(broker):
    name = create_topic(broker, partitions=2)
    md = ck_admin(broker).list_topics(timeout=10)
    assert {b.id: (b.host, b.port) for b in md.brokers.values()} == {1: (broker.host, broker.port)}
    assert md.controller_id == 1
    assert md.cluster_id
    assert sorted(md.topics[name].partitions) == [0, 1]


def test_cluster_id_is_stable_across_restart(broker):
    with kp_admin(broker) as admin:
        before = admin.describe_cluster()["cluster_id"]
    broker.restart()
    with kp_admin(broker) as admin:
        assert admin.describe_cluster()["cluster_id"] == before


# --------------------------------------------------------------------------
# auto-creation


def test_metadata_auto_creates_topic(broker):
    """auto.create.topics.enable defaults to true; num.partitions to 1."""
    name = unique_name("auto")
    with kp_producer(broker) as producer:
        assert producer.partitions_for(name) == {0}
    with kp_admin(broker) as admin:
        wait_topic_ready(admin, name, 1)


def test_metadata_auto_creates_topic_confluent(broker):
    name = unique_name("auto")
    with ck_producer(broker) as producer:  # librdkafka producers allow auto-creation by default
        def created():
            t = producer.list_topics(topic=name, timeout=10).topics[name]
            return t.error is None and list(t.partitions) == [0]
        wait_until(created, what=f"{name} auto-created")


def test_auto_create_uses_num_partitions(strom_factory):
    broker = strom_factory({"num.partitions": 4})
    name = unique_name("auto")
    with kp_producer(broker) as producer:
        assert producer.partitions_for(name) == {0, 1, 2, 3}


def test_metadata_without_allow_auto_create_does_not_create(broker):
    """Metadata v4+ carries allow_auto_topic_creation; admin clients send false."""
    name = unique_name("noauto")
    with kp_admin(broker) as admin:
        (described,) = admin.describe_topics([name])  # allow_auto_topic_creation=False
        assert described["error_code"] == kerr.UnknownTopicOrPartitionError.errno
    assert name not in topic_names(broker)


def test_no_auto_creation_when_disabled(strom_factory):
    broker = strom_factory({"auto.create.topics.enable": False})
    name = unique_name("noauto")
    with ck_producer(broker) as producer:
        for _ in range(3):
            topic = producer.list_topics(topic=name, timeout=10).topics[name]
            assert topic.error is not None and topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    with kp_producer(broker, max_block_ms=2000) as producer:
        with pytest.raises(kerr.KafkaTimeoutError):
            producer.send(name, b"nowhere to go")
    assert name not in topic_names(broker)
    # Explicit creation still works.
    create_topic(broker, name)
