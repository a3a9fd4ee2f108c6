"""Peak resident memory of the broker under the hostile inputs of
compat-tests/test_hostile.py, one fresh broker per probe, on the raw wire.

For each probe: start a release broker (free loopback port, temporary data
directory, ``--log-level warn``), run the probe, check that the broker is
still running and answers ApiVersions, read its peak RSS (VmHWM in
/proc/<pid>/status), stop it (SIGTERM, wait) and remove its directory. One
markdown table row per probe:

  1. baseline: start, one ApiVersions;
  2. CreateTopics with 16,777,216 partitions;
  3. CreateTopics with 2^31-1 partitions, validate_only;
  4. CreateTopics with 100,000 partitions;
  5. Produce of a zstd batch inflating to 8 GiB (8192 records of 1 MiB),
     then ListOffsets by timestamp on that partition;
  6. Fetch with max_bytes (and partition max bytes) 2^31-1 from 8
     connections at once over a partition of ~300 MiB (30 batches of 10 MiB);
  7. 8 connections each sending a ~100 MiB Produce frame (refused) at once,
     then idle: the peak, and VmRSS 5 s after the answers (and when it
     dropped, waiting at most 15 s);
  8. 16 connections at once sending a raw (unframed) snappy batch whose one
     block declares 64 MiB - 1 inflated bytes.

Payloads are built before each broker starts; each probe has 60 s.

    .venv/bin/python bench/hostile_rss.py --strom target/release/strom [--only 1,5]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "compat-tests"))
import kafka_wire as kw  # noqa: E402

MIB = 1 << 20
HOST = "127.0.0.1"
PROBE_TIMEOUT = 60.0
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
INT_MAX = 2**31 - 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.0f}"


class ProbeFailed(Exception):
    """What happened instead of the expected answer."""


class Broker:
    def __init__(self, binary: str):
        self.binary = binary
        self.workdir = Path(tempfile.mkdtemp(prefix="strom-hostile-rss-"))
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.last_peak: int | None = None   # VmHWM, KiB, sampled: known even if the broker dies
        self._sampling = False

    def start(self) -> None:
        log = open(self.workdir / "strom.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--listen", f"{HOST}:{self.port}", "--http-listen", f"{HOST}:0",
             "--data-dir", str(self.workdir / "data"),
             "--log-level", "warn"], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise ProbeFailed(f"broker exited with code {self.proc.returncode} before answering")
            try:
                kw.api_versions(HOST, self.port, timeout=1.0)
                break
            except (OSError, kw.ProtocolError):
                if time.monotonic() > deadline:
                    raise ProbeFailed(f"no ApiVersions answer within {READY_TIMEOUT:.0f} s of starting")
                time.sleep(0.02)
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self._sampling and self.alive():
            peak = status_kib(self.proc.pid, "VmHWM")
            if peak is not None:
                self.last_peak = peak
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def peak(self) -> int | None:
        if self.alive():
            peak = status_kib(self.proc.pid, "VmHWM")
            if peak is not None:
                self.last_peak = peak
        return self.last_peak

    def rss(self) -> int | None:
        return status_kib(self.proc.pid, "VmRSS") if self.alive() else None

    def stop(self) -> str | None:
        """SIGTERM and wait; what went wrong, if anything."""
        self._sampling = False
        problem = None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=STOP_TIMEOUT)
                if code != 0:
                    problem = f"exited with code {code} after SIGTERM"
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problem = f"still running {STOP_TIMEOUT:.0f} s after SIGTERM (killed)"
        shutil.rmtree(self.workdir, ignore_errors=True)
        return problem

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.workdir / "strom.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return " / ".join(text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------------------
# helpers on the raw wire


def name(code: int) -> str:
    return kw.error_name(code)


def create_topic(b: Broker, topic: str, configs: dict[str, str] | None = None) -> None:
    code, message = kw.create_topics(HOST, b.port, [(topic, 1, configs or {})])[topic]
    if code != kw.ERROR_NONE:
        raise ProbeFailed(f"CreateTopics {topic}: {name(code)} {message}")
    deadline = time.monotonic() + 10
    while True:
        code, _, _ = kw.list_offsets(HOST, b.port, topic)
        if code == kw.ERROR_NONE:
            return
        if time.monotonic() > deadline:
            raise ProbeFailed(f"{topic}-0 not answering ListOffsets 10 s after creation: {name(code)}")
        time.sleep(0.05)


def at_once(n: int, work: Callable[[int], object], timeout: float) -> list:
    """Run ``work(slot)`` on ``n`` threads released together; the results
    (an exception's text where one was raised, None where a thread hung)."""
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def run(slot: int) -> None:
        try:
            barrier.wait(timeout)
            results[slot] = work(slot)
        except Exception as e:  # noqa: BLE001 - reported in the row
            results[slot] = f"{type(e).__name__}: {e}"

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return results


def tally(results: list) -> str:
    """``NONE x8`` or ``MESSAGE_TOO_LARGE x6, ConnectionError... x2``."""
    counts: dict[str, int] = {}
    for r in results:
        key = name(r) if isinstance(r, int) else ("no answer (hung)" if r is None else str(r))
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in counts.items())


