"""Fixtures that run the real ``strom`` binary.

Binary: ``$STROM_BIN`` if set, else ``<repo>/target/release/strom``.

Each test gets its own broker(s) on a free port with a data dir under the
test's tmp_path. The broker's stdout/stderr go to ``<tmp>/strom.log``; the tail
of that log is attached to the report of any failing test (see
pytest_runtest_makereport below), so error messages here don't repeat it.

    def test_x(broker):                  # default config, no --config file
        broker.bootstrap                 # "127.0.0.1:PORT"

    def test_y(strom_factory):
        b = strom_factory({"auto.create.topics.enable": False})
        b.kill9(); b.restart()

    def test_c(strom_cluster):           # three nodes: one Raft quorum, replicated topics
        c = strom_cluster(3, {"min.insync.replicas": 2})
        c.bootstrap                      # "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
        c.nodes[0].kill9(); c.nodes[0].restart()
        took = c.node(2).terminate()     # SIGTERM: seconds to a clean exit
        c.node(2).launch(); c.node(2).wait_http_ready()   # as a readiness probe waits

    def test_z(broker, kafka_ref):       # the reference Apache Kafka, one per run
        kafka_ref.bootstrap; kafka_ref.run_tool(TOPIC_COMMAND, [...])

``kafka_ref`` runs from the jars in ``$STROM_REFERENCE_KAFKA_LIBS`` (scripts/test
resolves them and sets it); it is started on first use only.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import kafka_wire
import reference_kafka

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


class BrokerStartError(Exception):
    pass


class BrokerHangs(BrokerStartError):
    """Started, but never answered ApiVersions."""


def strom_binary() -> Path:
    env = os.environ.get("STROM_BIN")
    return Path(env) if env else REPO_ROOT / "target" / "release" / "strom"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a TOML value")


def write_toml(path: Path, config: dict) -> None:
    lines = [f"{json.dumps(str(key))} = {toml_value(value)}" for key, value in config.items()]
    path.write_text("\n".join(lines) + "\n")


class StromBroker:
    """One strom process (restartable on the same port, data dir and config)."""

    host = "127.0.0.1"

    def __init__(self, binary: Path, workdir: Path, config: dict | None = None, node_id: int = 1):
        self.binary = binary
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.log_path = workdir / "strom.log"
        self.config = dict(config) if config is not None else None
        self.config_path = workdir / "strom.toml" if config is not None else None
        self.node_id = node_id
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.stopped_on_purpose = False
        workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        if self.config_path is not None:
            write_toml(self.config_path, self.config)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        cmd = [str(self.binary), "--listen", self.bootstrap, "--http-listen", f"{self.host}:0",
               "--data-dir", str(self.data_dir),
               "--node-id", str(self.node_id), "--log-level", "info"]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        return cmd

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- lifecycle ----------------------------------------------------------

    def start(self, timeout: float = READY_TIMEOUT) -> "StromBroker":
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> None:
        """Start the process without waiting for it to serve (the nodes of a
        cluster wait for each other's votes)."""
        if self.is_running():
            raise RuntimeError("strom is already running")
        self.starts += 1
        self.stopped_on_purpose = False
        cmd = self.command()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start #{self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            try:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT)
            except OSError as exc:
                raise BrokerStartError(f"cannot execute {self.binary}: {exc}") from exc

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll until a TCP connect succeeds and ApiVersions v0 gets an answer."""
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise BrokerStartError(f"strom exited with code {code} before becoming ready")
            try:
                kafka_wire.api_versions(self.host, self.port, version=0,
                                        timeout=max(0.1, min(2.0, deadline - time.monotonic())))
                return
            except (OSError, kafka_wire.ProtocolError) as exc:
                last_error = exc
                time.sleep(0.05)
        raise BrokerHangs(
            f"strom (pid {self.pid}) did not answer ApiVersions on {self.bootstrap} within {timeout}s "
            f"(last error: {last_error!r})")

    def http_address(self) -> str:
        """HOST:PORT of the HTTP listener (bound to port 0), from the log
        line of the current start (not an earlier start's)."""
        text = self.log_path.read_text(errors="replace")
        current = text[text.rfind(f"=== start #{self.starts}:"):]
        bound = re.findall(r"HTTP listener bound.*\bhttp=(\S+)", current)
        assert bound, f"no 'HTTP listener bound' line for start #{self.starts} in {self.log_path}"
        return bound[-1]

    def wait_http_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll GET /health/ready until it answers 200, as a readiness probe
        does (the node registered, was unfenced and opened)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise BrokerStartError(f"strom exited with code {code} before /health/ready answered 200")
            try:
                url = f"http://{self.http_address()}/health/ready"
                with urllib.request.urlopen(url, timeout=max(0.1, min(2.0, deadline - time.monotonic()))) as r:
                    if r.status == 200:
                        return
                    last = r.status
            except urllib.error.HTTPError as exc:
                last = f"{exc.code} {exc.read().decode(errors='replace').strip()}"
            except (AssertionError, OSError) as exc:
                last = exc
            time.sleep(0.05)
        raise BrokerHangs(f"strom (pid {self.pid}) /health/ready did not answer 200 within {timeout}s "
                          f"(last: {last!r})")

    def kill9(self) -> None:
        """SIGKILL the process and wait for it to be gone."""
        assert self.is_running(), "kill9() on a broker that is not running"
        self.stopped_on_purpose = True
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> float:
        """SIGTERM, wait, and require a clean exit (code 0); the seconds from
        the signal to the exit."""
        assert self.is_running(), "terminate() on a broker that is not running"
        self.stopped_on_purpose = True
        began = time.monotonic()
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"strom did not exit within {timeout}s of SIGTERM")
        took = time.monotonic() - began
        assert code == 0, f"strom exited with code {code} after SIGTERM"
        return took

    def restart(self, timeout: float = READY_TIMEOUT) -> "StromBroker":
        """Start again with the same port, data dir and config.

        A still-running broker is shut down gracefully first.
        """
        if self.is_running():
            self.terminate()
        return self.start(timeout)

    def crashed(self) -> int | None:
        """Exit code if the process ended without kill9()/terminate(), else None."""
        if self.proc is None or self.stopped_on_purpose:
            return None
        return self.proc.poll()

    def stop(self) -> None:
        """Teardown: SIGKILL whatever is still running."""
        if self.is_running():
            self.stopped_on_purpose = True
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT)

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        tail = text.splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def strom_bin() -> Path:
    path = strom_binary()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"strom binary not found or not executable at {path}; build it with "
                    f"`cargo build --release` or point STROM_BIN at it", pytrace=False)
    return path


