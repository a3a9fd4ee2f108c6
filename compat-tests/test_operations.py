"""The HTTP listener an operator scrapes and probes: ``/metrics`` in the
Prometheus text format, ``/health/live`` and ``/health/ready``.

Records produced and consumed through confluent-kafka must show in the
counters with exact values (messages in, the log end offset) or at least
their size (bytes in and out), the request counts and times per API, the
connection count while a client is connected, the per-partition log
gauges, and the group's members, state, committed offsets and lag; every
metric the Grafana dashboard (deploy/grafana) queries is served; the text must parse as the Prometheus exposition format (every
sample of a declared family, every value a number). After SIGTERM, while
a long poll keeps the node finishing, readiness answers 503 and liveness
200.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

import kafka_wire as kw
from helpers import CONFLUENT, Rec, ck_consumer, ck_poll_records, create_topic, produce, unique_name, wait_until

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def get(broker, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://{broker.http_address()}{path}", timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def scrape(broker) -> dict[tuple[str, frozenset], float]:
    """The samples, by (name, labels); checks the exposition format."""
    status, content_type, text = get(broker, "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4"), (status, content_type)
    declared, samples = set(), {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            name, labels, value = m.groups()
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in declared or family in declared, f"{name} has no # TYPE line"
            samples[(name, frozenset(LABEL.findall(labels or "")))] = float(value)
    return samples


DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana"


def dashboard_metrics() -> set[str]:
    """The metric names the Grafana dashboard's panels query; the file must
    be what make_dashboard.py writes."""
    sys.path.insert(0, str(DASHBOARD))
    try:
        import make_dashboard
    finally:
        sys.path.remove(str(DASHBOARD))
    board = json.loads((DASHBOARD / "strom-dashboard.json").read_text())
    assert board == make_dashboard.dashboard(), "strom-dashboard.json is stale: run deploy/grafana/make_dashboard.py"
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    names = {m for e in exprs for m in re.findall(r"\b((?:kafka|process|strom)_[a-z0-9_]+)\b", e)}
    assert len(names) >= 10, names
    return names


def value(samples, name: str, **labels) -> float | None:
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())))


def test_health_endpoints(broker):
    assert get(broker, "/health/live")[0] == 200
    assert get(broker, "/health/ready")[0] == 200
    assert get(broker, "/no/such/path")[0] == 404


def test_metrics_count_what_clients_did(broker):
    topic = create_topic(broker, unique_name("metrics"), partitions=2)
    records = [Rec(f"k{i}".encode(), b"x" * 100) for i in range(25)]
    produce(CONFLUENT, broker, topic, records)
    group = unique_name("metrics-group")
    with ck_consumer(broker, **{"group.id": group}) as consumer:
        consumer.subscribe([topic])
        got = ck_poll_records(consumer, len(records))
        assert len(got) == len(records)
        # Partition 0 committed one record in, partition 1 at its end.
        counts = {p: sum(1 for g in got if g.partition == p) for p in (0, 1)}
        assert counts[0] > 1, counts
        consumer.commit(offsets=[TopicPartition(topic, 0, 1), TopicPartition(topic, 1, counts[1])],
                        asynchronous=False)
        # While the consumer is connected.
        s = scrape(broker)
        assert value(s, "kafka_server_socketservermetrics_connection_count") >= 1
        assert value(s, "kafka_consumergroup_members", consumergroup=group) == 1
        assert value(s, "kafka_consumergroup_state", consumergroup=group, state="Stable") == 1
        for p, (offset, lag) in {0: (1, counts[0] - 1), 1: (counts[1], 0)}.items():
            where = {"consumergroup": group, "topic": topic, "partition": p}
            assert value(s, "kafka_consumergroup_current_offset", **where) == offset, p
            assert value(s, "kafka_consumergroup_lag", **where) == lag, p
        # Every metric the Grafana dashboard queries is served.
        served = {name for name, _ in s}
        missing = sorted(dashboard_metrics() - served)
        assert not missing, f"deploy/grafana/strom-dashboard.json queries metrics Strom does not serve: {missing}"
    assert value(s, "kafka_server_brokertopicmetrics_messagesin_total", topic=topic) == len(records)
    assert value(s, "kafka_server_brokertopicmetrics_bytesin_total", topic=topic) >= 25 * 100
    assert value(s, "kafka_server_brokertopicmetrics_bytesout_total", topic=topic) >= 25 * 100
    ends = [value(s, "kafka_log_log_logendoffset", topic=topic, partition=p) for p in (0, 1)]
    assert sum(ends) == len(records), ends
    for p in (0, 1):
        assert value(s, "kafka_log_log_logstartoffset", topic=topic, partition=p) == 0
        assert value(s, "kafka_log_log_numlogsegments", topic=topic, partition=p) == 1
        size = value(s, "kafka_log_log_size", topic=topic, partition=p)
        assert (size > 0) == (ends[p] > 0), (p, size, ends[p])
    for api in ("Produce", "Fetch", "Metadata", "JoinGroup"):
        count = value(s, "kafka_network_requestmetrics_requests_total", request=api)
        assert count and count >= 1, api
        assert value(s, "kafka_network_requestmetrics_totaltime_seconds_count", request=api) == count
    hosted = value(s, "kafka_server_replicamanager_partitioncount")
    assert hosted >= 2 and value(s, "kafka_server_replicamanager_leadercount") == hosted
    assert value(s, "kafka_server_replicamanager_underreplicatedpartitions") == 0
    assert value(s, "kafka_controller_kafkacontroller_offlinepartitionscount") == 0
    assert value(s, "process_resident_memory_bytes") > 0
    assert value(s, "process_open_fds") > 0
    # The consumer is gone: its connections close.
    wait_until(lambda: value(scrape(broker), "kafka_server_socketservermetrics_connection_count") == 0,
               what="the connection count back to 0")


def test_not_ready_once_shutdown_begins(broker):
    """SIGTERM while a long poll is open: the node finishes it before it
    exits, and meanwhile /health/ready answers 503 and /health/live 200."""
    topic = create_topic(broker, unique_name("shutdown"))
    with kw.connect(broker.host, broker.port) as sock:
        # A long poll at the end of an empty partition, for up to 4 s.
        sock.sendall(kw.fetch_v4_request(1, topic, 0, 0, max_wait_ms=4000, min_bytes=1))
        wait_until(lambda: value(scrape(broker), "kafka_network_requestchannel_inflightrequests") >= 1,
                   interval=0.01, what="the long poll in flight")
        os.kill(broker.pid, signal.SIGTERM)
        broker.stopped_on_purpose = True
        seen = wait_until(lambda: get(broker, "/health/ready")[0] == 503 and get(broker, "/health/live")[0],
                          what="/health/ready answering 503 after SIGTERM")
        assert seen == 200
    assert broker.proc.wait(timeout=30) == 0


def test_a_deleted_topics_series_go(broker):
    topic = create_topic(broker, unique_name("metrics-deleted"))
    produce(CONFLUENT, broker, topic, [Rec(b"k", b"v")])
    labelled = lambda s: [k for k in s if ("topic", topic) in k[1]]  # noqa: E731
    assert labelled(scrape(broker)), "the topic has series while it exists"
    host, port = broker.bootstrap.rsplit(":", 1)
    assert kw.delete_topics(host, int(port), [topic]) == {topic: 0}
    wait_until(lambda: not labelled(scrape(broker)), what=f"{topic}'s series gone after its deletion")


def test_errors_are_counted_by_api_and_code(broker):
    """Every error code of a response counts once under its API and
    Kafka's name for it, NONE included (Kafka's ErrorsPerSec)."""
    host, port = broker.bootstrap.rsplit(":", 1)
    topic = create_topic(broker, unique_name("errors"))
    missing = unique_name("no-such-topic")
    errors = lambda s, error: value(s, "kafka_network_requestmetrics_errors_total",  # noqa: E731
                                    request="DeleteTopics", error=error) or 0
    before = scrape(broker)
    assert kw.delete_topics(host, int(port), [missing, topic]) == {missing: 3, topic: 0}
    after = scrape(broker)
    assert errors(after, "UNKNOWN_TOPIC_OR_PARTITION") - errors(before, "UNKNOWN_TOPIC_OR_PARTITION") == 1
    assert errors(after, "NONE") - errors(before, "NONE") == 1


def test_the_cleaner_and_transactions_are_measured(strom_factory):
    """The cleaner's totals and last round move when it compacts a log; the
    transaction coordinator counts what it committed and aborted and keeps
    each transactional id under its transaction's state."""
    import confluent_kafka

    broker = strom_factory({"log.cleaner.backoff.ms": 100})
    topic = create_topic(broker, unique_name("cleaned"), configs={
        "cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01"})
    # Old timestamps: each round rolls a new segment (segment.ms), so the
    # earlier rounds are cleanable.
    t0 = int(time.time() * 1000) - 600_000
    for r in range(4):
        produce(CONFLUENT, broker, topic,
                [Rec(f"k{k}".encode(), f"v{r}".encode(), timestamp_ms=t0 + r * 1000) for k in range(20)])
    produce(CONFLUENT, broker, topic, [Rec(b"last", b"x", timestamp_ms=t0 + 5000)])

    def cleaned():
        s = scrape(broker)
        return value(s, "strom_log_cleaner_removed_records_total") >= 20 and s
    s = wait_until(cleaned, timeout=60, what="the cleaner removing superseded records")
    assert value(s, "strom_log_cleaner_cleanings_total") >= 1
    read, written = (value(s, f"strom_log_cleaner_{k}_bytes_total") for k in ("read", "written"))
    assert 0 < written < read, (read, written)
    assert 0 < value(s, "kafka_log_logcleaner_cleaner_recopy_percent") <= 100
    assert value(s, "kafka_log_logcleanermanager_uncleanable_partitions_count") == 0
    assert value(s, "kafka_log_logcleanermanager_time_since_last_run_ms") >= 0

    txn_topic = create_topic(broker, unique_name("txn-metrics"))
    txn_id = unique_name("txn-metrics")
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id})
    producer.init_transactions(30)
    for commit in (True, False, True):
        producer.begin_transaction()
        producer.produce(txn_topic, value=b"v")
        # Sent first: librdkafka ends a transaction that wrote nothing
        # without asking the coordinator.
        assert producer.flush(30) == 0
        producer.commit_transaction(30) if commit else producer.abort_transaction(30)
    s = scrape(broker)
    assert value(s, "strom_transactions_completed_total", result="commit") == 2
    assert value(s, "strom_transactions_completed_total", result="abort") == 1
    assert value(s, "strom_transactions", state="CompleteCommit") == 1
    producer.begin_transaction()
    producer.produce(txn_topic, value=b"open")
    producer.flush(30)
    s = scrape(broker)
    assert value(s, "strom_transactions", state="Ongoing") == 1
    assert value(s, "strom_transactions", state="CompleteCommit") is None
    producer.abort_transaction(30)