# ---------------------------------------------------------------------------
# the probes: prepare() builds the payload before the broker starts,
# run(broker, payload) returns the answer column


def run_baseline(b: Broker, _payload) -> str:
    resp = kw.api_versions(HOST, b.port, version=3)
    return f"ApiVersions v3: {name(resp.error_code)}"


def create_topics_probe(partitions: int, validate_only: bool):
    def run(b: Broker, _payload) -> str:
        topic = f"huge-{partitions}"
        started = time.monotonic()
        code, message = kw.create_topics(HOST, b.port, [(topic, partitions, {})],
                                         validate_only=validate_only, timeout=30)[topic]
        elapsed = time.monotonic() - started
        md = kw.metadata(HOST, b.port, [topic], allow_auto_topic_creation=False)
        exists = "" if md[topic].error_code == kw.ERROR_UNKNOWN_TOPIC_OR_PARTITION else "; the topic EXISTS"
        return f"{name(code)} in {elapsed:.2f} s ({message!r}){exists}"
    return run


def prepare_bomb():
    bomb = kw.record_batch(kw.zstd_bomb(8192), 8192, attributes=kw.CODEC_IDS["zstd"])
    return bomb


def run_bomb(b: Broker, bomb: bytes) -> str:
    topic = "bomb"
    create_topic(b, topic)
    base = int(time.time() * 1000) - 60_000
    for i in range(3):  # offsets 0, 1, 2 stamped base, base+10, base+20
        resp = kw.produce(HOST, b.port, topic, kw.simple_batch([b"before"], timestamp=base + 10 * i))
        if (resp.error_code, resp.base_offset) != (kw.ERROR_NONE, i):
            raise ProbeFailed(f"setup produce {i}: {name(resp.error_code)} at {resp.base_offset}")
    started = time.monotonic()
    resp = kw.produce(HOST, b.port, topic, bomb, timeout=45)
    elapsed = time.monotonic() - started
    latest = kw.latest_offset(HOST, b.port, topic)
    stored = "" if latest == 3 else f"; latest offset {latest} (something of the bomb was stored)"
    code, ts, offset = kw.list_offsets(HOST, b.port, topic, timestamp=base + 5)
    want = (kw.ERROR_NONE, base + 10, 1)
    lo = f"{name(code)}, offset {offset}" + ("" if (code, ts, offset) == want else f" (expected offset 1, ts {base + 10})")
    return (f"Produce ({len(bomb) // 1000} KB): {name(resp.error_code)} in {elapsed:.1f} s{stored}; "
            f"ListOffsets by timestamp: {lo}")


def prepare_big_fetch():
    return kw.simple_batch([b"\xa5" * (10 * MIB)])


