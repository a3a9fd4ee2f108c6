"""The log cleaner's cost: produce throughput and end-to-end latency on a
compacted topic with the cleaner off and on, and how fast it cleans.

Two runs, each on a fresh release Strom (never both at once):

- ``off``: ``log.cleaner.threads=0``, nothing is cleaned;
- ``on``: ``log.cleaner.threads=1`` (Kafka's default), the rest as Kafka's
  defaults (``log.cleaner.io.max.bytes.per.second`` unbounded) but
  ``log.cleaner.backoff.ms=1000`` (Kafka's: 15 s), so that the cleaner
  starts on the backlog while the measured produce runs.

Each creates a topic with ``cleanup.policy=compact`` and small segments
(``segment.bytes``, so that segments close and the cleaner has work while
the load runs), then:

1. a backlog: strom-bench sends ``--gib`` of records (keys cycling through
   ``--keys`` values), not measured, so that the cleaner (when on) has a
   dirty log to work through during the next two steps;
2. ``produce``: the same again as fast as librdkafka goes, acks=1: MB/s;
3. ``latency``: strom-bench sends 2,000 records/s for 20 s with linger 0
   while a consumer reads: p50/p99/max.

How many cleanings ended inside each measured step is printed, so that it
shows whether the cleaner ran while it was measured.

The ``on`` run's broker logs each cleaning (``log cleaned``: bytes read,
records removed, MB/s); cleaner throughput is the bytes read over the time
spent cleaning, summed over all cleanings of the run. The partition sizes
on disk at the end (allocated blocks of the segment files) show what
compaction kept.

    python3 bench/compaction.py --strom target/release/strom \\
        --bench target/release/strom-bench [--gib 1] [--keys 120000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "compat-tests"))
import beside_kafka  # noqa: E402
import kafka_wire  # noqa: E402
from beside_kafka import parse_kv  # noqa: E402

GIB = 2**30
PARTITIONS = 6
TOPIC = "compacted"
SEGMENT_BYTES = 16 * 2**20
# Kafka's default is 15 s; shorter, so that the cleaner starts on the
# backlog while the measured produce runs rather than after it.
BACKOFF_MS = 1000
CLEANED = re.compile(r"log cleaned")
FIELD = re.compile(r'(\w+)="?([0-9.]+)"?')


class Strom(beside_kafka.Strom):
    """A release Strom with ``threads`` cleaner threads, logging each
    cleaning."""

    def __init__(self, binary: str, threads: int):
        super().__init__(binary, {"log.cleaner.threads": threads, "log.cleaner.backoff.ms": BACKOFF_MS},
                         log_level="info", prefix="strom-compaction-bench-")
        self.start()

    def cleanings(self) -> list[dict[str, float]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if CLEANED.search(line):
                fields = {k: float(v) for k, v in FIELD.findall(line)}
                out.append(fields)
        return out

    def partition_bytes(self) -> int:
        """Bytes allocated on disk to the topic's segment files."""
        return sum(f.stat().st_blocks * 512 for f in (self.workdir / "data").rglob("*.log")
                   if f.parent.name.startswith(TOPIC + "-"))


def bench(args, strom: Strom, *cmd: str) -> dict[str, float]:
    # No dirty pages of the step before left to throttle this one (as
    # beside_kafka.py does).
    os.sync()
    out = subprocess.run([args.bench, "--brokers", strom.bootstrap, *cmd, "--topic", TOPIC,
                          "--partitions", str(PARTITIONS), "--keys", str(args.keys)],
                         check=True, capture_output=True, text=True).stdout.strip()
    print(f"    {out}", flush=True)
    return parse_kv(out)


def run(args, threads: int) -> dict:
    label = "on" if threads else "off"
    print(f"cleaner {label} (log.cleaner.threads={threads})", flush=True)
    strom = Strom(args.strom, threads)
    try:
        configs = {"cleanup.policy": "compact", "segment.bytes": str(SEGMENT_BYTES)}
        code, message = kafka_wire.create_topics("127.0.0.1", strom.port,
                                                 [(TOPIC, PARTITIONS, configs)])[TOPIC]
        assert code == kafka_wire.ERROR_NONE, f"{kafka_wire.error_name(code)} {message}"
        size = str(int(args.gib * GIB))
        # The backlog: what the cleaner (when on) works through while the
        # measured steps run.
        bench(args, strom, "produce", "--bytes", size, "--acks", "1")
        before = len(strom.cleanings())
        produced = bench(args, strom, "produce", "--bytes", size, "--acks", "1")
        during_produce = len(strom.cleanings()) - before
        before = len(strom.cleanings())
        latency = bench(args, strom, "latency", "--rate", "2000", "--seconds", "20")
        cleanings = strom.cleanings()
        during = len(cleanings) - before
        read = sum(c.get("read_bytes", 0) for c in cleanings)
        secs = sum(c["read_bytes"] / (c["mb_per_s"] * 1e6) for c in cleanings if c.get("mb_per_s"))
        removed = sum(c.get("removed", 0) for c in cleanings)
        size = strom.partition_bytes()
        print(f"    cleanings={len(cleanings)} (ended during the measured produce: {during_produce}, "
              f"during the latency run: {during}) "
              f"read_MB={read / 1e6:.0f} cleaning_s={secs:.1f} "
              f"MB/s={read / 1e6 / secs if secs else 0:.1f} records_removed={removed:.0f} "
              f"log_on_disk_MB={size / 1e6:.0f}", flush=True)
        return {"label": label, "produce": produced.get("MB/s"), "p50": latency.get("p50_ms"),
                "p99": latency.get("p99_ms"), "max": latency.get("max_ms"), "cleanings": len(cleanings),
                "during_produce": during_produce, "during": during, "clean_mb_s": read / 1e6 / secs if secs else None,
                "disk_mb": size / 1e6}
    finally:
        strom.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strom", required=True)
    p.add_argument("--bench", required=True)
    p.add_argument("--gib", type=float, default=1.0)
    p.add_argument("--keys", type=int, default=120_000)
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of each, alternating off and on; the table has the medians")
    args = p.parse_args()
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for _ in range(args.repeat):
        for threads in (0, 1):
            r = run(args, threads)
            runs[r["label"]].append(r)
    print()
    print(f"medians of {args.repeat} runs each:")
    print("| cleaner | produce MB/s | latency p50 ms | p99 ms | max ms "
          "| cleanings: all (during produce, during latency) | cleaner MB/s | log on disk MB |")
    print("|---|---|---|---|---|---|---|---|")
    for label, rs in runs.items():
        def med(key):
            values = [r[key] for r in rs if r[key] is not None]
            return statistics.median(values) if values else None
        clean = f"{med('clean_mb_s'):.0f}" if med("clean_mb_s") else "-"
        print(f"| {label} | {med('produce'):.0f} | {med('p50'):.2f} | {med('p99'):.2f} | {med('max'):.2f} "
              f"| {med('cleanings'):.0f} ({med('during_produce'):.0f}, {med('during'):.0f}) | {clean} "
              f"| {med('disk_mb'):.0f} |")

if __name__ == "__main__":
    main()
