"""A real Apache Kafka broker to compare Strom with, and Kafka's own CLI tools.

The jars come from ``compat-tests/reference/pom.xml``, resolved by
``scripts/test`` into ``${STROM_CACHE:-$HOME/.cache/strom}/kafka-VERSION/libs``
and handed to the tests as ``$STROM_REFERENCE_KAFKA_LIBS``. Everything runs
from that one directory with ``java -cp 'libs/*' MAIN_CLASS``, as Kafka's
``bin/kafka-run-class.sh`` does with a distribution's ``libs/``:

    kafka = ReferenceKafka(libs_dir).start()   # format + start, wait for ApiVersions
    kafka.bootstrap                            # "127.0.0.1:PORT"
    kafka.run_tool(TOPIC_COMMAND, ["--bootstrap-server", kafka.bootstrap, "--list"])
    kafka.stop()                               # SIGTERM, then SIGKILL; temp dir removed

The node is a single-node KRaft cluster in combined mode (one JVM that is both
broker and controller), in a fresh temporary directory, on two free loopback
ports. Its settings are Kafka's defaults except for what one node needs; each
is explained in ``server_properties``.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import kafka_wire

ENV_LIBS = "STROM_REFERENCE_KAFKA_LIBS"

# Main classes, as Kafka 4.1's bin/*.sh scripts name them.
KAFKA_SERVER = "kafka.Kafka"                              # kafka-server-start.sh
STORAGE_TOOL = "kafka.tools.StorageTool"                  # kafka-storage.sh
TOPIC_COMMAND = "org.apache.kafka.tools.TopicCommand"     # kafka-topics.sh
CONFIG_COMMAND = "kafka.admin.ConfigCommand"              # kafka-configs.sh
CONSUMER_GROUP_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
GET_OFFSET_SHELL = "org.apache.kafka.tools.GetOffsetShell"
TRANSACTIONS_COMMAND = "org.apache.kafka.tools.TransactionsCommand"
PRODUCER_PERF_TEST = "org.apache.kafka.tools.ProducerPerformance"
CONSUMER_PERF_TEST = "org.apache.kafka.tools.ConsumerPerformance"
VERIFIABLE_PRODUCER = "org.apache.kafka.tools.VerifiableProducer"
VERIFIABLE_CONSUMER = "org.apache.kafka.tools.VerifiableConsumer"
BROKER_API_VERSIONS = "org.apache.kafka.tools.BrokerApiVersionsCommand"
FEATURE_COMMAND = "org.apache.kafka.tools.FeatureCommand"
DELETE_RECORDS_COMMAND = "org.apache.kafka.tools.DeleteRecordsCommand"     # kafka-delete-records.sh
LOG_DIRS_COMMAND = "org.apache.kafka.tools.LogDirsCommand"                 # kafka-log-dirs.sh
LEADER_ELECTION_COMMAND = "org.apache.kafka.tools.LeaderElectionCommand"   # kafka-leader-election.sh
ACL_COMMAND = "org.apache.kafka.tools.AclCommand"                          # kafka-acls.sh (kafka.admin.AclCommand before 4.0)
METADATA_QUORUM_COMMAND = "org.apache.kafka.tools.MetadataQuorumCommand"   # kafka-metadata-quorum.sh

HOST = "127.0.0.1"
FORMAT_TIMEOUT = 120.0
READY_TIMEOUT = 90.0    # format + start; ~6 s on 2 idle cores. Below pytest.ini's 120 s, so this
                        # message, with the log tail, comes first
STOP_TIMEOUT = 30.0
BROKER_HEAP = "1g"      # issue 9: Kafka gets a 1 GiB heap and its defaults otherwise
TOOL_HEAP = "256m"      # what kafka-run-class.sh gives the tools

# The broker logs to <workdir>/kafka.log (INFO, as a distribution's
# config/log4j2.yaml does); nothing goes to the console.
BROKER_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_path}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
"""

# The tools log WARN and above to stderr, as config/tools-log4j2.yaml does,
# so their stdout is only what they print for the operator.
TOOLS_LOG4J2 = """\
status = warn
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = stderr
"""


class ReferenceKafkaError(Exception):
    pass