def run_big_fetch(b: Broker, batch: bytes) -> str:
    topic = "big"
    batches = 30
    create_topic(b, topic, {"max.message.bytes": str(10 * MIB + 4096)})
    with kw.connect(HOST, b.port, timeout=30) as sock:
        for i in range(batches):
            sock.sendall(kw.produce_request(1000 + i, topic, 0, batch))
            resp = kw.parse_produce_response(kw.recv_frame(sock), 1000 + i)[(topic, 0)]
            if (resp.error_code, resp.base_offset) != (kw.ERROR_NONE, i):
                raise ProbeFailed(f"produce {i}: {name(resp.error_code)} at {resp.base_offset}")
    after_produce = b.peak()

    def fetch(slot: int):
        with kw.connect(HOST, b.port, timeout=30) as s:
            s.sendall(kw.fetch_v4_request(7, topic, 0, 0, max_bytes=INT_MAX))
            return kw.read_fetch_v4_summary(s, 7)

    results = at_once(8, fetch, timeout=40)
    summaries = [r for r in results if isinstance(r, kw.FetchSummary)]
    codes = [r.error_code if isinstance(r, kw.FetchSummary) else r for r in results]
    sizes = sorted({r.records_size for r in summaries})
    counts = sorted({r.batches for r in summaries})
    shape = (f"records {', '.join(f'{s / MIB:.1f}' for s in sizes)} MiB, "
             f"{'/'.join(map(str, counts))} batches each") if summaries else "no answers"
    return (f"{tally(codes)}; {shape} (of {batches * len(batch) / MIB:.0f} MiB stored; "
            f"peak after producing, before fetching: {mib(after_produce)} MiB)")


def prepare_large_frames():
    value_size = 100 * MIB - 64 * 1024   # the frame stays under socket.request.max.bytes (100 MiB)
    request = kw.produce_request(77, "frames", 0, kw.simple_batch([b"\x00" * value_size]))
    assert len(request) - 4 <= 104857600
    return request


def run_large_frames(b: Broker, request: bytes) -> str:
    topic = "frames"
    create_topic(b, topic)
    baseline = b.rss()
    socks = [kw.connect(HOST, b.port, timeout=40) for _ in range(8)]
    try:
        def send(slot: int):
            socks[slot].sendall(request)
            return kw.parse_produce_response(kw.recv_frame(socks[slot]), 77)[(topic, 0)].error_code

        results = at_once(8, send, timeout=35)
        answered = time.monotonic()
        peak = b.peak()
        limit = baseline + 200 * 1024   # KiB: 8 retained ~100 MiB buffers would be 800 MiB
        at_5s = dropped_at = last = None
        while time.monotonic() - answered < 15:
            last = b.rss()
            if last is None:
                raise ProbeFailed("the broker died while the connections idled")
            since = time.monotonic() - answered
            if dropped_at is None and last < limit:
                dropped_at = since
            if at_5s is None and since >= 5:
                at_5s = last
            if at_5s is not None and dropped_at is not None:
                break
            time.sleep(0.1)
        still = []
        for i, s in enumerate(socks):
            try:
                still.append(kw.api_versions_on(s, correlation_id=500 + i).error_code)
            except (OSError, kw.ProtocolError) as e:
                still.append(f"{type(e).__name__}")
    finally:
        for s in socks:
            s.close()
    drop = (f"under baseline+200 MiB {dropped_at:.1f} s after the answers" if dropped_at is not None
            else f"still {mib(last)} MiB 15 s after the answers")
    return (f"{tally(results)}; peak {mib(peak)} MiB right after; VmRSS 5 s after the answers: "
            f"{mib(at_5s)} MiB (before: {mib(baseline)} MiB), {drop}; "
            f"the idle connections then answer ApiVersions: {tally(still)}")


def prepare_snappy():
    batch = kw.record_batch(kw.snappy_declaring(64 * MIB - 1, framed=False), 1,
                            attributes=kw.CODEC_IDS["snappy"])
    assert len(batch) < 128
    return batch


