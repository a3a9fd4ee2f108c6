"""Differential: DescribeConfigs of a topic and of the broker, Strom against
the reference Kafka, through kafka-python's admin client (DescribeConfigs v4:
every key, with synonyms and types).

Each broker gets the same topic, with one override (``retention.ms``).
Compared per key: value, source, read-only, sensitive, type and the synonym
list (names, values and sources, in order). Paths (the data directory) and
the node's own listener are written as placeholders first.

- the topic: every key on both, except the keys Kafka has and Strom does not
  serve yet, which must be exactly those docs/compatibility.md lists in
  "Found by the Java client", row ``describe-configs-topic-keys``;
- the broker: Strom lists no key Kafka does not; of the keys both list, each
  that differs must be a row of docs/compatibility.md, "DescribeConfigs",
  with both answers as observed (a listed key that now agrees fails too).
  The many broker keys Kafka lists and Strom does not (SASL, SSL, quotas,
  replication, share groups, ...) are counted in the failure message, not
  compared.
"""

from __future__ import annotations

import re

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

import reference_kafka as rk
from helpers import unique_name

SECTION = "DescribeConfigs"


def describe(target, topic: str) -> dict[str, dict]:
    """``{"topic:KEY" | "broker:KEY": {...}}`` for ``topic`` and the broker."""
    admin = KafkaAdminClient(bootstrap_servers=target.bootstrap, client_id="strom-compat-describe-configs")
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"retention.ms": "123456"})])
        node = str(admin.describe_cluster()["controller_id"])
        out = {}
        for kind, name, prefix in [(ConfigResourceType.TOPIC, topic, "topic"),
                                   (ConfigResourceType.BROKER, node, "broker")]:
            result = admin.describe_configs([ConfigResource(kind, name)], include_synonyms=True,
                                            config_filter="all")
            ((_, by_name),) = next(iter(result.values())).items()
            for key, entry in by_name.items():
                entry = dict(entry)
                entry.pop("documentation", None)
                out[f"{prefix}:{key}"] = entry
        return out
    finally:
        admin.close()


def normalise(text: str) -> str:
    """Paths and the node's listener addresses, which differ by nature."""
    text = re.sub(r"/tmp/[^\s'\",]+", "<dir>", text)
    return re.sub(r"127\.0\.0\.1:\d+", "<addr>", text)


def cell(entry: dict) -> str:
    """An entry as the table writes it: value, source, flags, type; synonyms."""
    synonyms = "; ".join(f"{s['name']}={s['value']} {s['source']}" for s in entry.get("synonyms", []))
    flags = "".join(f" {f}" for f in ("read_only", "is_sensitive") if entry.get(f))
    return normalise(f"{entry['value']} {entry['config_source']}{flags} {entry['config_type']}; "
                     f"synonyms: {synonyms or 'none'}")


@pytest.fixture(scope="module")
def both(broker_module, kafka_ref):
    topic = unique_name("diff-describe-configs")
    return describe(kafka_ref, topic), describe(broker_module, topic)


@pytest.fixture(scope="module")
def broker_module(strom_bin, tmp_path_factory):
    from conftest import StromBroker
    broker = StromBroker(strom_bin, tmp_path_factory.mktemp("describe-configs"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_topic_configs_match(both):
    kafka, strom = both
    kafka_keys = {k for k in kafka if k.startswith("topic:")}
    strom_keys = {k for k in strom if k.startswith("topic:")}
    assert not strom_keys - kafka_keys, f"Strom lists topic keys Kafka does not: {sorted(strom_keys - kafka_keys)}"
    row = rk.differences_by_id("Found by the Java client").get("describe-configs-topic-keys")
    listed = set(re.findall(r"`([a-z0-9.]+)`", row[2])) if row else set()
    missing = {k.split(":", 1)[1] for k in kafka_keys - strom_keys}
    assert missing == listed, (f"topic keys Kafka lists and Strom does not: {sorted(missing)}; "
                               f"docs/compatibility.md lists {sorted(listed)}")
    differing = {k: (cell(kafka[k]), cell(strom[k])) for k in sorted(kafka_keys & strom_keys)
                 if cell(kafka[k]) != cell(strom[k])}
    assert not differing, "topic configs differ:\n" + "\n".join(
        f"  {k}\n    Kafka: {a}\n    Strom: {b}" for k, (a, b) in differing.items())


def test_broker_configs_differ_only_as_listed(both):
    kafka, strom = both
    kafka_keys = {k for k in kafka if k.startswith("broker:")}
    strom_keys = {k for k in strom if k.startswith("broker:")}
    assert not strom_keys - kafka_keys, f"Strom lists broker keys Kafka does not: {sorted(strom_keys - kafka_keys)}"
    rows = rk.differences_by_id(SECTION)
    problems = []
    for key in sorted(strom_keys):
        name = key.split(":", 1)[1]
        k, s = cell(kafka[key]), cell(strom[key])
        row = rows.pop(name, None)
        if k == s:
            if row is not None:
                problems.append(f"{name}: both answer {k!r} now: remove its row")
        elif row is None:
            problems.append(f"{name} differs and is not listed; add\n| `{name}` | {k} | {s} | (reason) |")
        elif (row[1], row[2]) != (k, s):
            problems.append(f"{name}: listed as Kafka {row[1]!r} / Strom {row[2]!r}, observed {k!r} / {s!r}")
        elif (why := rk.check_reason(row[3])) is not None:
            problems.append(f"{name}: {why}")
    problems += [f"{name}: listed, but Strom does not list the key" for name in rows]
    assert not problems, (f"({len(kafka_keys - strom_keys)} of Kafka's {len(kafka_keys)} broker keys are not "
                          f"listed by Strom and not compared)\n" + "\n".join(problems))