@dataclass
class ToolResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> "ToolResult":
        """Raise unless the tool exited 0."""
        if self.returncode != 0:
            raise AssertionError(
                f"{' '.join(self.args)} exited with {self.returncode}\n"
                f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}")
        return self


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def random_cluster_id() -> str:
    """What ``kafka-storage.sh random-uuid`` prints: 16 random bytes, URL-safe
    base64 without padding, never starting with '-' (Uuid.randomUuid)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise ReferenceKafkaError("no `java` on PATH (and JAVA_HOME unset): the reference Kafka needs Java 17+")
    return found


def check_libs(libs_dir: Path) -> str:
    """The Kafka version whose jars ``libs_dir`` holds; raises if it holds none."""
    jars = sorted(libs_dir.glob("kafka_2.13-*.jar")) if libs_dir.is_dir() else []
    if not jars:
        raise ReferenceKafkaError(
            f"{libs_dir} holds no kafka_2.13-*.jar: resolve compat-tests/reference/pom.xml into it "
            f"(scripts/test does)")
    return jars[0].name[len("kafka_2.13-"):-len(".jar")]


def _pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL`` (util-linux) makes the kernel SIGKILL the JVM
    when the Python process that started it dies, even by SIGKILL, so no
    Kafka outlives a killed test run. Empty where setpriv is missing."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def run_kafka_tool(libs_dir: Path, main_class: str, args: list[str], *, timeout: float = 120.0,
                   input: str | None = None, heap: str = TOOL_HEAP,
                   log4j2_path: Path | None = None, env: dict | None = None) -> ToolResult:
    """Run one of Kafka's command-line tools from the jars in ``libs_dir``, as
    its bin/*.sh script would, against any bootstrap address (Strom's too).

    Returns the exit code and output; a tool that outlives ``timeout`` is
    killed and reported with exit code -9 (nothing is raised)."""
    cleanup: Path | None = None
    if log4j2_path is None:
        fd, name = tempfile.mkstemp(prefix="strom-tools-log4j2-", suffix=".properties")
        os.close(fd)
        cleanup = log4j2_path = Path(name)
        log4j2_path.write_text(TOOLS_LOG4J2)
    cmd = [java_binary(), f"-Xmx{heap}", "-Djava.awt.headless=true",
           f"-Dlog4j2.configurationFile={log4j2_path}",
           "-cp", str(libs_dir / "*"), main_class, *args]
    try:
        proc = subprocess.Popen(_pdeathsig_prefix() + cmd, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **(env or {})})
        try:
            out, err = proc.communicate(input, timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += f"\n(killed after {timeout}s)"
            code = -signal.SIGKILL
    finally:
        if cleanup is not None:
            cleanup.unlink(missing_ok=True)
    return ToolResult(cmd, code, out, err)


class ReferenceKafka:
    """One single-node KRaft Kafka (broker and controller in one JVM)."""

    host = HOST

    def __init__(self, libs_dir: Path, heap: str = BROKER_HEAP):
        self.libs_dir = Path(libs_dir)
        self.version = check_libs(self.libs_dir)
        self.heap = heap
        self.workdir = Path(tempfile.mkdtemp(prefix=f"strom-ref-kafka-{self.version}-"))
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "kafka.log"            # log4j2's file
        self.stdout_path = self.workdir / "kafka.stdout"       # JVM output (crashes, GC errors)
        self.config_path = self.workdir / "server.properties"
        self.log4j2_path = self.workdir / "log4j2.properties"
        self.tools_log4j2_path = self.workdir / "tools-log4j2.properties"
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.cluster_id = random_cluster_id()
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def server_properties(self) -> dict[str, str]:
        """Kafka's defaults, except what a lone combined node needs."""
        return {
            # KRaft combined mode: this JVM is the broker and the (only)
            # controller, as `bin/kafka-server-start.sh config/server.properties`
            # of a 4.x distribution runs it.
            "process.roles": "broker,controller",
            # Strom's default node id too, so Metadata and DescribeCluster
            # answers can be compared field by field.
            "node.id": "1",
            # A static one-voter quorum (KIP-595): the formatter needs no
            # --standalone / --initial-controllers, and nothing here ever adds
            # or removes a controller (the dynamic quorum of KIP-853, with
            # controller.quorum.bootstrap.servers, would be no different to a
            # client).
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            # Clients speak PLAINTEXT on one free loopback port, the quorum
            # speaks on another; only the client listener is advertised.
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            # Data and the metadata log in the temporary directory.
            "log.dirs": str(self.data_dir),
            # The internal topics default to 3 replicas (and a min ISR of 2),
            # which one broker cannot host: groups and transactions would get
            # COORDINATOR_NOT_AVAILABLE forever. Strom, on one node, creates
            # them with 1 replica.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Left at Kafka's defaults on purpose, because Strom has the same
            # ones and the differential tests compare them:
            # group.initial.rebalance.delay.ms (3000), num.partitions (1),
            # auto.create.topics.enable (true), default.replication.factor (1),
            # min.insync.replicas (1), the offsets/transaction topics'
            # partition counts (50), unstable.api.versions.enable (false, so
            # ApiVersions shows the stable table).
        }

    # -- lifecycle ----------------------------------------------------------

    def _write_files(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            "".join(f"{k}={v}\n" for k, v in self.server_properties().items()))
        self.log4j2_path.write_text(BROKER_LOG4J2.format(log_path=self.log_path))
        self.tools_log4j2_path.write_text(TOOLS_LOG4J2)

    def format(self) -> None:
        """``kafka-storage.sh format -t CLUSTER_ID -c server.properties``."""
        result = run_kafka_tool(self.libs_dir, STORAGE_TOOL,
                                ["format", "-t", self.cluster_id, "-c", str(self.config_path)],
                                timeout=FORMAT_TIMEOUT, log4j2_path=self.tools_log4j2_path)
        if result.returncode != 0:
            raise ReferenceKafkaError(
                f"formatting the reference Kafka's storage failed (exit {result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}")

    def start(self, timeout: float = READY_TIMEOUT) -> "ReferenceKafka":
        if self.proc is not None:
            raise RuntimeError("the reference Kafka was already started")
        began = time.monotonic()
        self._write_files()
        self.format()
        cmd = [java_binary(), f"-Xmx{self.heap}", f"-Xms{self.heap}", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={self.log4j2_path}",
               "-cp", str(self.libs_dir / "*"), KAFKA_SERVER, str(self.config_path)]
        with open(self.stdout_path, "ab") as out:
            try:
                # Own session: a Ctrl-C at the terminal reaches pytest, whose
                # teardown stops Kafka, not the JVM directly.
                self.proc = subprocess.Popen(_pdeathsig_prefix() + cmd, stdin=subprocess.DEVNULL,
                                             stdout=out, stderr=subprocess.STDOUT,
                                             start_new_session=True, cwd=self.workdir)
            except OSError as exc:
                raise ReferenceKafkaError(f"cannot start java: {exc}") from exc
        self.wait_ready(began + timeout)
        self.startup_seconds = time.monotonic() - began
        return self

    def wait_ready(self, deadline: float) -> None:
        """Until the client listener answers ApiVersions: a KRaft broker enables
        request processing on it only once it is registered and unfenced."""
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise ReferenceKafkaError(
                    f"the reference Kafka exited with code {code} before answering ApiVersions\n"
                    f"{self.log_tail()}")
            try:
                kafka_wire.api_versions(self.host, self.port, version=3,
                                        timeout=max(0.1, min(2.0, deadline - time.monotonic())))
                return
            except (OSError, kafka_wire.ProtocolError) as exc:
                last_error = exc
                time.sleep(0.1)
        raise ReferenceKafkaError(
            f"the reference Kafka (pid {self.pid}) did not answer ApiVersions on {self.bootstrap} "
            f"in time (last error: {last_error!r})\n{self.log_tail()}")

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after ``timeout``; then remove
        the temporary directory. Only this object's own JVM is signalled, by
        its pid. Safe to call more than once."""
        if self.is_running():
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        if self.proc is not None and self.proc.returncode is None:
            self.proc.wait(timeout=timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL at once (for atexit), leaving the directory."""
        if self.is_running():
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- tools and logs -------------------------------------------------------

    def run_tool(self, main_class: str, args: list[str], **kwargs) -> ToolResult:
        """Run a Kafka CLI tool class from the same jars (see run_kafka_tool).
        Pass ``--bootstrap-server`` yourself: the tools can target Strom too."""
        kwargs.setdefault("log4j2_path", self.tools_log4j2_path)
        return run_kafka_tool(self.libs_dir, main_class, args, **kwargs)

    def log_tail(self, lines: int = 80) -> str:
        parts = []
        for path in (self.log_path, self.stdout_path):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            tail = text.splitlines()[-lines:]
            if tail:
                parts.append(f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail))
        return "\n".join(parts) or f"(no log in {self.workdir})"


# ---------------------------------------------------------------------------
# docs/compatibility.md: where the differential tests find the differences
# that are known, and with what reason.

COMPATIBILITY_DOC = Path(__file__).resolve().parent.parent / "docs" / "compatibility.md"

# A listed difference's reason starts with one of these.
REASON_PREFIXES = ("not served yet", "deliberately different:", "to fix:")

NOT_ADVERTISED = "—"


def format_range(r: tuple[int, int] | None) -> str:
    return NOT_ADVERTISED if r is None else f"{r[0]}–{r[1]}"


def parse_range(cell: str) -> tuple[int, int] | None:
    """"0–13" (en dash or hyphen) -> (0, 13); "—" -> None."""
    cell = cell.strip()
    if cell in (NOT_ADVERTISED, "-", ""):
        return None
    lo, sep, hi = cell.replace("–", "-").partition("-")
    if not sep:
        raise ValueError(f"not a version range: {cell!r}")
    return int(lo), int(hi)


def doc_table(section: str, path: Path = COMPATIBILITY_DOC) -> tuple[list[str], list[list[str]]]:
    """The first markdown table under the heading ``## {section}``: its header
    cells and its rows (cells stripped; no cell may hold a '|')."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise AssertionError(f"{path} is missing: it lists the known differences from Kafka")
    heading = f"## {section}"
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == heading)
    except StopIteration:
        raise AssertionError(f"{path} has no section {heading!r}") from None
    table: list[list[str]] = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.lstrip().startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif table:
            break
    if len(table) < 2:
        raise AssertionError(f"{path}, section {heading!r}: no table")
    header, rows = table[0], table[2:]  # table[1] is the |---| line
    for row in rows:
        if len(row) != len(header):
            raise AssertionError(f"{path}, section {heading!r}: row {row} has {len(row)} cells, "
                                 f"the header {len(header)}")
    return header, rows


def check_reason(reason: str) -> str | None:
    """An error message if ``reason`` does not start with a known prefix."""
    if not reason.startswith(REASON_PREFIXES):
        return f"reason {reason!r} must start with one of {REASON_PREFIXES}"
    return None


def differences_by_id(section: str, path: Path = COMPATIBILITY_DOC) -> dict[str, list[str]]:
    """The rows of a table whose first column is ``id`` (section "Other
    differences", "Produce validation", ...), keyed by id (backticks stripped)."""
    header, rows = doc_table(section, path)
    if header[0] != "id":
        raise AssertionError(f"{path}, section {section!r}: the first column must be 'id', not {header[0]!r}")
    return {row[0].strip("`"): row for row in rows}


def check_case_table(section: str, kafka_version: str, case_ids: list[str], cases_from: str) -> None:
    """A differential test's table of cases (``id | case | Kafka V | Strom |
    reason``): the header, each id once and naming one of ``case_ids``
    (which ``cases_from`` names in the message), each reason well formed."""
    header, rows = doc_table(section)
    expected = ["id", "case", f"Kafka {kafka_version}", "Strom", "reason"]
    assert header == expected, f"docs/compatibility.md, {section}: header {header}, expected {expected}"
    ids = [row[0].strip("`") for row in rows]
    assert len(ids) == len(set(ids)), f"{section}: an id is listed twice: {ids}"
    unknown = sorted(set(ids) - set(case_ids))
    assert not unknown, f"{section}: rows {unknown} name no case of {cases_from}"
    errors = [f"{row[0]}: {problem}" for row in rows if (problem := check_reason(row[-1])) is not None]
    assert not errors, "\n".join(errors)


def check_case(section: str, case_id: str, what: str, kafka: str, strom: str, detail: str = "") -> None:
    """One case of a differential test against its table: the same answer
    on both brokers and no row, or the row with both answers as observed."""
    row = differences_by_id(section).get(case_id)
    if kafka == strom:
        assert row is None, (
            f"{case_id}: both answer {kafka!r} now: remove its row from docs/compatibility.md, {section} {detail}")
        return
    assert row is not None, (
        f"{case_id} differs and is not listed in docs/compatibility.md, {section}; add\n"
        f"| `{case_id}` | {what} | {kafka} | {strom} | (reason) |\n{detail}")
    _, _, kafka_cell, strom_cell, reason = row
    assert (kafka_cell, strom_cell) == (kafka, strom), (
        f"{case_id}: listed as Kafka {kafka_cell!r} / Strom {strom_cell!r}, observed Kafka {kafka!r} / "
        f"Strom {strom!r} {detail}")
    assert check_reason(reason) is None, check_reason(reason)
