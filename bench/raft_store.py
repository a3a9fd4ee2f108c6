"""What one durable metadata-log append costs: the shape of Strom's Raft log
store (quorum/store.rs: each append is one write of framed entries to an
append-only file, then fdatasync) beside RocksDB (the design card's first
choice for the Raft log: a put with sync=True, which writes its WAL and
syncs it), same entries, same disk, one after the other.

    python3 -m venv /tmp/rb && /tmp/rb/bin/pip install rocksdict==0.3.29
    /tmp/rb/bin/python bench/raft_store.py [--entries 2000] [--dir DIR]

(rocksdict ships RocksDB built into its wheel: nothing to compile. It is
kept out of the test venv: no test needs it.)

Prints per-append latency (p50, p99, microseconds) and appends per second
for entry sizes that span small proposals (a broker heartbeat's fencing
record) to large ones (a CreateTopics of many partitions).
"""

import argparse
import os
import shutil
import statistics
import struct
import tempfile
import time
import zlib


def frame(payload: bytes) -> bytes:
    # Strom's framing: 4-byte length, 4-byte checksum, payload (CRC32 here:
    # the checksum's cost is not what is measured).
    return struct.pack(">II", len(payload), zlib.crc32(payload)) + payload


def append_only(path: str, payloads):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    times = []
    try:
        for p in payloads:
            start = time.perf_counter_ns()
            os.write(fd, frame(p))
            os.fdatasync(fd)
            times.append(time.perf_counter_ns() - start)
    finally:
        os.close(fd)
    return times


def rocksdb(path: str, payloads):
    from rocksdict import Options, Rdict, WriteOptions

    options = Options()
    options.create_if_missing(True)
    db = Rdict(path, options)
    sync = WriteOptions()
    sync.sync = True
    db.set_write_options(sync)
    times = []
    try:
        for i, p in enumerate(payloads):
            key = struct.pack(">Q", i)
            start = time.perf_counter_ns()
            db[key] = p
            times.append(time.perf_counter_ns() - start)
    finally:
        db.close()
    return times


def summary(times):
    us = sorted(t / 1000 for t in times)
    p99 = us[min(len(us) - 1, int(len(us) * 0.99))]
    return statistics.median(us), p99, len(us) / (sum(us) / 1e6)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=2000)
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary directory under the current one, on its disk)")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="raft-store-bench-", dir=args.dir or ".")
    print(f"{args.entries} appends per run, in {base}")
    print(f"{'entry':>8} {'store':<28} {'p50 us':>9} {'p99 us':>9} {'appends/s':>10}")
    try:
        for size in (256, 4096, 65536):
            payloads = [os.urandom(size) for _ in range(args.entries)]
            for name, run in (("append-only file + fdatasync", append_only), ("RocksDB put, sync=True", rocksdb)):
                target = os.path.join(base, f"{name.split()[0]}-{size}")
                times = run(target, payloads)
                p50, p99, rate = summary(times)
                print(f"{size:>8} {name:<28} {p50:>9.0f} {p99:>9.0f} {rate:>10.0f}")
                shutil.rmtree(target, ignore_errors=True) if os.path.isdir(target) else os.remove(target)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
