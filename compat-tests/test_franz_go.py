"""franz-go's own integration tests (pkg/kgo, the Go client's test suite)
against Strom.

compat-tests/franz-go/install fetches franz-go at the pinned version through
the Go module proxy and pre-compiles its kgo test binary into
``${STROM_CACHE:-~/.cache/strom}/franz-go-<version>/kgo.test``; scripts/test
passes that directory as ``$STROM_FRANZ_GO_DIR``. The tests find their broker
through ``KGO_SEEDS`` (helpers_test.go); here that is one Strom with its
default configuration, ``KGO_TEST_RF=1`` (one node) and ``KGO_TEST_RECORDS``
bounded so the run takes a few minutes instead of hours.

Every test named in compat-tests/franz-go/allow-list.txt must pass (a skip is
a failure); the kgo integration tests left off it are explained, with
evidence, in compat-tests/franz-go/FINDINGS.md. The failure message lists the
tests that did not pass with the tail of their output; the whole output is
``kgo.out`` in the test's tmp dir and Strom's log tail is attached by
conftest.py.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import deque
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ALLOW_LIST = HERE / "franz-go" / "allow-list.txt"
ENV_DIR = "STROM_FRANZ_GO_DIR"
VERSION = "v1.22.3"  # must match compat-tests/franz-go/install

# Records produced and chained through TestGroupETL / TestTxnEtl (six group
# flavours each: range, cooperative-sticky, static, KIP-848). franz-go's
# default is 500000; at 50000 both take ~20-50 s on two shared cores, as at
# 5000 (their time goes to rebalances, not records).
RECORDS = 50000
GO_TIMEOUT_S = 270      # -test.timeout: Go panics with every goroutine's stack first
RUN_TIMEOUT_S = 300     # then we kill it
TAIL_LINES = 40

RESULT = re.compile(r"^--- (PASS|FAIL|SKIP): (\S+) \(")
MARKER = re.compile(r"^=== (?:RUN|CONT|NAME|PAUSE)\s+(\S+)")


def allow_list() -> list[str]:
    names = []
    for line in ALLOW_LIST.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return names


@pytest.fixture(scope="module")
def kgo() -> Path:
    """The pre-compiled kgo test binary."""
    root = os.environ.get(ENV_DIR)
    if not root:
        pytest.fail(f"${ENV_DIR} is not set: run scripts/test, which runs compat-tests/franz-go/install "
                    f"(franz-go {VERSION} through the Go module proxy, its kgo tests pre-compiled) and "
                    f"sets it, or set it yourself to the directory that script prints", pytrace=False)
    binary = Path(root) / "kgo.test"
    src = Path(root) / "src" / "pkg" / "kgo"
    if not os.access(binary, os.X_OK) or not src.is_dir():
        pytest.fail(f"{root} lacks kgo.test or src/pkg/kgo: rerun compat-tests/franz-go/install", pytrace=False)
    marker = Path(root) / "built"
    built = marker.read_text().strip() if marker.is_file() else "(no marker)"
    if built != f"github.com/twmb/franz-go@{VERSION}":
        pytest.fail(f"{root} holds {built}, not franz-go {VERSION}: rerun compat-tests/franz-go/install "
                    f"and point ${ENV_DIR} at the directory it prints", pytrace=False)
    return binary


def kgo_env(seeds: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KGO_")}
    env.update(KGO_SEEDS=seeds, KGO_TEST_RF="1", KGO_TEST_RECORDS=str(RECORDS))
    return env


def listed_tests(binary: Path) -> set[str]:
    out = subprocess.run([str(binary), "-test.list", "."], cwd=binary.parent, capture_output=True,
                         text=True, timeout=60, env=kgo_env("127.0.0.1:1"), check=True).stdout
    return {line.strip() for line in out.splitlines() if line.startswith("Test")}


def parse(output: str) -> tuple[dict[str, str], dict[str, deque]]:
    """Top-level results (name -> PASS/FAIL/SKIP) and each test's last lines.

    Lines are attributed to the test named by the last ``=== RUN/CONT/NAME``
    marker (parallel tests interleave; go test prints a marker whenever the
    speaker changes). The client's own log lines (stderr) land wherever they
    fall, which is close enough for a tail."""
    results: dict[str, str] = {}
    tails: dict[str, deque] = {}
    current = None
    for line in output.splitlines():
        m = MARKER.match(line)
        if m:
            current = m.group(1).split("/", 1)[0]
        m = RESULT.match(line)
        if m:
            results[m.group(2)] = m.group(1)
            current = m.group(2)
        if current is not None:
            tails.setdefault(current, deque(maxlen=TAIL_LINES)).append(line)
    return results, tails


def test_allow_list_names_kgo_tests(kgo):
    names = allow_list()
    assert names, f"{ALLOW_LIST} names no test"
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"{ALLOW_LIST} names these more than once: {dupes}"
    unknown = sorted(set(names) - listed_tests(kgo))
    assert not unknown, (f"{ALLOW_LIST} names tests that franz-go {VERSION}'s kgo.test does not have "
                         f"(-test.list): {unknown}")


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_kgo_integration_tests(kgo, broker, tmp_path):
    names = allow_list()
    pattern = "^(" + "|".join(re.escape(n) for n in names) + ")$"
    out_path = tmp_path / "kgo.out"
    with open(out_path, "wb") as out:
        try:
            proc = subprocess.run(
                [str(kgo), "-test.run", pattern, "-test.v", "-test.count", "1",
                 "-test.timeout", f"{GO_TIMEOUT_S}s"],
                cwd=kgo.parent / "src" / "pkg" / "kgo", env=kgo_env(broker.bootstrap),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    output = out_path.read_text(errors="replace")
    results, tails = parse(output)

    failed = [n for n in names if results.get(n) != "PASS"]
    if failed:
        parts = []
        for n in failed:
            status = results.get(n, "no result")
            tail = "\n".join(tails.get(n, [])) or "(no output)"
            parts.append(f"=== {n}: {status}\n{tail}")
        if code is None or any(n not in results for n in failed):
            whole = output.splitlines()[-TAIL_LINES:]
            parts.append(f"=== the run's last {len(whole)} lines "
                         f"({'killed after ' + str(RUN_TIMEOUT_S) + ' s' if code is None else f'exit {code}'})\n"
                         + "\n".join(whole))
        pytest.fail(f"{len(failed)} of {len(names)} allow-listed kgo tests did not pass: {failed} "
                    f"(whole output: {out_path})\n\n" + "\n\n".join(parts), pytrace=False)
    assert code == 0, (f"every allow-listed kgo test passed, yet kgo.test exited with {code}; "
                       f"its last lines:\n" + "\n".join(output.splitlines()[-TAIL_LINES:]))