# Set once a broker never became ready: every later start fails at once
# instead of waiting READY_TIMEOUT again (a hanging binary would otherwise
# cost 30 s per test).
_first_hang: list[str] = []


@pytest.fixture
def strom_factory(strom_bin, tmp_path, request):
    """Start brokers: ``strom_factory(config: dict | None = None) -> StromBroker``."""
    brokers: list[StromBroker] = []
    request.node._strom_brokers = brokers

    def start(config: dict | None = None) -> StromBroker:
        if _first_hang:
            pytest.fail(f"not starting strom: an earlier start never became ready ({_first_hang[0]})",
                        pytrace=False)
        broker = StromBroker(strom_bin, tmp_path / f"broker{len(brokers)}", config)
        brokers.append(broker)
        try:
            return broker.start()
        except BrokerStartError as exc:
            if isinstance(exc, BrokerHangs):
                _first_hang.append(f"{request.node.nodeid}: {exc}")
            error = str(exc)
        pytest.fail(error, pytrace=False)

    yield start
    stop_all(brokers, lambda b: f"strom on port {b.port}")


def stop_all(brokers: list[StromBroker], name) -> None:
    """Stops the test's brokers, then fails it if one had exited on its
    own meanwhile (``name(broker)`` says which)."""
    crashes = [(b, b.crashed()) for b in brokers]
    for broker in brokers:
        broker.stop()
    for broker, code in crashes:
        if code is not None:
            pytest.fail(f"{name(broker)} exited on its own (code {code}) during the test", pytrace=False)


