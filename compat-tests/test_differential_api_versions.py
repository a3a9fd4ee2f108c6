"""Differential: ApiVersions from Strom and from the reference Apache Kafka.

The same raw requests (kafka_wire) go to a Strom broker and to ``kafka_ref``;
what differs must be listed in docs/compatibility.md, and what is listed
there must still differ, so the document stays the true list:

* the API keys and version ranges (section "ApiVersions ranges"),
* the features of ApiVersions v3+ (KIP-584; section "ApiVersions features"),
* the answer to an ApiVersions version the broker does not know (section
  "Other differences", row ``api-versions-unsupported-version``).

A failure names each row to add, change or remove.
"""

from __future__ import annotations

import pytest

import kafka_wire as kw
import reference_kafka as rk

# Kafka's names for its API keys (org.apache.kafka.common.protocol.ApiKeys, 4.1).
API_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 4: "LeaderAndIsr",
    5: "StopReplica", 6: "UpdateMetadata", 7: "ControlledShutdown", 8: "OffsetCommit",
    9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat",
    13: "LeaveGroup", 14: "SyncGroup", 15: "DescribeGroups", 16: "ListGroups",
    17: "SaslHandshake", 18: "ApiVersions", 19: "CreateTopics", 20: "DeleteTopics",
    21: "DeleteRecords", 22: "InitProducerId", 23: "OffsetForLeaderEpoch",
    24: "AddPartitionsToTxn", 25: "AddOffsetsToTxn", 26: "EndTxn", 27: "WriteTxnMarkers",
    28: "TxnOffsetCommit", 29: "DescribeAcls", 30: "CreateAcls", 31: "DeleteAcls",
    32: "DescribeConfigs", 33: "AlterConfigs", 34: "AlterReplicaLogDirs",
    35: "DescribeLogDirs", 36: "SaslAuthenticate", 37: "CreatePartitions",
    38: "CreateDelegationToken", 39: "RenewDelegationToken", 40: "ExpireDelegationToken",
    41: "DescribeDelegationToken", 42: "DeleteGroups", 43: "ElectLeaders",
    44: "IncrementalAlterConfigs", 45: "AlterPartitionReassignments",
    46: "ListPartitionReassignments", 47: "OffsetDelete", 48: "DescribeClientQuotas",
    49: "AlterClientQuotas", 50: "DescribeUserScramCredentials",
    51: "AlterUserScramCredentials", 52: "Vote", 53: "BeginQuorumEpoch",
    54: "EndQuorumEpoch", 55: "DescribeQuorum", 56: "AlterPartition", 57: "UpdateFeatures",
    58: "Envelope", 59: "FetchSnapshot", 60: "DescribeCluster", 61: "DescribeProducers",
    62: "BrokerRegistration", 63: "BrokerHeartbeat", 64: "UnregisterBroker",
    65: "DescribeTransactions", 66: "ListTransactions", 67: "AllocateProducerIds",
    68: "ConsumerGroupHeartbeat", 69: "ConsumerGroupDescribe", 70: "ControllerRegistration",
    71: "GetTelemetrySubscriptions", 72: "PushTelemetry", 73: "AssignReplicasToDirs",
    74: "ListConfigResources", 75: "DescribeTopicPartitions", 76: "ShareGroupHeartbeat",
    77: "ShareGroupDescribe", 78: "ShareFetch", 79: "ShareAcknowledge", 80: "AddRaftVoter",
    81: "RemoveRaftVoter", 82: "UpdateRaftVoter", 83: "InitializeShareGroupState",
    84: "ReadShareGroupState", 85: "WriteShareGroupState", 86: "DeleteShareGroupState",
    87: "ReadShareGroupStateSummary", 88: "StreamsGroupHeartbeat", 89: "StreamsGroupDescribe",
    90: "DescribeShareGroupOffsets", 91: "AlterShareGroupOffsets", 92: "DeleteShareGroupOffsets",
}

RANGES_SECTION = "ApiVersions ranges"
FEATURES_SECTION = "ApiVersions features"
OTHER_SECTION = "Other differences"
UNSUPPORTED_VERSION_ROW = "api-versions-unsupported-version"

LATEST = 4  # the newest ApiVersions version both serve


def api_name(key: int) -> str:
    return API_NAMES.get(key, f"api key {key}")


