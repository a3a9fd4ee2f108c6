"""ApiVersions: the advertised ranges, and what the clients conclude from them.

How kafka-python 3.0.12 infers the broker version
(kafka/protocol/broker_version_data.py, infer_broker_version_from_api_versions):
it walks this table from the newest entry down and returns the first whose
API key is advertised with a range containing the listed version:

    (4, 3) DescribeLogDirs (35) v5      (3, 4) LeaderAndIsr (4) v7
    (4, 2) ListOffsets (2) v11          (3, 3) DescribeAcls (29) v3
    (4, 1) Produce (0) v13              (3, 2) JoinGroup (11) v9
    (4, 0) ListOffsets (2) v10          (3, 1) Fetch (1) v13
    (3, 9) Fetch (1) v17                (3, 0) ListOffsets (2) v7
    (3, 8) Produce (0) v11              (2, 8) Produce (0) v9
    (3, 7) Fetch (1) v16                ... down to (0, 10, 1) Metadata (3) v2,
    (3, 6) AddPartitionsToTxn (24) v4   else (0, 10, 0)
    (3, 5) Fetch (1) v15

So with Kafka 4.0's maxima (Produce 12, ListOffsets 10, no DescribeLogDirs)
the answer is (4, 0): ListOffsets must reach v10 but not v11, Produce must stop
at 12, and DescribeLogDirs must not be advertised with v5.

The per-request version then used is min(kafka-python's cap, broker max): with
these ranges kafka-python 3.0.12 sends ApiVersions v4, Metadata v13, Produce v9
(capped in producer/sender.py), Fetch v12 (capped in consumer/fetcher.py),
ListOffsets v10, InitProducerId v4 (capped), CreateTopics v7, DeleteTopics v6,
CreatePartitions v3, DescribeConfigs v4 and DescribeCluster v2.
"""

from __future__ import annotations

import pytest
from kafka.net.compat import KafkaNetClient

import kafka_wire as kw
from helpers import kp_admin

# Kafka 4.0's ranges for the APIs Strom implements: api_key -> (min, max).
EXPECTED_RANGES = {
    0: (0, 12),   # Produce. min 0 although v0-2 are gone in 4.0: librdkafka <= 2.11 (kcat's
                  # 2.0.2 included) turns gzip/snappy/lz4 off unless Produce v0 is advertised.
    1: (4, 17),   # Fetch
    2: (1, 10),   # ListOffsets
    3: (0, 13),   # Metadata
    18: (0, 4),   # ApiVersions
    19: (2, 7),   # CreateTopics
    20: (1, 6),   # DeleteTopics
    22: (0, 5),   # InitProducerId
    32: (1, 4),   # DescribeConfigs
    37: (0, 3),   # CreatePartitions
    60: (0, 2),   # DescribeCluster
}

API_KEY_FIND_COORDINATOR = 10


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
def test_advertised_ranges(broker, version):
    resp = kw.api_versions(broker.host, broker.port, version=version, correlation_id=77)
    assert resp.error_code == kw.ERROR_NONE
    assert resp.correlation_id == 77
    for key, (lo, hi) in resp.api_keys.items():
        assert 0 <= lo <= hi, f"api key {key}: bad range {lo}..{hi}"
    assert {k: resp.api_keys.get(k) for k in EXPECTED_RANGES} == EXPECTED_RANGES
    if version >= 1:
        assert resp.throttle_time_ms == 0


def test_find_coordinator_is_advertised(broker):
    """librdkafka derives its LZ4 feature flag from FindCoordinator v0 being
    advertised (rdkafka_feature.c); without it confluent-kafka and kcat send
    lz4-configured batches uncompressed."""
    ranges = kw.api_versions(broker.host, broker.port).api_keys
    assert API_KEY_FIND_COORDINATOR in ranges
    assert ranges[API_KEY_FIND_COORDINATOR][0] == 0


def test_several_requests_on_one_connection(broker):
    with kw.connect(broker.host, broker.port) as sock:
        for correlation_id, version in enumerate([0, 3, 4, 1, 0, 2], start=1):
            assert kw.api_versions_on(sock, version, correlation_id).error_code == kw.ERROR_NONE


def test_pipelined_requests_answered_in_order(broker):
    with kw.connect(broker.host, broker.port) as sock:
        sock.sendall(b"".join(kw.api_versions_request(cid, version=cid % 5) for cid in range(1, 11)))
        for cid in range(1, 11):
            payload = kw.recv_frame(sock)
            assert int.from_bytes(payload[:4], "big", signed=True) == cid


def test_null_client_id(broker):
    with kw.connect(broker.host, broker.port) as sock:
        sock.sendall(kw.frame(kw.request_header_v1(kw.API_KEY_API_VERSIONS, 0, 5, client_id=None)))
        assert kw.parse_api_versions_v0(kw.recv_frame(sock)).error_code == kw.ERROR_NONE


def test_kafka_python_infers_kafka_4_0(broker):
    client = KafkaNetClient(bootstrap_servers=broker.bootstrap)
    try:
        assert client.check_version() == (4, 0)
        assert client.check_version(node_id=1) == (4, 0)
    finally:
        client.close()

    with kp_admin(broker) as admin:
        assert admin.get_broker_version_data(1).broker_version == (4, 0)
        seen = {int(key): rng for key, rng in admin.api_versions().items()}
    assert {k: seen.get(k) for k in EXPECTED_RANGES} == EXPECTED_RANGES
