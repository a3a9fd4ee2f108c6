"""What a Prometheus scrape of ``/metrics`` costs as partitions grow.

For each count, a fresh release Strom gets that many partitions (topics
of 1,000 partitions each, no records), then ``/metrics`` is fetched five
times: the median, fastest and slowest time, and the bytes of one scrape.

    python3 bench/scrape_cost.py --strom target/release/strom [--partitions 1000 10000]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "compat-tests"))
import kafka_wire  # noqa: E402
from beside_kafka import Strom  # noqa: E402

PER_TOPIC = 1000


def measure(binary: str, total: int) -> str:
    strom = Strom(binary, log_level="info", prefix="strom-scrape-").start()
    try:
        topics = [(f"scale-{i}", min(PER_TOPIC, total - i * PER_TOPIC), {})
                  for i in range((total + PER_TOPIC - 1) // PER_TOPIC)]
        answers = kafka_wire.create_topics("127.0.0.1", strom.port, topics, timeout=600)
        assert all(code == 0 for code, _ in answers.values()), answers
        http = re.search(r"HTTP listener bound.*\bhttp=(\S+)", strom.log.read_text()).group(1)
        times, size = [], 0
        for _ in range(5):
            started = time.monotonic()
            size = len(urllib.request.urlopen(f"http://{http}/metrics", timeout=120).read())
            times.append(time.monotonic() - started)
        times.sort()
        return (f"partitions={total} scrape_ms_median={times[2] * 1000:.1f} min={times[0] * 1000:.1f} "
                f"max={times[-1] * 1000:.1f} bytes={size}")
    finally:
        strom.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strom", required=True)
    p.add_argument("--partitions", type=int, nargs="+", default=[1000, 10000])
    args = p.parse_args()
    for total in args.partitions:
        print(measure(args.strom, total), flush=True)


if __name__ == "__main__":
    main()