def run_snappy(b: Broker, batch: bytes) -> str:
    topic = "snappy-declared"
    create_topic(b, topic)
    before = b.peak()
    socks = [kw.connect(HOST, b.port, timeout=30) for _ in range(16)]
    try:
        def send(slot: int):
            socks[slot].sendall(kw.produce_request(88, topic, 0, batch))
            return kw.parse_produce_response(kw.recv_frame(socks[slot]), 88)[(topic, 0)].error_code
        results = at_once(16, send, timeout=30)
    finally:
        for s in socks:
            s.close()
    after = b.peak()
    grown = None if before is None or after is None else after - before
    return (f"{tally(results)} ({len(batch)}-byte batch); peak grew by "
            f"{mib(grown)} MiB (from {mib(before)} MiB)")


PROBES: list[tuple[str, Callable[[], object] | None, Callable[[Broker, object], str]]] = [
    ("1. baseline: start, one ApiVersions", None, run_baseline),
    ("2. CreateTopics, 16,777,216 partitions", None, create_topics_probe(16_777_216, False)),
    ("3. CreateTopics, 2^31-1 partitions, validate_only", None, create_topics_probe(INT_MAX, True)),
    ("4. CreateTopics, 100,000 partitions", None, create_topics_probe(100_000, False)),
    ("5. zstd batch inflating to 8 GiB, then ListOffsets by timestamp", prepare_bomb, run_bomb),
    ("6. Fetch max_bytes 2^31-1 x 8 connections over ~300 MiB", prepare_big_fetch, run_big_fetch),
    ("7. ~100 MiB Produce frame x 8 connections, then idle", prepare_large_frames, run_large_frames),
    ("8. raw snappy declaring 64 MiB - 1 x 16 connections", prepare_snappy, run_snappy),
]


def run_probe(binary: str, label: str, prepare, run) -> tuple[str, float]:
    payload = prepare() if prepare else None
    b = Broker(binary)
    started = time.monotonic()
    answer: list[str] = []
    try:
        b.start()

        def body() -> None:
            try:
                answer.append(run(b, payload))
            except ProbeFailed as e:
                answer.append(str(e))
            except Exception as e:  # noqa: BLE001 - what happened is the answer
                answer.append(f"{type(e).__name__}: {e}")

        t = threading.Thread(target=body, daemon=True)
        t.start()
        t.join(PROBE_TIMEOUT)
        text = answer[0] if answer else f"no result within {PROBE_TIMEOUT:.0f} s"
        peak = b.peak()
        if not b.alive():
            text += f"; BROKER DIED (exit code {b.proc.returncode}; log: {b.log_tail()})"
        else:
            try:
                code = kw.api_versions(HOST, b.port, timeout=5).error_code
                if code != kw.ERROR_NONE:
                    text += f"; ApiVersions afterwards: {name(code)}"
            except (OSError, kw.ProtocolError) as e:
                text += f"; NO ApiVersions ANSWER afterwards ({type(e).__name__}: {e})"
    except ProbeFailed as e:
        text, peak = str(e), b.peak()
    finally:
        problem = b.stop()
    if problem:
        text += f"; broker {problem}"
    elapsed = time.monotonic() - started
    print(f"| {label} | {text} | {mib(peak)} |", flush=True)
    return label, elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strom", required=True)
    ap.add_argument("--only", help="comma-separated probe numbers (default: all)")
    args = ap.parse_args()
    only = {int(n) for n in args.only.split(",")} if args.only else None
    print(f"$ {shlex.join(sys.orig_argv)}")
    print()
    print("| probe | answer | peak RSS (MiB) |")
    print("|---|---|---:|", flush=True)
    t0 = time.monotonic()
    times = [run_probe(args.strom, label, prepare, run)
             for i, (label, prepare, run) in enumerate(PROBES, 1) if only is None or i in only]
    print()
    print("broker time per probe (start to stop): "
          + ", ".join(f"{label.split('.')[0]}: {t:.1f} s" for label, t in times))
    print(f"total {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    main()