class StromCluster:
    """Nodes 1..n, each a combined broker and controller voter (Raft quorum
    of all n), on free loopback ports; ``bootstrap`` lists every node."""

    def __init__(self, nodes: list[StromBroker]):
        self.nodes = nodes

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> StromBroker:
        return self.nodes[node_id - 1]

    def running(self) -> list[StromBroker]:
        return [node for node in self.nodes if node.is_running()]


# Faster than the defaults, so that elections and fencing take less of a
# test's time (as in tests/src/cluster.rs).
CLUSTER_TIMINGS = {
    "controller.quorum.election.timeout.ms": 500,
    "controller.quorum.heartbeat.interval.ms": 100,
    "broker.session.timeout.ms": 2000,
    "broker.heartbeat.interval.ms": 300,
}


@pytest.fixture
def strom_cluster(strom_bin, tmp_path, request):
    """Start a cluster: ``strom_cluster(n: int = 3, config: dict | None = None) -> StromCluster``."""
    brokers: list[StromBroker] = []
    request.node._strom_brokers = brokers

    def start(n: int = 3, config: dict | None = None) -> StromCluster:
        controller_ports = [free_port() for _ in range(n)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(controller_ports))
        nodes = []
        for i in range(n):
            node = StromBroker(strom_bin, tmp_path / f"node{i + 1}", {}, node_id=i + 1)
            node.config = {
                "node.id": i + 1,
                "process.roles": "broker,controller",
                "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{controller_ports[i]}",
                "controller.listener.names": "CONTROLLER",
                "controller.quorum.voters": voters,
                **CLUSTER_TIMINGS,
                **(config or {}),
            }
            write_toml(node.config_path, node.config)
            nodes.append(node)
            brokers.append(node)
        try:
            for node in nodes:
                node.launch()
            for node in nodes:
                node.wait_ready()
        except BrokerStartError as exc:
            pytest.fail(str(exc), pytrace=False)
        return StromCluster(nodes)

    yield start
    stop_all(brokers, lambda b: f"strom node {b.node_id}")


@pytest.fixture
def broker(strom_factory) -> StromBroker:
    """A broker with the default configuration (no --config file)."""
    return strom_factory()


@pytest.fixture(scope="session")
def kafka_ref():
    """The reference Apache Kafka (reference_kafka.ReferenceKafka): one
    single-node KRaft broker for the whole run, started when a test first asks
    for it and stopped at the end of the session. Tests must not change it in
    ways that leak into other tests (use their own topic and group names)."""
    libs = os.environ.get(reference_kafka.ENV_LIBS)
    if not libs:
        pytest.fail(f"${reference_kafka.ENV_LIBS} is not set: run scripts/test, which fetches the "
                    f"reference Kafka from Maven Central and sets it, or set it yourself to the libs/ "
                    f"directory that `mvn dependency:copy-dependencies` made from "
                    f"compat-tests/reference/pom.xml", pytrace=False)
    try:
        kafka = reference_kafka.ReferenceKafka(Path(libs))
    except reference_kafka.ReferenceKafkaError as exc:
        pytest.fail(str(exc), pytrace=False)
    # If the session dies without running the teardown below, the JVM still
    # goes: atexit kills it by its pid (and setpriv's parent-death signal
    # covers a SIGKILLed pytest).
    atexit.register(kafka.kill)
    try:
        kafka.start()
    except reference_kafka.ReferenceKafkaError as exc:
        kafka.stop()
        pytest.fail(f"the reference Kafka {kafka.version} did not start: {exc}", pytrace=False)
    except BaseException:
        kafka.stop()
        raise
    try:
        yield kafka
    finally:
        kafka.stop()
        atexit.unregister(kafka.kill)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for broker in getattr(item, "_strom_brokers", []):
            report.sections.append((f"strom log (port {broker.port})", broker.log_tail()))
        kafka = getattr(item, "funcargs", {}).get("kafka_ref")
        if isinstance(kafka, reference_kafka.ReferenceKafka):
            report.sections.append((f"reference Kafka log (port {kafka.port})", kafka.log_tail(40)))
    return report
