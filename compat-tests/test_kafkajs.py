"""kafkajs (npm, the version pinned in compat-tests/kafkajs/package-lock.json)
against Strom, and against the reference Kafka with the same assertions.

The scenarios are Node.js programs in compat-tests/kafkajs (plain JS, one
scenario each): ``compat-tests/kafkajs/install`` runs ``npm ci`` once into
``${STROM_CACHE:-~/.cache/strom}/kafkajs-<hash of the lock>`` and prints that
directory, which scripts/test hands over as ``$STROM_KAFKAJS_DIR``. Each
program drives one scenario against ``--bootstrap``, waits for conditions
with deadlines (never a fixed sleep), and prints one JSON line of what it
observed; the assertions are here. A program that fails prints
``{"fatal": ...}`` and exits 1; its stderr (kafkajs' WARN/ERROR log) is in
the failure message, the broker's log tail in the report.

Scenarios: the producer (keys, headers, timestamps, gzip, idempotent) read
back exactly; a consumer group of two with rebalances and commits; the admin
client (compared field by field with the reference Kafka); AlterConfigs,
DeleteRecords and DescribeAcls through the admin client, asserted as Kafka
behaves; transactions (commit/abort visibility, the LSO, read-process-write
with sendOffsets); auto-creation, acks=0 and seek.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
from pathlib import Path

import pytest

import reference_kafka as rk
from helpers import run_json_program, unique_name

KAFKAJS_ENV = "STROM_KAFKAJS_DIR"
SCRIPTS = Path(__file__).resolve().parent / "kafkajs"
PROGRAM_DEADLINE_MS = 50_000   # each program's own deadline (it then prints its trace)
PROGRAM_TIMEOUT = 58.0         # the subprocess' hard limit, below pytest.ini's 120 s

# Short group timings keep the group scenarios quick on Strom; the reference
# Kafka keeps its defaults (3 s initial rebalance delay).
STROM_CONFIG = {"group.initial.rebalance.delay.ms": 200}


def pinned_version() -> str:
    return json.loads((SCRIPTS / "package.json").read_text())["dependencies"]["kafkajs"]


class KafkaJs:
    """The installed kafkajs: ``run(scenario, bootstrap, **args)`` -> the parsed JSON line."""

    def __init__(self, root: Path, node: str):
        self.root = root
        self.node = node

    def run(self, scenario: str, bootstrap: str, *, timeout: float = PROGRAM_TIMEOUT, **args) -> dict:
        cmd = [self.node, str(SCRIPTS / f"{scenario}.js"), "--bootstrap", bootstrap,
               "--deadline", str(PROGRAM_DEADLINE_MS)]
        for key, value in args.items():
            cmd += [f"--{key}", str(value)]
        env = {**os.environ, "NODE_PATH": str(self.root / "node_modules"), "KAFKAJS_NO_PARTITIONER_WARNING": "1"}
        result, _ = run_json_program(f"{scenario} {args} against {bootstrap}", cmd, timeout, env=env, cwd=SCRIPTS)
        return result


@pytest.fixture(scope="session")
def kafkajs() -> KafkaJs:
    root = os.environ.get(KAFKAJS_ENV)
    if not root:
        pytest.fail(f"${KAFKAJS_ENV} is not set: run scripts/test, which installs kafkajs with "
                    f"compat-tests/kafkajs/install (npm ci into ${{STROM_CACHE:-$HOME/.cache/strom}}/kafkajs-HASH) "
                    f"and sets it, or by hand: export {KAFKAJS_ENV}=\"$(compat-tests/kafkajs/install)\"",
                    pytrace=False)
    node = shutil.which("node")
    if not node:
        pytest.fail("no `node` on PATH: the kafkajs tests need Node.js 14+", pytrace=False)
    manifest = Path(root) / "node_modules" / "kafkajs" / "package.json"
    try:
        installed = json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError) as exc:
        pytest.fail(f"${KAFKAJS_ENV}={root} holds no kafkajs ({manifest}: {exc}); rerun "
                    f"compat-tests/kafkajs/install", pytrace=False)
    if installed != pinned_version():
        pytest.fail(f"${KAFKAJS_ENV}={root} holds kafkajs {installed}, compat-tests/kafkajs/package.json pins "
                    f"{pinned_version()}: rerun compat-tests/kafkajs/install", pytrace=False)
    return KafkaJs(Path(root), node)


@pytest.fixture(params=["strom", "kafka"])
def target(request, strom_factory):
    """Strom, or the reference Kafka: the same program and assertions on both."""
    if request.param == "strom":
        return strom_factory(STROM_CONFIG)
    kafka = request.getfixturevalue("kafka_ref")
    request.node.funcargs["kafka_ref"] = kafka  # so a failure report carries Kafka's log tail
    return kafka


def run_both(kafkajs: KafkaJs, strom, kafka, scenario: str, **args) -> tuple[dict, dict]:
    """The scenario against Strom and the reference Kafka at once (own names each)."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        on_strom = pool.submit(kafkajs.run, scenario, strom.bootstrap, prefix=unique_name("kjs"), **args)
        on_kafka = pool.submit(kafkajs.run, scenario, kafka.bootstrap, prefix=unique_name("kjs"), **args)
        return on_strom.result(), on_kafka.result()


