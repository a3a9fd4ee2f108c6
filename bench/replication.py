"""Partition replication's costs, measured with confluent-kafka (librdkafka):

- produce throughput of 1 KiB records with acks=all, replication factor 1 on
  one node against replication factor 3 (min.insync.replicas 2) on three;
- end-to-end latency (produce to a consumer's poll) at a steady rate, on both;
- the time from a kill -9 of a partition's leader to the first acknowledged
  produce on its new leader (the producer keeps sending one record at a
  time; broker.session.timeout.ms as given, Kafka's 9000 by default), and
  on the way: when the controller fenced the dead broker (its log), when a
  survivor's Metadata names a new leader, and when an acks=all Produce
  sent straight to it over the wire is acknowledged;
- follower catch-up: a follower killed while a given amount is produced, then
  restarted, until it is back in the ISR.

    .venv/bin/python bench/replication.py --strom target/release/strom [--mb 256] [--kills 3] \
        [--session-timeout-ms 9000 --heartbeat-interval-ms 2000]
"""

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "compat-tests"))
import kafka_wire as kw  # noqa: E402
from controller import cluster, percentile  # noqa: E402

RECORD = b"x" * 1024


def bootstrap(nodes):
    return ",".join(n.bootstrap for n in nodes if n.proc)


def partition_state(nodes, topic):
    """(leader, isr) of partition 0 of `topic`, as the live nodes answer."""
    md = AdminClient({"bootstrap.servers": bootstrap(nodes)}).list_topics(topic, timeout=10)
    p = md.topics[topic].partitions[0]
    return p.leader, sorted(p.isrs)


