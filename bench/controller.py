"""The controller quorum's costs, measured with kafka-python's admin client:
CreateTopics latency (one topic of one partition per request, sent to a
node that is not the controller when there are several, so the three-node
figure includes forwarding) on one node and on three, and the time from a
kill -9 of the active controller until another node names a new one and
until a CreateTopics through a survivor succeeds.

    .venv/bin/python bench/controller.py --strom target/release/strom [--topics 200] [--kills 5]
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, strom, node_id, port, controller_port, voters, root):
        self.strom, self.node_id, self.port = strom, node_id, port
        self.dir = os.path.join(root, f"node{node_id}")
        os.makedirs(self.dir, exist_ok=True)
        self.config = os.path.join(self.dir, "strom.toml")
        lines = [f'"node.id" = {node_id}', f'"log.dirs" = "{self.dir}/data"']
        if voters:
            lines += [
                f'"listeners" = "PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"',
                f'"controller.quorum.voters" = "{voters}"',
            ]
        else:
            lines += [f'"listeners" = "PLAINTEXT://127.0.0.1:{port}"']
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        log = open(os.path.join(self.dir, "strom.log"), "ab")
        self.proc = subprocess.Popen([self.strom, "--config", self.config, "--http-listen", "127.0.0.1:0"],
                                     stdout=log, stderr=log)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"


def admin(node, deadline_s=30):
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return KafkaAdminClient(bootstrap_servers=node.bootstrap, client_id="strom-bench-controller",
                                    request_timeout_ms=10000)
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def controller_of(node):
    a = admin(node)
    try:
        return a.describe_cluster()["controller_id"]
    finally:
        a.close()


def cluster(strom, n, root, settings=None):
    """`n` started nodes (one voter each when several), with `settings`
    (Kafka's key names) added to each one's config file."""
    ports = [(free_port(), free_port()) for _ in range(n)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports)) if n > 1 else ""
    nodes = [Node(strom, i + 1, p, c, voters, root) for i, (p, c) in enumerate(ports)]
    for node in nodes:
        with open(node.config, "a") as f:
            for k, v in (settings or {}).items():
                f.write(f'"{k}" = "{v}"\n')
        node.start()
    return nodes


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def create_latency(nodes, topics):
    target = nodes[0]
    if len(nodes) > 1:
        c = controller_of(nodes[0])
        target = next(n for n in nodes if n.node_id != c)
    a = admin(target)
    times = []
    for i in range(topics):
        t = time.perf_counter()
        a.create_topics([NewTopic(f"bench-{i}", 1, 1)])
        times.append((time.perf_counter() - t) * 1000)
    a.close()
    return times


def failover(nodes, root, kills):
    results = []
    for k in range(kills):
        live = [n for n in nodes if n.proc]
        old = controller_of(live[0])
        victim = next(n for n in nodes if n.node_id == old)
        survivor = next(n for n in live if n.node_id != old)
        t0 = time.monotonic()
        victim.kill9()
        while True:
            try:
                c = controller_of(survivor)
                if c not in (old, -1):
                    break
            except KafkaError:
                pass
            time.sleep(0.01)
        elected = time.monotonic() - t0
        a = admin(survivor)
        while True:
            try:
                a.create_topics([NewTopic(f"after-kill-{k}", 1, 1)])
                break
            except KafkaError:
                time.sleep(0.01)
        a.close()
        writable = time.monotonic() - t0
        results.append((elected, writable))
        victim.start()
        admin(victim).close()
        # Back as a follower before the next kill.
        time.sleep(1)
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--strom", required=True)
    p.add_argument("--topics", type=int, default=200)
    p.add_argument("--kills", type=int, default=5)
    args = p.parse_args()
    for n in (1, 3):
        root = tempfile.mkdtemp(prefix=f"strom-bench-controller-{n}-")
        nodes = cluster(args.strom, n, root)
        try:
            times = create_latency(nodes, args.topics)
            print(f"{n} node(s): CreateTopics of {args.topics} topics: p50 {percentile(times, 0.5):.2f} ms, "
                  f"p99 {percentile(times, 0.99):.2f} ms, max {max(times):.2f} ms")
            if n == 3:
                for elected, writable in failover(nodes, root, args.kills):
                    print(f"  kill -9 of the controller: new controller named after {elected * 1000:.0f} ms, "
                          f"CreateTopics through a survivor succeeds after {writable * 1000:.0f} ms")
        finally:
            for node in nodes:
                if node.proc:
                    node.kill9()
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