def unsupported(outcome: dict) -> bool:
    """kafkajs refused the call because the broker's ApiVersions lacks the API."""
    e = outcome.get("error")
    while e is not None:
        if e.get("name") == "KafkaJSServerDoesNotSupportApiKey":
            return True
        e = e.get("cause")
    return False


def error_type(outcome: dict, api: str | None = None) -> str | None:
    """The protocol error's type of a failed call (looking through kafkajs' wrappers)."""
    if api and unsupported(outcome):
        raise AssertionError(f"the broker does not advertise {api} in ApiVersions (kafkajs: "
                             f"KafkaJSServerDoesNotSupportApiKey)")
    e = outcome.get("error")
    while e is not None:
        if "type" in e:
            return e["type"]
        e = e.get("cause")
    return None


def ok(outcome: dict, what: str, api: str | None = None):
    if api and unsupported(outcome):
        raise AssertionError(f"{what}: the broker does not advertise {api} in ApiVersions (kafkajs: "
                             f"KafkaJSServerDoesNotSupportApiKey)")
    assert "error" not in outcome, f"{what} failed: {json.dumps(outcome['error'])}"
    return outcome.get("ok")


def normalized(value, prefix: str):
    """For comparing Strom's answers with Kafka's: no durations, the run's
    topic/group prefix replaced, member ids and ports masked, lists of objects
    sorted (the brokers may answer partitions/groups in any order)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("ms", "seconds", "_stderr"):
                continue
            if k in ("memberId", "clusterId", "port"):
                v = "*"
            out[k.replace(prefix, "P")] = normalized(v, prefix)
        return out
    if isinstance(value, list):
        items = [normalized(v, prefix) for v in value]
        if items and all(isinstance(v, dict) for v in items):
            items.sort(key=lambda v: json.dumps(v, sort_keys=True))
        return items
    if isinstance(value, str):
        return value.replace(prefix, "P")
    return value


# ---------------------------------------------------------------------------
# 1. the producer


def test_producer_round_trip(kafkajs, target):
    """Keyed records (null keys, null and empty values), headers (several, a
    repeated key, an empty value, raw bytes), explicit CreateTime timestamps,
    two partitions, uncompressed and gzip, from an idempotent producer
    (idempotent, maxInFlightRequests 1) and a plain acks=1 one: the produce
    answers' base offsets are dense and a group consumer reads back exactly
    those records at exactly those offsets."""
    r = kafkajs.run("produce", target.bootstrap, prefix=unique_name("kjs"))
    assert r["created"] is True
    # base offsets of the answers: 6 records per send and partition, in order
    next_offset = {0: 0, 1: 0}
    for send in r["sends"]:
        for answer in send["answer"]:
            assert answer["errorCode"] == 0, send
            p = answer["partition"]
            assert int(answer["baseOffset"]) == next_offset[p], f"base offset of {send['tag']} on partition {p}"
            next_offset[p] += send["count"] if send["partition"] >= 0 else 2
    assert next_offset == {0: 20, 1: 20}
    expected = []
    for p in (0, 1):
        for offset, s in enumerate(x for x in r["sent"] if x["p"] == p):
            expected.append({"p": p, "o": str(offset), "k": s["k"], "v": s["v"], "h": s["h"], "ts": s["ts"], "tag": s["tag"]})
    got = sorted(r["received"], key=lambda x: (x["p"], int(x["o"])))
    assert [{k: x[k] for k in ("p", "o", "k", "v", "h", "ts")} for x in got] == \
        [{k: x[k] for k in ("p", "o", "k", "v", "h", "ts")} for x in expected]
    assert all(x["timestampType"] == 0 and not x["inTransaction"] for x in got)
    # the idempotent producer's batches carry its producer id and dense
    # sequences per partition (6 + 6 + 2 records); the plain producer's none
    idem_pids = {x["producerId"] for x, e in zip(got, expected) if e["tag"] != "plain-gzip"}
    assert len(idem_pids) == 1 and idem_pids != {"-1"}, idem_pids
    assert {x["producerId"] for x, e in zip(got, expected) if e["tag"] == "plain-gzip"} == {"-1"}
    for p in (0, 1):
        seqs = sorted({x["firstSequence"] for x, e in zip(got, expected) if x["p"] == p and e["tag"] != "plain-gzip"})
        assert seqs == [0, 6, 12], f"first sequences of the idempotent batches on partition {p}"
    assert [(o["partition"], o["high"], o["low"]) for o in sorted(r["offsets"], key=lambda o: o["partition"])] == \
        [(0, "20", "0"), (1, "20", "0")]


# ---------------------------------------------------------------------------
# 2. a consumer group of two with rebalances


def test_group_of_two_rebalance(kafkajs, target):
    """A alone gets all four partitions; B joins while records are produced:
    the assignment is split, disjoint and complete (2 + 2, round robin); every
    record is consumed at least once, B only from its partitions; B leaves and
    A takes all four again; after both stopped the committed offsets are the
    end offsets and the group is Empty."""
    r = kafkajs.run("group", target.bootstrap, prefix=unique_name("kjs"))
    members = r["members"]
    assert not members["A"]["crashed"] and not members["B"]["crashed"], members
    assert r["phase1"]["a"] == [0, 1, 2, 3]
    a, b = r["split"]["a"], r["split"]["b"]
    assert a and b and not set(a) & set(b) and sorted(a + b) == [0, 1, 2, 3], r["split"]
    assert len(a) == len(b) == 2, "RoundRobinAssigner splits four partitions two and two"
    assert r["duringBatches"] >= 3
    d = r["description"]
    assert (d["state"], d["protocolType"], d["protocol"], d["errorCode"]) == ("Stable", "consumer", "RoundRobinAssigner", 0)
    assert sorted(sorted(m["assignment"]) for m in d["members"]) == sorted([a, b])
    assert members["B"]["assignments"] and all(x["partitions"] == b for x in members["B"]["assignments"])
    assert all(c["p"] in b for c in members["B"]["consumed"]), "B consumed a partition it was not assigned"
    assert members["A"]["assignments"][-1]["partitions"] == [0, 1, 2, 3], "A did not take all partitions after B left"
    # at least once: every produced value, and every offset below the end
    consumed = members["A"]["consumed"] + members["B"]["consumed"]
    assert set(r["produced"]) <= {c["v"] for c in consumed}
    by_offset = {}
    for c in consumed:
        assert by_offset.setdefault((c["p"], c["o"]), c["v"]) == c["v"], f"two values at {c['p']}/{c['o']}"
    end = {o["partition"]: int(o["high"]) for o in r["endOffsets"]}
    assert sum(end.values()) == len(r["produced"])
    for p, high in end.items():
        assert {o for (q, o) in by_offset if q == p} == set(range(high)), f"offsets consumed on partition {p}"
    committed = {p["partition"]: int(p["offset"]) for t in r["committed"] for p in t["partitions"]}
    assert committed == end, "committed offsets after both members stopped"
    assert (r["stateAfterStop"], r["membersAfterStop"]) == ("Empty", 0)


# ---------------------------------------------------------------------------
# 3. the admin client


def test_admin_topics(kafkajs, strom_factory, kafka_ref):
    """createTopics (a duplicate: TOPIC_ALREADY_EXISTS, a bad config:
    INVALID_CONFIG, replication factor 3: INVALID_REPLICATION_FACTOR, a bad
    name: INVALID_TOPIC_EXCEPTION, validateOnly), listTopics,
    createPartitions (validateOnly changes nothing; a shrink:
    INVALID_PARTITIONS; an unknown topic), fetchTopicMetadata,
    fetchTopicOffsets, fetchTopicOffsetsByTimestamp, describeCluster,
    describeConfigs (topic, broker, unknown topic), deleteTopics (an unknown
    topic: UNKNOWN_TOPIC_OR_PARTITION): the expected answers on Strom, and the
    same answers as the reference Kafka's, field by field."""
    strom = strom_factory(STROM_CONFIG)
    s, k = run_both(kafkajs, strom, kafka_ref, "admin", part="topics")
    for name, r, broker in (("strom", s, strom), ("kafka", k, kafka_ref)):
        where = f"on {name}"
        assert ok(r["createTopics"], "createTopics") is True, where
        assert r["createDuplicate"] == {"ok": False, "ms": r["createDuplicate"]["ms"]}, \
            f"kafkajs answers false for TOPIC_ALREADY_EXISTS {where}: {r['createDuplicate']}"
        assert [e["type"] for e in r["createDuplicateMixed"]["error"]["errors"]] == \
            ["TOPIC_ALREADY_EXISTS", "INVALID_CONFIG"], where
        assert [e["type"] for e in r["createInvalid"]["error"]["errors"]] == ["INVALID_CONFIG"], where
        assert ok(r["createValidateOnly"], "createTopics validateOnly") is True, where
        assert [e["type"] for e in r["createReplication3"]["error"]["errors"]] == ["INVALID_REPLICATION_FACTOR"], where
        assert [e["type"] for e in r["createBadName"]["error"]["errors"]] == ["INVALID_TOPIC_EXCEPTION"], where
        assert "error" not in r["createPartitionsValidateOnly"], where
        listed = ok(r["listTopics"], "listTopics")
        assert len(listed) == 2 and not any(t.endswith(("-vo", "-bad")) for t in listed), (where, listed)
        assert error_type(r["createPartitionsShrink"]) == "INVALID_PARTITIONS", where
        assert error_type(r["createPartitionsUnknown"]) == "UNKNOWN_TOPIC_OR_PARTITION", where
        md = ok(r["fetchTopicMetadata"], "fetchTopicMetadata")
        assert [p["partitionId"] for p in md[0]["partitions"]] == [0, 1, 2], where
        assert all(p["leader"] == 1 and p["replicas"] == [1] and p["isr"] == [1] and p["partitionErrorCode"] == 0
                   for p in md[0]["partitions"]), where
        assert error_type(r["fetchTopicMetadataUnknown"]) == "UNKNOWN_TOPIC_OR_PARTITION", where
        assert [(o["partition"], o["low"], o["high"]) for o in ok(r["fetchTopicOffsets"], "fetchTopicOffsets")] == \
            [(0, "0", "5"), (1, "0", "5"), (2, "0", "5")], where
        # timestamps BASE + 0, 1000, ..., 4000 in each partition
        for case, offset in (("before", "0"), ("exact2", "2"), ("between", "3"), ("after", "5")):
            assert [o["offset"] for o in ok(r["byTimestamp"][case], case)] == [offset] * 3, (where, case)
        assert [o["offset"] for o in ok(r["byTimestampNone"], "byTimestamp()")] == ["5"] * 3, where
        cluster = ok(r["describeCluster"], "describeCluster")
        assert cluster["brokers"] == [{"nodeId": 1, "host": "127.0.0.1", "port": broker.port}], where
        assert cluster["controller"] == 1 and cluster["clusterId"], where
        configs = ok(r["describeConfigs"], "describeConfigs")
        topic, compact = sorted(configs, key=len)
        assert configs[topic]["entries"]["cleanup.policy"] == \
            {"value": "delete", "readOnly": False, "isDefault": True, "configSource": 5, "isSensitive": False}, where
        assert configs[compact]["entries"]["cleanup.policy"]["value"] == "compact", where
        assert configs[compact]["entries"]["retention.ms"] == \
            {"value": "3600000", "readOnly": False, "isDefault": False, "configSource": 1, "isSensitive": False}, where
        assert error_type(r["describeConfigsUnknown"]) == "UNKNOWN_TOPIC_OR_PARTITION", where
        assert "error" not in r["deleteTopics"], where
        assert ok(r["listTopicsAfterDelete"], "listTopics after deleteTopics") == {"left": []}, where
        assert error_type(r["deleteTopicsUnknown"]) == "UNKNOWN_TOPIC_OR_PARTITION", where

    # The topic's full config key list: Strom lists Kafka's, less the keys
    # docs/compatibility.md names (row describe-configs-topic-keys).
    known = rk.differences_by_id("Found by the Java client").get("describe-configs-topic-keys")
    missing = set(re.findall(r"`([^`]+)`", known[2])) if known else set()
    s_names = set(ok(s["describeConfigsAll"], "describeConfigs (all)")["names"])
    k_names = set(ok(k["describeConfigsAll"], "describeConfigs (all)")["names"])
    assert s_names == k_names - missing, (f"Strom lacks {sorted(k_names - s_names - missing)}, "
                                          f"has beyond Kafka {sorted(s_names - k_names)}")
    s_cmp, k_cmp = dict(s), dict(k)
    for r in (s_cmp, k_cmp):
        r.pop("describeConfigsAll")
    s_prefix = sorted(ok(s["listTopics"], "listTopics"), key=len)[0][: -len("-admin")]
    k_prefix = sorted(ok(k["listTopics"], "listTopics"), key=len)[0][: -len("-admin")]
    assert normalized(s_cmp, s_prefix) == normalized(k_cmp, k_prefix)