@pytest.mark.slow
def test_a_cluster_s_metrics_show_the_quorum_and_the_isr(strom_cluster):
    """Three nodes: one Raft leader that every node names, which is the
    active controller and sees each voter's lag; a follower paused past
    replica.lag.time.max.ms (but not its session: the leader, not the
    controller's fencing, takes it out) leaves the ISR (the leader counts a
    shrink and an under-replicated, under-min-ISR partition) and rejoins
    once resumed (an expansion, all back to 0)."""
    cluster = strom_cluster(3, {"replica.lag.time.max.ms": 1500, "broker.session.timeout.ms": 60000})
    topic = create_topic(cluster, unique_name("isr-metrics"), configs={"min.insync.replicas": "3"},
                         replication_factor=3)
    raft = {n.node_id: scrape(n) for n in cluster.nodes}
    leaders = {value(s, "kafka_server_raft_metrics_current_leader") for s in raft.values()}
    assert len(leaders) == 1, leaders
    controller = int(leaders.pop())
    for node_id, s in raft.items():
        is_leader = node_id == controller
        assert value(s, "kafka_server_raft_metrics_current_state", state="leader" if is_leader else "follower") == 1
        assert value(s, "kafka_controller_kafkacontroller_activecontrollercount") == int(is_leader)
        assert value(s, "kafka_controller_kafkacontroller_activebrokercount") == 3
        assert value(s, "kafka_server_raft_metrics_high_watermark") > 0
    lags = {k for (name, k) in raft[controller] if name == "strom_raft_voter_lag"}
    assert {dict(k)["voter"] for k in lags} == {"1", "2", "3"}, lags

    from kafka import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    leader = described["partitions"][0]["leader_id"]
    paused = next(n for n in (1, 2, 3) if n not in (leader, controller))
    at_leader = lambda name: value(scrape(cluster.node(leader)), name)  # noqa: E731
    shrinks = at_leader("kafka_server_replicamanager_isrshrinks_total")
    expands = at_leader("kafka_server_replicamanager_isrexpands_total")
    assert at_leader("kafka_server_replicamanager_underreplicatedpartitions") == 0
    os.kill(cluster.node(paused).pid, signal.SIGSTOP)
    try:
        def shrunk():
            s = scrape(cluster.node(leader))
            return value(s, "kafka_server_replicamanager_isrshrinks_total") > shrinks and s
        s = wait_until(shrunk, timeout=30, what=f"the leader (node {leader}) shrinking the ISR without node {paused}")
        assert value(s, "kafka_server_replicamanager_underreplicatedpartitions") >= 1
        assert value(s, "kafka_server_replicamanager_underminisrpartitioncount") >= 1
        assert value(scrape(cluster.node(controller)), "kafka_controller_kafkacontroller_fencedbrokercount") == 0
    finally:
        os.kill(cluster.node(paused).pid, signal.SIGCONT)

    def rejoined():
        s = scrape(cluster.node(leader))
        return (value(s, "kafka_server_replicamanager_isrexpands_total") > expands
                and value(s, "kafka_server_replicamanager_underreplicatedpartitions") == 0 and s)
    s = wait_until(rejoined, timeout=60, what=f"node {paused} back in the ISR")
    assert value(s, "kafka_server_replicamanager_underminisrpartitioncount") == 0
