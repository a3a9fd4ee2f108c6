"""Strom beside Apache Kafka: the same client, the same settings, one run.

Starts a fresh release Strom, runs the strom-bench scenarios (librdkafka)
and Kafka's own ``kafka-producer-perf-test`` (ProducerPerformance) against
it, stops it; then does the same against a fresh reference Apache Kafka
(compat-tests/reference_kafka.py: single-node KRaft, a 1 GiB heap, Kafka's
defaults otherwise). The two brokers never run at the same time, so they do
not compete for the machine; the clients share it with each broker.

Around each scenario it reads the broker process's CPU time (utime + stime
from /proc/PID/stat; for Kafka the JVM's pid) and, at the end of each
broker's run, its peak RSS (VmHWM from /proc/PID/status). CPU seconds per GB
is the broker's CPU time during a produce or consume scenario over the
record-value bytes moved (GB = 10^9 bytes). Then it prints one markdown
table with Strom/Kafka ratios.

    python3 bench/beside_kafka.py --strom target/release/strom \\
        --bench target/release/strom-bench \\
        --kafka-libs ~/.cache/strom/kafka-4.1.1/libs [--gib 1] [--no-kafka]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "compat-tests"))
import kafka_wire  # noqa: E402
import reference_kafka  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
KIB = 1024
OTHER_CPU: dict[str, float] = {}   # per broker: CPU other processes used during its scenarios
GIB = 2**30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy_seconds() -> float:
    """CPU time all processes on the machine have used (non-idle, non-iowait)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / TICKS