def test_admin_groups(kafkajs, strom_factory, kafka_ref):
    """describeGroups of a running group (Stable) and after it stopped
    (Empty; an unknown group: Dead), setOffsets on a running group refused,
    deleteGroups of a non-empty group (NON_EMPTY_GROUP), listGroups,
    fetchOffsets (a topic, all topics, an unknown group: -1), setOffsets,
    resetOffsets earliest/latest, deleteGroups (an unknown group:
    GROUP_ID_NOT_FOUND): expected answers, and the same as Kafka's."""
    strom = strom_factory(STROM_CONFIG)
    s, k = run_both(kafkajs, strom, kafka_ref, "admin", part="groups")

    def offsets(outcome, what):
        return [int(p["offset"]) for t in ok(outcome, what) for p in sorted(t["partitions"], key=lambda p: p["partition"])]

    prefixes = []
    for name, r in (("strom", s), ("kafka", k)):
        where = f"on {name}"
        stable = ok(r["describeGroupsStable"], "describeGroups (running)")
        assert len(stable) == 1 and len(stable[0]["members"]) == 1, where
        g = stable[0]
        prefixes.append(g["groupId"][: -len("-grp-g")])
        assert (g["state"], g["protocolType"], g["protocol"], g["errorCode"]) == ("Stable", "consumer", "RoundRobinAssigner", 0), where
        m = g["members"][0]
        assert m["clientId"] == "strom-kafkajs-test" and m["hasMetadata"] and m["hasAssignment"], where
        assert "must have no running instances" in r["setOffsetsWhileRunning"]["error"]["message"], where
        assert [x["error"]["type"] for x in r["deleteGroupsWhileRunning"]["error"]["groups"]] == ["NON_EMPTY_GROUP"], where
        assert ok(r["listGroups"], "listGroups") == [{"groupId": g["groupId"], "protocolType": "consumer"}], where
        described = sorted(ok(r["describeGroups"], "describeGroups"), key=lambda x: x["groupId"])
        assert [(x["state"], x["errorCode"], len(x["members"])) for x in described] == [("Dead", 0, 0), ("Empty", 0, 0)], where
        assert offsets(r["fetchOffsets"], "fetchOffsets") == [5, 5, 5], where
        assert offsets(r["fetchOffsetsAll"], "fetchOffsets (all topics)") == [5, 5, 5], where
        assert offsets(r["fetchOffsetsUnknownGroup"], "fetchOffsets (unknown group)") == [-1, -1, -1], where
        assert "error" not in r["setOffsets"], where
        assert offsets(r["fetchOffsetsAfterSet"], "fetchOffsets after setOffsets") == [1, 5, 3], where
        assert "error" not in r["resetOffsetsEarliest"], where
        assert offsets(r["fetchOffsetsAfterResetEarliest"], "fetchOffsets after resetOffsets") == [-2, -2, -2], where
        assert "error" not in r["resetOffsetsLatest"], where
        assert offsets(r["fetchOffsetsAfterResetLatest"], "fetchOffsets after resetOffsets") == [-1, -1, -1], where
        assert ok(r["deleteGroups"], "deleteGroups") == [{"groupId": g["groupId"], "errorCode": 0}], where
        assert [x["error"]["type"] for x in r["deleteGroupsUnknown"]["error"]["groups"]] == ["GROUP_ID_NOT_FOUND"], where
        assert ok(r["listGroupsAfterDelete"], "listGroups after deleteGroups") == [], where
    assert normalized(s, prefixes[0]) == normalized(k, prefixes[1])


