"""kcat 1.7.1 (Debian bookworm, librdkafka 2.0.2) as producer, consumer and
metadata client.

kcat without -G uses librdkafka's legacy (group-less) consumer. It treats
"all brokers down" as fatal, so a broker that drops connections fails these.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from helpers import (
    CONFLUENT, KAFKA_PYTHON, Rec, assert_stored_codec, consume, content, create_topic, produce,
)

KCAT_TIMEOUT = 60


@pytest.fixture(scope="session")
def kcat_bin() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat not found on PATH (Debian: apt-get install -y kcat)", pytrace=False)
    return path


def kcat(kcat_bin: str, broker, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run([kcat_bin, "-b", broker.bootstrap, *args], input=stdin, capture_output=True,
                          text=True, timeout=KCAT_TIMEOUT)
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}\nstderr:\n{proc.stderr}"
    return proc.stdout


# Compressible even one line at a time: librdkafka sends a batch uncompressed
# when compression would not make it smaller.
LINES = [f"key-{i % 4}:value number {i} " + "x" * (100 + i % 17) for i in range(50)]


@pytest.mark.parametrize("codec", ["snappy", "gzip", "lz4", "zstd"])
def test_kcat_produce_then_consume(broker, kcat_bin, codec):
    topic = create_topic(broker)
    kcat(kcat_bin, broker, "-P", "-t", topic, "-p", "0", "-z", codec, "-K:", "-X", "linger.ms=50",
         stdin="\n".join(LINES) + "\n")

    out = kcat(kcat_bin, broker, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%o|%k|%s\n")
    assert out.splitlines() == [f"{i}|{line.replace(':', '|', 1)}" for i, line in enumerate(LINES)]
    assert_stored_codec(broker, topic, codec, len(LINES))


def test_kcat_output_matches_other_clients(broker, kcat_bin):
    topic = create_topic(broker)
    kcat(kcat_bin, broker, "-P", "-t", topic, "-K:", stdin="\n".join(LINES) + "\n")
    expected = [Rec(*(part.encode() for part in line.split(":", 1))) for line in LINES]
    assert content(consume(KAFKA_PYTHON, broker, topic, len(LINES))) == content(expected)
    assert content(consume(CONFLUENT, broker, topic, len(LINES))) == content(expected)


def test_kcat_reads_what_clients_wrote(broker, kcat_bin):
    topic = create_topic(broker)
    produce(KAFKA_PYTHON, broker, topic, [Rec(b"k1", b"from kafka-python", headers=(("h", b"1"),))])
    produce(CONFLUENT, broker, topic, [Rec(b"k2", b"from confluent", headers=(("h", b"2"),))],
            **{"compression.type": "zstd"})
    out = kcat(kcat_bin, broker, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%o %k %s %h\n")
    assert out.splitlines() == ["0 k1 from kafka-python h=1", "1 k2 from confluent h=2"]


def test_kcat_consume_from_offset_and_count(broker, kcat_bin):
    topic = create_topic(broker)
    produce(KAFKA_PYTHON, broker, topic, [Rec(None, b"%d" % i) for i in range(20)])
    out = kcat(kcat_bin, broker, "-C", "-t", topic, "-o", "15", "-e", "-f", "%o:%s\n")
    assert out.splitlines() == [f"{i}:{i}" for i in range(15, 20)]
    out = kcat(kcat_bin, broker, "-C", "-t", topic, "-o", "-3", "-e", "-f", "%s\n")  # 3 from the end
    assert out.splitlines() == ["17", "18", "19"]
    out = kcat(kcat_bin, broker, "-C", "-t", topic, "-o", "beginning", "-c", "4", "-f", "%s\n")
    assert out.splitlines() == ["0", "1", "2", "3"]


def test_kcat_metadata_listing(broker, kcat_bin):
    topic = create_topic(broker, partitions=3)
    listing = json.loads(kcat(kcat_bin, broker, "-L", "-J"))
    assert listing["brokers"] == [{"id": 1, "name": broker.bootstrap}]
    assert listing["controllerid"] == 1
    (entry,) = [t for t in listing["topics"] if t["topic"] == topic]
    assert [p["partition"] for p in entry["partitions"]] == [0, 1, 2]
    for p in entry["partitions"]:
        assert p["leader"] == 1
        assert p["replicas"] == [{"id": 1}]
        assert p["isrs"] == [{"id": 1}]

    text = kcat(kcat_bin, broker, "-L", "-t", topic)
    assert f"broker 1 at {broker.bootstrap}" in text
    assert f'topic "{topic}" with 3 partitions:' in text