def both(broker, kafka_ref):
    return (("Strom", broker.host, broker.port), (f"Kafka {kafka_ref.version}", kafka_ref.host, kafka_ref.port))


def other_differences() -> dict[str, list[str]]:
    return rk.differences_by_id(OTHER_SECTION)


# ---------------------------------------------------------------------------


def test_api_keys_and_ranges_differ_only_as_listed(broker, kafka_ref):
    kafka = kw.api_versions(kafka_ref.host, kafka_ref.port, version=LATEST).api_keys
    strom = kw.api_versions(broker.host, broker.port, version=LATEST).api_keys
    observed = {key: (kafka.get(key), strom.get(key))
                for key in sorted(kafka.keys() | strom.keys()) if kafka.get(key) != strom.get(key)}

    header, rows = rk.doc_table(RANGES_SECTION)
    expected_header = ["API", "key", f"Kafka {kafka_ref.version}", "Strom", "reason"]
    assert header == expected_header, (
        f"docs/compatibility.md, {RANGES_SECTION}: header {header}, expected {expected_header} "
        f"(the reference Kafka is {kafka_ref.version}: check every row against it)")

    errors: list[str] = []
    listed: dict[int, list[str]] = {}
    for row in rows:
        name, key_cell, kafka_cell, strom_cell, reason = row
        try:
            key = int(key_cell)
            ranges = (rk.parse_range(kafka_cell), rk.parse_range(strom_cell))
        except ValueError as exc:
            errors.append(f"row {row}: {exc}")
            continue
        if key in listed:
            errors.append(f"api key {key} is listed twice")
        listed[key] = row
        if name != api_name(key):
            errors.append(f"api key {key} is {api_name(key)}, the row says {name!r}")
        if (problem := rk.check_reason(reason)) is not None:
            errors.append(f"{name} ({key}): {problem}")
        if key not in observed:
            errors.append(f"{name} ({key}) is listed but no longer differs (both advertise "
                          f"{rk.format_range(kafka.get(key))}): remove its row")
        elif ranges != observed[key]:
            errors.append(f"{name} ({key}): listed as Kafka {kafka_cell} / Strom {strom_cell}, now "
                          f"Kafka {rk.format_range(observed[key][0])} / Strom {rk.format_range(observed[key][1])}")
    for key, (k, s) in observed.items():
        if key not in listed:
            errors.append(f"not listed: | {api_name(key)} | {key} | {rk.format_range(k)} | "
                          f"{rk.format_range(s)} | (reason) |")
    if errors:
        pytest.fail(f"{len(errors)} mismatch(es) with docs/compatibility.md, {RANGES_SECTION}:\n"
                    + "\n".join(errors), pytrace=False)


@pytest.mark.parametrize("version", range(LATEST + 1))
def test_every_request_version_gets_the_same_table(broker, kafka_ref, version):
    """Both brokers answer each ApiVersions version with error 0, the request's
    correlation id, throttle 0 from v1, and the table they answer v4 with."""
    for who, host, port in both(broker, kafka_ref):
        latest = kw.api_versions(host, port, version=LATEST).api_keys
        resp = kw.api_versions(host, port, version=version, correlation_id=321)
        assert (resp.error_code, resp.correlation_id) == (kw.ERROR_NONE, 321), who
        assert resp.throttle_time_ms == (None if version == 0 else 0), who
        assert resp.api_keys == latest, f"{who}: the v{version} table differs from the v{LATEST} one"


def test_unsupported_version_answer(broker, kafka_ref):
    """An ApiVersions version newer than the broker knows: both answer
    UNSUPPORTED_VERSION in a v0 body that carries ApiVersions' own range (what
    clients retry with) and keep the connection; Kafka lists nothing else."""
    answers = {}
    for who, host, port in both(broker, kafka_ref):
        with kw.connect(host, port) as sock:
            sock.sendall(kw.api_versions_request(correlation_id=4242, version=99))
            resp = kw.parse_api_versions_v0(kw.recv_frame(sock))
            assert (resp.error_code, resp.correlation_id) == (kw.ERROR_UNSUPPORTED_VERSION, 4242), who
            assert resp.api_keys.get(kw.API_KEY_API_VERSIONS) == (0, LATEST), who
            assert kw.api_versions_on(sock, version=LATEST, correlation_id=4243).error_code == 0, who
        answers[who] = resp.api_keys
    kafka, strom = answers[f"Kafka {kafka_ref.version}"], answers["Strom"]
    rows = other_differences()
    if strom == kafka:
        assert UNSUPPORTED_VERSION_ROW not in rows, (
            f"both list {sorted(kafka)} now: remove row {UNSUPPORTED_VERSION_ROW} of {OTHER_SECTION}")
    else:
        assert UNSUPPORTED_VERSION_ROW in rows, (
            f"Kafka lists api keys {sorted(kafka)}, Strom {sorted(strom)}: add row "
            f"{UNSUPPORTED_VERSION_ROW} to docs/compatibility.md, {OTHER_SECTION}")
        assert rk.check_reason(rows[UNSUPPORTED_VERSION_ROW][-1]) is None, rk.check_reason(rows[UNSUPPORTED_VERSION_ROW][-1])


