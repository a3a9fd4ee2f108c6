"""Partition reassignment on three nodes, driven by Kafka's own
kafka-reassign-partitions tool (ReassignPartitionsCommand from the reference
Kafka's jars, which speaks AlterPartitionReassignments and
ListPartitionReassignments through the Java admin client): each partition
of a replication-factor-2 topic moves off its leader onto the node that did
not hold it. The moved partitions keep every record, take acks=all writes,
and end with exactly the target replicas, all in sync."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import reference_kafka as rk
from helpers import KAFKA_PYTHON, Rec, consume, create_topic, kp_admin, produce, wait_topic_ready, wait_until

TOOL = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def reassign(cluster, *args: str) -> rk.ToolResult:
    libs = os.environ.get(rk.ENV_LIBS)
    if not libs:
        pytest.fail(f"${rk.ENV_LIBS} is not set: run scripts/test, which fetches the reference Kafka", pytrace=False)
    return rk.run_kafka_tool(Path(libs), TOOL, ["--bootstrap-server", cluster.bootstrap, *args], timeout=90,
                             env={"JAVA_TOOL_OPTIONS": JVM_OPTIONS})


def test_kafka_reassign_partitions_moves_partitions_without_losing_a_record(strom_cluster, tmp_path):
    cluster = strom_cluster(3, {"min.insync.replicas": 1})
    partitions = 3
    topic = create_topic(cluster, partitions=partitions, replication_factor=2)
    before = [Rec(key=None, value=f"before-{p}-{i}".encode(), partition=p)
              for p in range(partitions) for i in range(50)]
    produce(KAFKA_PYTHON, cluster, topic, before, acks="all")
    with kp_admin(cluster) as admin:
        (desc,) = admin.describe_topics([topic])
    current = {p["partition_index"]: p["replica_nodes"] for p in desc["partitions"]}
    # Off the leader (the first replica), onto the node without a replica.
    target = {p: [next(n for n in (1, 2, 3) if n not in rs), rs[1]] for p, rs in current.items()}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": p, "replicas": rs} for p, rs in target.items()]}))

    started = reassign(cluster, "--reassignment-json-file", str(plan), "--execute").check()
    assert "Successfully started partition reassignment" in started.stdout, started.stdout

    def completed():
        out = reassign(cluster, "--reassignment-json-file", str(plan), "--verify").check().stdout
        return all(f"Reassignment of partition {topic}-{p} is completed" in out for p in target) and out
    wait_until(completed, timeout=120, interval=1.0, what="every reassignment completed")
    listed = reassign(cluster, "--list").check().stdout
    assert "No partition reassignments found" in listed, listed

    with kp_admin(cluster) as admin:
        desc = wait_topic_ready(admin, topic, partitions, replicas=2)
    for p in desc["partitions"]:
        want = target[p["partition_index"]]
        assert p["replica_nodes"] == want, p
        assert sorted(p["isr_nodes"]) == sorted(want), p
        assert p["leader_id"] in want, p
    after = [Rec(key=None, value=f"after-{p}".encode(), partition=p) for p in range(partitions)]
    produce(KAFKA_PYTHON, cluster, topic, after, acks="all")
    got = consume(KAFKA_PYTHON, cluster, topic, len(before) + len(after), partitions=range(partitions))
    assert sorted(g.value for g in got) == sorted(r.value for r in before + after)
