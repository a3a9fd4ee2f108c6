"""Metadata at scale, measured with a real client (confluent-kafka).

Starts a release broker on a free port and a temporary data directory, then:
  1. auto-creates N topics one at a time, as a producer to new topics does
     (Metadata for one unknown topic each), printing the time per 1,000;
  2. restarts the broker and times it until it answers ApiVersions;
  3. on a fresh broker under an open-files limit of --nofile, creates up to
     P partitions in CreateTopics requests of 1,000 partitions (topics of
     100) until the broker refuses more up front, restarts it under the same
     limit and times the restart, then produces to a sample of partitions
     and reads it back.

    .venv/bin/python bench/metadata_scale.py --strom target/release/strom \
        [--topics 10000] [--partitions 100000] [--nofile 20000]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "compat-tests"))
import kafka_wire  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, binary: str, workdir: Path, nofile: int | None = None):
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.nofile = nofile
        self.proc = None

    def start(self) -> float:
        def limit():
            if self.nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
        log = open(self.workdir / "strom.log", "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [self.binary, "--listen", f"127.0.0.1:{self.port}", "--http-listen", "127.0.0.1:0",
             "--data-dir", str(self.workdir / "data"),
             "--log-level", "warn"], stdout=log, stderr=log, preexec_fn=limit)
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"broker exited: see {self.workdir / 'strom.log'}")
            try:
                kafka_wire.api_versions("127.0.0.1", self.port, timeout=1.0)
                return time.monotonic() - t0
            except OSError:
                time.sleep(0.02)

    def stop(self) -> float:
        t0 = time.monotonic()
        self.proc.terminate()
        self.proc.wait(timeout=300)
        return time.monotonic() - t0

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
        return 0.0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def auto_create(broker: Broker, n: int) -> None:
    p = Producer({"bootstrap.servers": broker.bootstrap})
    t0 = last = time.monotonic()
    for i in range(n):
        md = p.list_topics(topic=f"scale-{i:05d}", timeout=30)
        assert md.topics[f"scale-{i:05d}"].error is None, md.topics[f"scale-{i:05d}"].error
        if (i + 1) % 1000 == 0:
            now = time.monotonic()
            print(f"  topics {i - 998:>6}-{i + 1:<6} {now - last:6.2f} s")
            last = now
    p.flush(10)
    del p
    print(f"auto-created {n} topics in {time.monotonic() - t0:.1f} s; broker peak RSS {broker.rss_mb():.0f} MB")


def many_partitions(broker: Broker, total: int) -> list[str]:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    per_topic, per_request = 100, 1_000
    t0 = time.monotonic()
    names = [f"wide-{i:05d}" for i in range(total // per_topic)]
    step = per_request // per_topic
    created, refused = [], None
    for at in range(0, len(names), step):
        futures = admin.create_topics([NewTopic(n, per_topic, 1) for n in names[at:at + step]],
                                      request_timeout=120)
        for name, f in futures.items():
            try:
                f.result()
                created.append(name)
            except Exception as e:  # noqa: BLE001 - the refusal is what is measured
                refused = refused or str(e)
        if refused:
            break
    print(f"created {len(created) * per_topic} partitions in {time.monotonic() - t0:.1f} s; "
          f"broker peak RSS {broker.rss_mb():.0f} MB")
    if refused:
        print(f"  then refused up front: {refused}")
    return created


def sample_round_trip(broker: Broker, topics: list[str]) -> None:
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for t in topics:
        p.produce(t, b"after restart", partition=99)
    assert p.flush(60) == 0
    del p
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "scale", "enable.auto.commit": False})
    for t in topics:
        c.assign([TopicPartition(t, 99, 0)])
        m = c.poll(30)
        assert m is not None and m.error() is None and m.value() == b"after restart", (t, m)
    c.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strom", required=True)
    ap.add_argument("--topics", type=int, default=10_000)
    ap.add_argument("--partitions", type=int, default=100_000)
    ap.add_argument("--nofile", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        b = Broker(args.strom, Path(tmp), nofile=args.nofile)
        b.start()
        if args.topics:
            auto_create(b, args.topics)
            print(f"clean shutdown with {args.topics} topics in {b.stop():.2f} s")
            print(f"restart with {args.topics} topics: ready in {b.start():.2f} s")
        if args.partitions:
            b.stop()
            b = Broker(args.strom, Path(tmp) / "wide", nofile=args.nofile)
            b.workdir.mkdir()
            b.start()
            created = many_partitions(b, args.partitions)
            print(f"clean shutdown with {len(created) * 100} partitions in {b.stop():.2f} s")
            print(f"restart with {len(created) * 100} partitions, "
                  f"nofile={args.nofile}: ready in {b.start():.2f} s; peak RSS {b.rss_mb():.0f} MB")
            sample_round_trip(b, created[::97])
            print("produce and fetch after the restart: ok")
        print(f"clean shutdown (SIGTERM) in {b.stop():.2f} s")


if __name__ == "__main__":
    main()