# ---------------------------------------------------------------------------
# Features (KIP-584): tagged fields 0-3 of the ApiVersions v3+ response.

def read_features(host: str, port: int) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """(supported, finalized): feature name -> (min, max) versions, from v4."""
    with kw.connect(host, port) as sock:
        sock.sendall(kw.api_versions_request(correlation_id=9, version=LATEST))
        r = kw.Reader(kw.recv_frame(sock))
    r.int32()  # correlation id
    assert r.int16() == kw.ERROR_NONE
    for _ in range(r.uvarint() - 1):
        r.int16(), r.int16(), r.int16()
        r.skip_tagged_fields()
    r.int32()  # throttle
    supported: dict[str, tuple[int, int]] = {}
    finalized: dict[str, tuple[int, int]] = {}
    for _ in range(r.uvarint()):
        tag, size = r.uvarint(), r.uvarint()
        field = kw.Reader(r._take(size))
        if tag in (0, 2):  # SupportedFeatures: name, min, max; FinalizedFeatures: name, max, min
            for _ in range(field.uvarint() - 1):
                name = field._take(field.uvarint() - 1).decode()
                a, b = field.int16(), field.int16()
                field.skip_tagged_fields()
                if tag == 0:
                    supported[name] = (a, b)
                else:
                    finalized[name] = (b, a)
        # tag 1 (FinalizedFeaturesEpoch) and 3 (ZkMigrationReady) are not compared
    assert r.remaining() == 0
    return supported, finalized


def test_features_differ_only_as_listed(broker, kafka_ref):
    kafka = read_features(kafka_ref.host, kafka_ref.port)
    strom = read_features(broker.host, broker.port)
    observed = {}
    for name in sorted(kafka[0].keys() | kafka[1].keys() | strom[0].keys() | strom[1].keys()):
        k = (kafka[0].get(name), kafka[1].get(name))
        s = (strom[0].get(name), strom[1].get(name))
        if k != s:
            observed[name] = (k, s)

    header, rows = rk.doc_table(FEATURES_SECTION)
    v = kafka_ref.version
    expected_header = ["feature", f"Kafka {v} supported", f"Kafka {v} finalized",
                       "Strom supported", "Strom finalized", "reason"]
    assert header == expected_header, (
        f"docs/compatibility.md, {FEATURES_SECTION}: header {header}, expected {expected_header}")
    errors: list[str] = []
    listed = set()
    for name, k_sup, k_fin, s_sup, s_fin, reason in rows:
        name = name.strip("`")
        listed.add(name)
        if (problem := rk.check_reason(reason)) is not None:
            errors.append(f"{name}: {problem}")
        cells = ((rk.parse_range(k_sup), rk.parse_range(k_fin)), (rk.parse_range(s_sup), rk.parse_range(s_fin)))
        if name not in observed:
            errors.append(f"feature {name} is listed but no longer differs: remove its row")
        elif cells != observed[name]:
            (a, b), (c, d) = observed[name]
            errors.append(f"feature {name}: now | {name} | {rk.format_range(a)} | {rk.format_range(b)} | "
                          f"{rk.format_range(c)} | {rk.format_range(d)} |")
    for name, ((a, b), (c, d)) in observed.items():
        if name not in listed:
            errors.append(f"not listed: | `{name}` | {rk.format_range(a)} | {rk.format_range(b)} | "
                          f"{rk.format_range(c)} | {rk.format_range(d)} | (reason) |")
    if errors:
        pytest.fail(f"{len(errors)} mismatch(es) with docs/compatibility.md, {FEATURES_SECTION}:\n"
                    + "\n".join(errors), pytrace=False)