def children_seconds() -> float:
    """CPU time of this process's waited-for children (the clients)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Strom:
    name = "Strom"

    def __init__(self, binary: str, config: dict | None = None, log_level: str = "warn",
                 prefix: str = "strom-beside-kafka-"):
        """``config``: Kafka-named settings, written to a TOML file."""
        self.binary = binary
        self.workdir = Path(tempfile.mkdtemp(prefix=prefix))
        self.port = free_port()
        self.log = self.workdir / "strom.log"
        self.config = config or {}
        self.log_level = log_level
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Strom":
        toml = self.workdir / "strom.toml"
        toml.write_text("".join(f'"{k}" = {v}\n' for k, v in self.config.items()))
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--listen", f"127.0.0.1:{self.port}",
             "--http-listen", "127.0.0.1:0", "--config", str(toml),
             "--data-dir", str(self.workdir / "data"), "--log-level", self.log_level],
            stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"strom exited: see {self.log}")
            try:
                kafka_wire.api_versions("127.0.0.1", self.port, timeout=1.0)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


class Kafka:
    name = "Kafka"

    def __init__(self, libs: Path):
        self.ref = reference_kafka.ReferenceKafka(libs)

    def start(self) -> "Kafka":
        self.ref.start()
        return self

    @property
    def bootstrap(self) -> str:
        return self.ref.bootstrap

    @property
    def pid(self) -> int:
        return self.ref.pid

    def stop(self) -> None:
        self.ref.stop()


@dataclass
class Result:
    line: str                     # what the client printed
    values: dict[str, float]      # parsed figures
    cpu: float                    # broker CPU seconds during the scenario
    gb: float = 0.0               # record bytes moved, 10^9
    wall: float = 0.0

    @property
    def cpu_per_gb(self) -> float | None:
        return self.cpu / self.gb if self.gb else None


@dataclass
class Run:
    broker: str
    results: dict[str, Result] = field(default_factory=dict)
    peak_rss_mib: float = 0.0
    startup_s: float = 0.0


def parse_kv(line: str) -> dict[str, float]:
    out = {}
    for k, v in re.findall(r"(\S+?)=([0-9.]+)", line):
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


# ProducerPerformance's summary: "1048576 records sent, 140000.1 records/sec
# (136.72 MB/sec), 200.12 ms avg latency, 900.00 ms max latency, 180 ms 50th,
# 400 ms 95th, 600 ms 99th, 800 ms 99.9th."
PERF_SUMMARY = re.compile(
    r"(\d+) records sent, ([0-9.]+) records/sec \(([0-9.]+) MB/sec\), ([0-9.]+) ms avg latency, "
    r"([0-9.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th")


def measure(broker, key: str, fn, gb: float | None = None) -> Result:
    # Each scenario starts with no dirty pages left by the one before (not
    # timed), so the kernel's writeback of earlier data does not throttle it.
    t_sync = time.monotonic()
    os.sync()
    synced = time.monotonic() - t_sync
    before, t0 = cpu_seconds(broker.pid), time.monotonic()
    busy0, kids0, self0 = machine_busy_seconds(), children_seconds(), time.process_time()
    line, values, moved = fn()
    wall = time.monotonic() - t0
    cpu = cpu_seconds(broker.pid) - before
    # What neither the broker, the client nor this script used: other work
    # on the machine that competed with the scenario.
    other = (machine_busy_seconds() - busy0) - cpu - (children_seconds() - kids0) \
        - (time.process_time() - self0)
    r = Result(line, values, cpu, gb if gb is not None else moved, wall)
    extra = f" broker_cpu_s={cpu:.2f}" + (f" cpu_s/GB={r.cpu_per_gb:.2f}" if r.gb else "")
    extra += f" other_cpu_s={max(other, 0.0):.1f} of {(os.cpu_count() or 1) * wall:.0f} (sync before: {synced:.1f} s)"
    OTHER_CPU[broker.name] = OTHER_CPU.get(broker.name, 0.0) + max(other, 0.0)
    print(f"  [{broker.name}] {key}: {line}{extra}", flush=True)
    return r


def create_topic(args, broker, topic: str, partitions: int = 6) -> None:
    """kafka-topics.sh --create, from the same jars, against either broker."""
    reference_kafka.run_kafka_tool(
        Path(args.kafka_libs), reference_kafka.TOPIC_COMMAND,
        ["--bootstrap-server", broker.bootstrap, "--create", "--topic", topic,
         "--partitions", str(partitions), "--replication-factor", "1"]).check()


def run_broker(broker, args) -> Run:
    run = Run(broker.name)
    t0 = time.monotonic()
    broker.start()
    run.startup_s = time.monotonic() - t0
    print(f"{broker.name} up at {broker.bootstrap} (pid {broker.pid}) in {run.startup_s:.1f} s", flush=True)
    try:
        def bench(*cmd: str):
            p = subprocess.run([args.bench, "--brokers", broker.bootstrap, *cmd],
                               capture_output=True, text=True, timeout=900)
            if p.returncode != 0:
                raise SystemExit(f"strom-bench {' '.join(cmd)} against {broker.name} failed:\n"
                                 f"{p.stdout}\n{p.stderr}")
            line = p.stdout.strip().splitlines()[-1]
            return line, parse_kv(line)

        def produce(topic, size, nbytes, *extra):
            def go():
                line, v = bench("produce", "--topic", topic, "--record-size", str(size),
                                "--bytes", str(nbytes), *extra)
                return line, v, v["records"] * size / 1e9
            return go

        def consume(topic, size):
            def go():
                line, v = bench("consume", "--topic", topic)
                return line, v, v["records"] * size / 1e9
            return go

        # Warm-up, not reported: JIT for the JVM, page cache and allocator for both.
        bench("produce", "--topic", "warmup", "--record-size", "1024",
              "--bytes", str(64 * 2**20), "--acks", "1")

        for key, topic, size, gib, extra in [
            ("produce 1 KiB, acks=1", "p1k", KIB, 1, ["--acks", "1"]),
            ("produce 1 KiB, acks=all", "p1k-all", KIB, 1, ["--acks", "all"]),
            ("produce 16 KiB, acks=1", "p16k", 16 * KIB, 2, ["--acks", "1"]),
            ("produce 16 KiB, acks=all", "p16k-all", 16 * KIB, 2, ["--acks", "all"]),
            ("produce 1 KiB, idempotent", "pidem", KIB, 1, ["--idempotent"]),
            ("produce 1 KiB, transactional (commit every 100 ms)", "ptxn", KIB, 1,
             ["--transaction-ms", "100"]),
        ]:
            nbytes = int(gib * args.gib * GIB)
            run.results[key] = measure(broker, key, produce(topic, size, nbytes, *extra))
        run.results["consume 1 KiB"] = measure(broker, "consume 1 KiB", consume("p1k", KIB))
        run.results["consume 16 KiB"] = measure(broker, "consume 16 KiB", consume("p16k", 16 * KIB))

        # The latency topic exists, and its leaders are settled, before the
        # clock starts: a fresh Kafka topic is not led yet when CreateTopics
        # answers, and the first records would wait for that.
        if args.kafka_libs:
            create_topic(args, broker, "latency")
            time.sleep(3)

        def latency():
            line, v = bench("latency", "--topic", "latency", "--rate", "2000",
                            "--seconds", str(args.latency_seconds))
            return line, v, 0.0
        run.results["latency"] = measure(broker, "latency", latency)

        # Kafka's own producer benchmark, the same jars against both brokers.
        records = int(args.gib * GIB) // KIB
        for acks in ("1", "all") if args.kafka_libs else ():
            topic = f"perf-{acks}"
            broker_tool = reference_kafka.run_kafka_tool
            create_topic(args, broker, topic)

            def perf(acks=acks, topic=topic):
                res = broker_tool(
                    Path(args.kafka_libs), reference_kafka.PRODUCER_PERF_TEST,
                    ["--topic", topic, "--num-records", str(records), "--record-size", str(KIB),
                     "--throughput", "-1", "--producer-props",
                     f"bootstrap.servers={broker.bootstrap}", f"acks={acks}"],
                    timeout=900).check()
                m, summary = None, ""
                for line in res.stdout.splitlines():
                    if PERF_SUMMARY.search(line):
                        m, summary = PERF_SUMMARY.search(line), line.strip()
                if m is None:
                    raise SystemExit(f"no summary from ProducerPerformance:\n{res.stdout}\n{res.stderr}")
                vals = dict(zip(["records", "records/s", "MB/s", "avg_ms", "max_ms", "p50_ms",
                                 "p95_ms", "p99_ms"], map(float, m.groups())))
                return summary, vals, vals["records"] * KIB / 1e9
            run.results[f"kafka-producer-perf-test acks={acks}"] = measure(
                broker, f"kafka-producer-perf-test acks={acks}", perf)
        run.peak_rss_mib = peak_rss_mib(broker.pid)
        print(f"  [{broker.name}] peak RSS {run.peak_rss_mib:.0f} MiB", flush=True)
    finally:
        broker.stop()
    return run


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return ""
    return f"{x:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return ""
    return f"{a / b:.2f}"


def table(runs: list[Run]) -> str:
    strom = runs[0]
    kafka = runs[1] if len(runs) > 1 else None
    names = [r.broker for r in runs]
    head = ["scenario"] + names + (["Strom/Kafka"] if kafka else [])
    head += [f"{n} CPU s/GB" for n in names] + (["Strom/Kafka"] if kafka else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label, get, digits=1, cpu=False):
        vals = [get(r) for r in runs]
        cells = [label] + [fmt(v, digits) for v in vals]
        if kafka:
            cells.append(ratio(vals[0], vals[1]))
        if cpu:
            cpus = [r.results[cpu].cpu_per_gb for r in runs]
            cells += [fmt(c, 2) for c in cpus]
            if kafka:
                cells.append(ratio(cpus[0], cpus[1]))
        else:
            cells += [""] * (len(runs) + (1 if kafka else 0))
        lines.append("| " + " | ".join(cells) + " |")

    for key in strom.results:
        if key.startswith(("produce", "consume")):
            row(f"{key}, MB/s", lambda r, k=key: r.results[k].values["MB/s"], cpu=key)
    row("end-to-end p50, 2,000 records/s, linger 0, ms",
        lambda r: r.results["latency"].values["p50_ms"], 2)
    row("end-to-end p99, ms", lambda r: r.results["latency"].values["p99_ms"], 2)
    row("end-to-end max, ms", lambda r: r.results["latency"].values["max_ms"], 2)
    for acks in ("1", "all") if "kafka-producer-perf-test acks=1" in strom.results else ():
        key = f"kafka-producer-perf-test acks={acks}"
        row(f"{key}, 1 KiB, MB/s", lambda r, k=key: r.results[k].values["MB/s"], cpu=key)
        row(f"{key}, p99 latency, ms", lambda r, k=key: r.results[k].values["p99_ms"], 0)
    row("broker peak RSS (VmHWM), MiB", lambda r: r.peak_rss_mib, 0)
    row("broker start until it answers ApiVersions, s", lambda r: r.startup_s, 1)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strom", required=True)
    ap.add_argument("--bench", required=True, help="the strom-bench binary")
    ap.add_argument("--kafka-libs", default=os.environ.get(reference_kafka.ENV_LIBS),
                    help=f"Kafka's jars (default ${reference_kafka.ENV_LIBS})")
    ap.add_argument("--gib", type=float, default=1.0,
                    help="scale: GiB per 1 KiB produce scenario (16 KiB ones move twice that)")
    ap.add_argument("--latency-seconds", type=int, default=20)
    ap.add_argument("--no-kafka", action="store_true", help="Strom only")
    args = ap.parse_args()
    if args.kafka_libs and not list(Path(args.kafka_libs).glob("kafka_2.13-*.jar")):
        args.kafka_libs = None
    if not args.kafka_libs and args.no_kafka:
        print("no Kafka jars: skipping kafka-producer-perf-test", flush=True)
    elif not args.kafka_libs:
        raise SystemExit(f"no Kafka jars: pass --kafka-libs or set ${reference_kafka.ENV_LIBS} "
                         f"(scripts/test fetches them)")
    t0 = time.monotonic()
    brokers = [lambda: Strom(args.strom)]
    if not args.no_kafka:
        brokers.append(lambda: Kafka(Path(args.kafka_libs)))
    runs = [run_broker(make(), args) for make in brokers]
    print(f"\nscale {args.gib} GiB, {time.monotonic() - t0:.0f} s in all; "
          f"ratios are Strom/Kafka (throughput: higher is better for Strom; "
          f"latency, CPU and RSS: lower is)\n")
    print(table(runs))
    print("\nCPU seconds used by other processes during the scenarios (0 on a quiet machine): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in OTHER_CPU.items()))


if __name__ == "__main__":
    main()
