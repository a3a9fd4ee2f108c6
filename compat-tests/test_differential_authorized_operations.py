"""Authorized operations (KIP-430) against the reference Kafka: with no
authorizer, both brokers report every operation a resource type has, for a
topic (Metadata), the cluster (DescribeCluster) and a group
(DescribeGroups), when the client asks; confluent-kafka's admin client
decodes the bit fields. kafka-python 2.3 crashed on Strom's former
"not provided" (INT32_MIN) answer."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def operations(bootstrap: str) -> dict[str, list[str]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic, group = f"ops-{uuid.uuid4().hex[:8]}", f"ops-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    # A group with a committed offset exists (Empty) without a rebalance.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        c.close()
    t = admin.describe_topics(TopicCollection([topic]), include_authorized_operations=True)[topic].result(30)
    cl = admin.describe_cluster(include_authorized_operations=True).result(30)
    g = admin.describe_consumer_groups([group], include_authorized_operations=True)[group].result(30)
    return {
        "topic": sorted(o.name for o in t.authorized_operations),
        "cluster": sorted(o.name for o in cl.authorized_operations),
        "group": sorted(o.name for o in g.authorized_operations),
    }


def test_authorized_operations_match_kafka(broker, kafka_ref):
    kafka = operations(kafka_ref.bootstrap)
    assert all(kafka.values()), kafka
    assert operations(broker.bootstrap) == kafka