# AlterConfigs, DeleteRecords and DescribeAcls through kafkajs' admin client,
# asserted as Kafka behaves (the kafka case checks the assertions).


def test_admin_alter_configs(kafkajs, target):
    """alterConfigs (AlterConfigs v0): validateOnly changes nothing; a real
    one replaces the topic's whole set (the key not named returns to its
    default); an invalid value: INVALID_CONFIG and nothing changed; an unknown
    topic: UNKNOWN_TOPIC_OR_PARTITION."""
    r = kafkajs.run("admin", target.bootstrap, prefix=unique_name("kjs"), part="alter-configs")
    assert r["before"]["cleanup.policy"]["value"] == "compact"
    for case in ("validateOnly", "alter"):
        answer = ok(r[case], f"alterConfigs ({case})", "AlterConfigs")["resources"]
        assert len(answer) == 1 and answer[0]["resourceName"].endswith("-alter"), answer
        # error_message is nullable: Kafka answers null on success
        assert {k: v for k, v in answer[0].items() if k != "resourceName"} == \
            {"errorCode": 0, "errorMessage": None, "resourceType": 2}, f"alterConfigs ({case})"
    assert r["afterValidateOnly"] == r["before"]
    after = ok(r["after"], "describeConfigs after alterConfigs")
    assert after["retention.ms"] == {"value": "86400000", "readOnly": False, "isDefault": False, "configSource": 1, "isSensitive": False}
    assert after["max.message.bytes"] == {"value": "200000", "readOnly": False, "isDefault": False, "configSource": 1, "isSensitive": False}
    assert after["cleanup.policy"] == {"value": "delete", "readOnly": False, "isDefault": True, "configSource": 5, "isSensitive": False}
    assert error_type(r["alterInvalid"]) == "INVALID_CONFIG", r["alterInvalid"]
    assert error_type(r["alterUnknownTopic"]) == "UNKNOWN_TOPIC_OR_PARTITION", r["alterUnknownTopic"]
    assert r["afterInvalid"] == after