def wait_for(what, check, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except KafkaException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def create(nodes, topic, rf):
    admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
    wait_for("the topic", lambda: admin.create_topics([NewTopic(topic, 1, rf)])[topic].result() is None)
    wait_for("the ISR", lambda: len(partition_state(nodes, topic)[1]) == rf)


def producer(nodes, **extra):
    conf = {"bootstrap.servers": bootstrap(nodes), "acks": "all", "linger.ms": 5,
            "enable.idempotence": True, "message.timeout.ms": 120000}
    conf.update(extra)
    return Producer(conf)


def throughput(nodes, topic, mb):
    p = producer(nodes, **{"batch.size": 1 << 20})
    n = mb * 1024
    start = time.perf_counter()
    for _ in range(n):
        while True:
            try:
                p.produce(topic, RECORD)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    p.flush(120)
    return mb / (time.perf_counter() - start)


def latency(nodes, topic, count, rate):
    c = Consumer({"bootstrap.servers": bootstrap(nodes), "group.id": f"lat-{topic}",
                  "auto.offset.reset": "latest", "fetch.wait.max.ms": 10})
    c.subscribe([topic])
    wait_for("the assignment", lambda: c.poll(0.1) is None and bool(c.assignment()))
    p = producer(nodes, **{"linger.ms": 0})

    # Warm-up: until the consumer has its position and a first record, what
    # is sent waits for that, not for the brokers.
    def warm():
        p.produce(topic, b"warm-up")
        p.flush(10)
        m = c.poll(0.2)
        return m is not None and not m.error() and m.value() == b"warm-up"

    wait_for("the consumer's first record", warm)
    while c.poll(0.2) is not None:
        pass
    times = []
    gap = 1.0 / rate
    sent = 0
    next_send = time.perf_counter()
    while len(times) < count:
        now = time.perf_counter()
        if sent < count and now >= next_send:
            p.produce(topic, str(now).encode())
            p.poll(0)
            sent += 1
            next_send += gap
        m = c.poll(0.001)
        if m is not None and not m.error() and m.value() != b"warm-up":
            times.append((time.perf_counter() - float(m.value())) * 1000)
    c.close()
    return times


def active_controller(nodes):
    admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
    return admin.describe_cluster(request_timeout=10).result().controller.id


def fenced_at(nodes, victim, after):
    """Wall-clock time of the first 'fencing brokers' log line naming
    `victim` that a survivor wrote after `after`, or None."""
    for n in nodes:
        if n is victim or not n.proc:
            continue
        with open(os.path.join(n.dir, "strom.log"), errors="replace") as f:
            for line in f:
                if "fencing brokers whose sessions expired" in line and f"brokers=[{victim.node_id}]" in line:
                    at = datetime.fromisoformat(line.split()[0]).timestamp()
                    if at > after:
                        return at
    return None


def watch_new_leader(nodes, victim, topic, seen):
    """After a kill, as fast as a survivor answers: when a survivor's
    Metadata first names a new leader, and when an acks=all Produce sent
    straight to that leader over the wire is first acknowledged (what the
    brokers need, without the client's metadata refresh)."""
    survivors = [n for n in nodes if n is not victim]
    leader = None
    while leader is None:
        for n in survivors:
            try:
                t = kw.metadata("127.0.0.1", n.port, [topic], allow_auto_topic_creation=False).get(topic)
            except (OSError, kw.ProtocolError):
                continue
            if t is not None and t.partitions.get(0, (0, -1))[1] not in (-1, victim.node_id):
                leader = next(m for m in survivors if m.node_id == t.partitions[0][1])
                seen["leader"] = time.monotonic()
                break
        time.sleep(0.005)
    while True:
        try:
            r = kw.produce("127.0.0.1", leader.port, topic, kw.simple_batch([b"raw"]), acks=-1, timeout=30)
            if r.error_code == 0:
                seen["raw_ack"] = time.monotonic()
                return
        except (OSError, kw.ProtocolError):
            pass
        time.sleep(0.005)


def failover(nodes, topic, kills):
    """Per kill: (first acknowledged produce, new leader in Metadata, raw
    acks=all produce to it, controller fenced the victim; seconds after
    the kill, the last None if not found) and whether the victim was also
    the active controller."""
    results = []
    for _ in range(kills):
        leader, isr = partition_state(nodes, topic)
        victim = next(n for n in nodes if n.node_id == leader)
        was_controller = active_controller(nodes) == victim.node_id
        p = producer([n for n in nodes if n is not victim], **{"linger.ms": 0})
        acked = []

        def delivered(err, _msg):
            if err is None:
                acked.append(time.monotonic())

        p.produce(topic, b"before", on_delivery=delivered)
        p.flush(30)
        seen = {}
        watcher = threading.Thread(target=watch_new_leader, args=(nodes, victim, topic, seen))
        wall0, t0 = time.time(), time.monotonic()
        victim.kill9()
        watcher.start()
        while True:
            count = len(acked)
            p.produce(topic, b"during", on_delivery=delivered)
            p.flush(120)
            if len(acked) > count and acked[-1] > t0:
                break
        watcher.join(60)
        fenced = fenced_at(nodes, victim, wall0)
        results.append(((acked[-1] - t0, seen["leader"] - t0, seen["raw_ack"] - t0,
                         None if fenced is None else fenced - wall0), was_controller))
        victim.start()
        wait_for("the ISR whole again", lambda: len(partition_state(nodes, topic)[1]) == len(nodes))
    return results


def catch_up(nodes, topic, mb):
    leader, _ = partition_state(nodes, topic)
    follower = next(n for n in nodes if n.node_id != leader)
    follower.kill9()
    wait_for("the ISR shrunk", lambda: len(partition_state(nodes, topic)[1]) == len(nodes) - 1)
    throughput(nodes, topic, mb)
    t0 = time.monotonic()
    follower.start()
    wait_for("the follower back in sync", lambda: len(partition_state(nodes, topic)[1]) == len(nodes), 600)
    return mb / (time.monotonic() - t0)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--strom", required=True)
    a.add_argument("--mb", type=int, default=256)
    a.add_argument("--latency-count", type=int, default=2000)
    a.add_argument("--rate", type=int, default=500)
    a.add_argument("--kills", type=int, default=3)
    a.add_argument("--session-timeout-ms", type=int, default=9000)
    a.add_argument("--heartbeat-interval-ms", type=int, default=2000)
    args = a.parse_args()
    for n, rf in ((1, 1), (3, 3)):
        root = tempfile.mkdtemp(prefix=f"strom-bench-replication-{n}-")
        settings = {"min.insync.replicas": "2"} if n > 1 else {}
        settings["broker.session.timeout.ms"] = str(args.session_timeout_ms)
        settings["broker.heartbeat.interval.ms"] = str(args.heartbeat_interval_ms)
        nodes = cluster(args.strom, n, root, settings)
        try:
            create(nodes, "tp", rf)
            mbs = throughput(nodes, "tp", args.mb)
            print(f"{n} node(s), replication factor {rf}, acks=all: {args.mb} MiB of 1 KiB records at {mbs:.1f} MiB/s")
            create(nodes, "lat", rf)
            times = latency(nodes, "lat", args.latency_count, args.rate)
            print(f"  end to end at {args.rate}/s: p50 {percentile(times, 0.5):.2f} ms, "
                  f"p99 {percentile(times, 0.99):.2f} ms, max {max(times):.2f} ms")
            if n > 1:
                create(nodes, "fo", rf)
                for (acked, named, raw, fenced), was_controller in failover(nodes, "fo", args.kills):
                    fenced = "not logged" if fenced is None else f"{fenced * 1000:.0f} ms"
                    print(f"  kill -9 of the leader{' (also the active controller)' if was_controller else ''}: "
                          f"fenced by the controller after {fenced}, new leader in Metadata after {named * 1000:.0f} ms, "
                          f"raw acks=all produce to it acknowledged after {raw * 1000:.0f} ms, "
                          f"the client's first acknowledged produce after {acked * 1000:.0f} ms")
                create(nodes, "cu", rf)
                print(f"  a follower restarted after {args.mb} MiB: back in the ISR at {catch_up(nodes, 'cu', args.mb):.1f} MiB/s")
        finally:
            for node in nodes:
                if node.proc:
                    node.kill9()
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