def test_admin_delete_records(kafkajs, target):
    """deleteTopicRecords (DeleteRecords): partition 0 up to offset 4, and
    partition 1 up to its high watermark (-1), move the log start offsets; an
    offset beyond the end: OFFSET_OUT_OF_RANGE; a consumer from the beginning
    then starts at the new log start offset."""
    r = kafkajs.run("admin", target.bootstrap, prefix=unique_name("kjs"), part="delete-records")
    assert [(o["low"], o["high"]) for o in r["before"]] == [("0", "10"), ("0", "10")]
    ok(r["delete"], "deleteTopicRecords", "DeleteRecords")
    assert [(o["low"], o["high"]) for o in r["after"]] == [("4", "10"), ("10", "10")]
    errors = r["deleteBeyondEnd"]["error"]["cause"]["partitions"]
    assert [(e["partition"], e["error"]["type"]) for e in errors] == [(0, "OFFSET_OUT_OF_RANGE")]
    assert r["afterBeyondEnd"] == r["after"]
    assert r["consumed"] == [{"p": 0, "o": o} for o in range(4, 10)]


def test_admin_describe_acls(kafkajs, target):
    """describeAcls (DescribeAcls) without an authorizer: SECURITY_DISABLED."""
    r = kafkajs.run("admin", target.bootstrap, prefix=unique_name("kjs"), part="describe-acls")
    assert error_type(r["describeAcls"], "DescribeAcls") == "SECURITY_DISABLED", r["describeAcls"]
    assert r["describeAcls"]["error"]["code"] == 54


# ---------------------------------------------------------------------------
# 4. transactions


def test_transactions(kafkajs, target):
    """Commit/abort visibility under both isolation levels, the LSO held by
    an open transaction (in ListOffsets and for a read_committed consumer),
    and consume-transform-produce with sendOffsets: an aborted transaction
    commits no offset, the committed ones are the input's end offsets, and the
    output holds every transformed record once."""
    r = kafkajs.run("transactions", target.bootstrap, prefix=unique_name("kjs"))
    # partition 0: c1 0-2, marker 3, ab 4-5, marker 6, c2 7-8, marker 9,
    # open 10-11 (T2), c3 12, marker 13 (T1), marker 14 (T2);
    # partition 1: c1 0-1, marker 2, ab 3-4, marker 5, c2 6, marker 7, c3 8, marker 9
    highs = lambda offs: [int(o["high"]) for o in offs]  # noqa: E731
    assert highs(r["offsetsBeforeOpen"]) == [10, 8]
    assert highs(r["offsetsWhileOpen"]) == [10, 10], "READ_COMMITTED ListOffsets while T2 is open: the LSO"
    assert highs(r["offsetsAfter"]) == [15, 10]

    def per_partition(records):
        return {p: [(x["o"], x["v"]) for x in records if x["p"] == p] for p in (0, 1)}

    rc = per_partition(r["seen"]["rc"])
    assert rc == {
        0: [(0, "c1-0-0"), (1, "c1-0-1"), (2, "c1-0-2"), (7, "c2-0-0"), (8, "c2-0-1"),
            (10, "open-0-0"), (11, "open-0-1"), (12, "c3-0-0")],
        1: [(0, "c1-1-0"), (1, "c1-1-1"), (6, "c2-1-0"), (8, "c3-1-0")],
    }
    assert sorted(r["rcWhileOpen"]) == sorted(["c1-0-0", "c1-0-1", "c1-0-2", "c2-0-0", "c2-0-1",
                                               "c1-1-0", "c1-1-1", "c2-1-0", "c3-1-0"]), \
        "read_committed while T2 was open: held at the LSO on partition 0"
    ru = per_partition(r["seen"]["ru"])
    assert ru == {
        0: [(0, "c1-0-0"), (1, "c1-0-1"), (2, "c1-0-2"), (4, "ab-0-0"), (5, "ab-0-1"), (7, "c2-0-0"), (8, "c2-0-1"),
            (10, "open-0-0"), (11, "open-0-1"), (12, "c3-0-0")],
        1: [(0, "c1-1-0"), (1, "c1-1-1"), (3, "ab-1-0"), (4, "ab-1-1"), (6, "c2-1-0"), (8, "c3-1-0")],
    }
    # consume-transform-produce
    committed_after_abort = [int(p["offset"]) for t in r["committedAfterAbort"] for p in t["partitions"]]
    assert committed_after_abort == [-1, -1], "an aborted transaction's sendOffsets committed"
    committed = {p["partition"]: int(p["offset"]) for t in r["committed"] for p in t["partitions"]}
    assert committed == {o["partition"]: int(o["high"]) for o in r["inputOffsets"]} == {0: 6, 1: 5}
    values = [x["v"] for x in r["ctpSeen"]]
    assert sorted(values) == sorted(v.upper() for v in r["inputs"]), "transformed records, each once"
    assert all(x["k"].upper() == x["v"] for x in r["ctpSeen"])
    # the aborted record and its marker, then per committed transaction its records and a marker
    assert highs(r["ctpOffsets"]) == [2 + len(r["inputs"]) + len(r["commits"])]


# ---------------------------------------------------------------------------
# 5. auto-creation, acks=0, seek


def test_auto_create_acks0_seek(kafkajs, target):
    """A send to a missing topic auto-creates it (one partition, the
    default num.partitions); an acks=0 send gets no answer but is stored;
    a consumer that seeks to offset 1 reads offsets 1 and 2."""
    r = kafkajs.run("seek", target.bootstrap, prefix=unique_name("kjs"))
    assert [(a["partition"], a["errorCode"], a["baseOffset"]) for a in r["first"]] == [(0, 0, "0")]
    assert r["acks0"] == []
    assert [(a["partition"], a["errorCode"], a["baseOffset"]) for a in r["last"]] == [(0, 0, "2")]
    assert r["metadata"] == [0]
    assert [(o["partition"], o["low"], o["high"]) for o in r["offsets"]] == [(0, "0", "3")]
    assert r["seen"] == [{"p": 0, "o": "1", "k": "k1", "v": "b"}, {"p": 0, "o": "2", "k": "k2", "v": "c"}]
