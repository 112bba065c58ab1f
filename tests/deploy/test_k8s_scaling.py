"""The manifests as kustomize renders them: valid Kubernetes objects, and a swarm that scales.

``kubectl kustomize`` renders each kustomization the way ``kubectl apply -k`` would; every object
whose kind the Kubernetes API defines is validated against that version's JSON schema
(``kubernetes-validate``, strict: unknown fields fail). KEDA's and cert-manager's kinds are CRDs
outside those schemas, so they get the structural checks below instead. The rest is semantics:
a PodDisruptionBudget, probes and resources for every workload, NetworkPolicies that allow what
deploy/README.md says and nothing else, and the scaling wiring (headless Services, dns:///
targets, HPAs, the KEDA query on the run queue). Nothing talks to a cluster.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed; the manifest checks need it")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed (the dev extra pins it)"
)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (for `kubectl kustomize`) is not installed")

# hostUsers (the assessor's pod user namespace) is on by default from 1.33: the oldest version we support.
K8S_VERSION = "1.33.0"
# Every kustomization in k8s/: the base (`kubectl apply -k k8s/`) and the ones applied on their own.
KUSTOMIZATIONS = ("", "secrets-templates", "cert-manager", "keda", "postgres")
# Overlays of the base, applied instead of it (outside k8s/: kustomize refuses an overlay inside its base).
OVERLAYS = ("deploy/k8s-overlays/vllm",)
CRD_KINDS = {"ScaledObject": "keda.sh/v1alpha1", "Certificate": "cert-manager.io/v1", "Issuer": "cert-manager.io/v1"}
NAME = "app.kubernetes.io/name"
STAGES = {"collator": 50052, "assessor": 50053, "refiner": 50054}
METRICS_PORT = 9464

Manifest = dict[str, Any]


def _render(directory: Path) -> list[Manifest]:
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {directory} failed: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


RENDERED: dict[str, list[Manifest]] = {d: _render(K8S / d) for d in KUSTOMIZATIONS} if KUBECTL else {}
RENDERED_OVERLAYS: dict[str, list[Manifest]] = {d: _render(ROOT / d) for d in OVERLAYS} if KUBECTL else {}
BASE = RENDERED.get("", [])
EVERYTHING = [doc for docs in RENDERED.values() for doc in docs]


def _of_kind(kind: str, docs: Iterable[Manifest] = EVERYTHING) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def _get(docs: Iterable[Manifest], kind: str, name: str) -> Manifest:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _workloads() -> list[Manifest]:
    return [d for d in EVERYTHING if d["kind"] in ("Deployment", "StatefulSet")]


def _pod(workload: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def _pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions In/NotIn/Exists/DoesNotExist) on ``labels``."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


# ------------------------------------------------------------------------------------------ schemas


@pytest.mark.parametrize("directory", [*KUSTOMIZATIONS, *OVERLAYS])
def test_every_object_is_valid_against_the_kubernetes_schema(directory: str) -> None:
    docs = RENDERED[directory] if directory in RENDERED else RENDERED_OVERLAYS[directory]
    assert docs, f"k8s/{directory} renders nothing"
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(
                f"k8s/{directory}: {doc['kind']} {doc['metadata']['name']}: {error.message} at {list(error.path)}"
            ) from None


def test_the_validator_rejects_a_field_kubernetes_does_not_have() -> None:
    """Strict validation is on: a typo (``replica``) fails instead of being dropped by the API."""
    deployment = json.loads(json.dumps(_get(BASE, "Deployment", "orchestrator")))
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_only_known_crds_lack_a_schema() -> None:
    for doc in EVERYTHING:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert CRD_KINDS.get(doc["kind"]) == doc["apiVersion"], f"no schema for {doc['apiVersion']} {doc['kind']}"


def test_crd_objects_have_the_structure_their_operators_need() -> None:
    """Minimal checks for the kinds kubernetes-validate has no schema for (not a full CRD schema)."""
    for doc in EVERYTHING:
        if doc["kind"] not in CRD_KINDS:
            continue
        assert doc["apiVersion"] == CRD_KINDS[doc["kind"]]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
        assert doc["metadata"]["namespace"] == "swarm"
        spec = doc["spec"]
        if doc["kind"] == "ScaledObject":
            assert set(spec) <= {
                "scaleTargetRef",
                "minReplicaCount",
                "maxReplicaCount",
                "pollingInterval",
                "cooldownPeriod",
                "idleReplicaCount",
                "advanced",
                "triggers",
                "fallback",
            }
            assert spec["scaleTargetRef"]["name"] and spec["triggers"]
            for trigger in spec["triggers"]:
                assert isinstance(trigger["type"], str)
                assert all(isinstance(v, str) for v in trigger["metadata"].values()), "KEDA metadata values are strings"
            behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
            if behavior is not None:  # the HPA's own behavior type: validate it with the HPA schema
                hpa = {
                    "apiVersion": "autoscaling/v2",
                    "kind": "HorizontalPodAutoscaler",
                    "metadata": {"name": "check"},
                    "spec": {
                        "scaleTargetRef": {"kind": "Deployment", "name": "x"},
                        "maxReplicas": 2,
                        "behavior": behavior,
                    },
                }
                kubernetes_validate.validate(hpa, K8S_VERSION, strict=True)
        elif doc["kind"] == "Certificate":
            assert spec["secretName"] and spec["issuerRef"]["name"]
            assert spec.get("isCA") or spec["dnsNames"]
        else:
            assert ("selfSigned" in spec) != ("ca" in spec), "an Issuer is self-signed or a CA"


# ------------------------------------------------------------------------------- workload hygiene


@pytest.mark.parametrize("name", [w["metadata"]["name"] for w in _workloads()])
def test_every_workload_has_probes_resources_and_exactly_one_pdb(name: str) -> None:
    (workload,) = [w for w in _workloads() if w["metadata"]["name"] == name]
    for container in _pod(workload)["containers"]:
        assert "readinessProbe" in container and "livenessProbe" in container, f"{name}/{container['name']}: probes"
    for container in [*_pod(workload)["containers"], *_pod(workload).get("initContainers", [])]:
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
    labels = _pod_labels(workload)
    pdbs = [p for p in _of_kind("PodDisruptionBudget") if _selects(p["spec"]["selector"], labels)]
    assert len(pdbs) == 1, f"{name}: {len(pdbs)} PodDisruptionBudgets select its pods"
    # maxUnavailable, so a one-replica workload never blocks a node drain.
    assert pdbs[0]["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdbs[0]["spec"]


def test_every_pdb_selects_exactly_one_workload() -> None:
    for pdb in _of_kind("PodDisruptionBudget"):
        matches = [w for w in _workloads() if _selects(pdb["spec"]["selector"], _pod_labels(w))]
        assert len(matches) == 1, f"PDB {pdb['metadata']['name']} selects {len(matches)} workloads"


# ---------------------------------------------------------------------------------------- scaling


def _scalers() -> dict[str, Manifest]:
    """Deployment name -> the HPA or ScaledObject that sizes it."""
    scalers: dict[str, Manifest] = {}
    for doc in [*_of_kind("HorizontalPodAutoscaler"), *_of_kind("ScaledObject")]:
        target = doc["spec"]["scaleTargetRef"]
        assert target.get("kind", "Deployment") == "Deployment"
        assert target["name"] not in scalers, f"{target['name']} has two autoscalers (KEDA makes its own HPA)"
        scalers[target["name"]] = doc
    return scalers


def test_autoscaled_deployments_leave_replicas_to_their_autoscaler() -> None:
    scalers = _scalers()
    deployments = {d["metadata"]["name"]: d for d in _of_kind("Deployment")}
    assert set(scalers) == {"orchestrator", "collator", "assessor", "refiner", "qwen"}
    for name in scalers:
        assert name in deployments, f"an autoscaler targets {name}, which is not a Deployment here"
        assert "replicas" not in deployments[name]["spec"], f"{name}: a fixed replicas would reset the autoscaler"


@pytest.mark.parametrize("name", ["orchestrator", *STAGES])
def test_orchestrator_and_stages_scale_on_cpu_from_two_replicas(name: str) -> None:
    hpa = _get(BASE, "HorizontalPodAutoscaler", name)["spec"]
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    deployment = _get(BASE, "Deployment", name)
    (container,) = _pod(deployment)["containers"]
    assert "cpu" in container["resources"]["requests"], "a CPU utilization target is a share of the request"
    scale_down = hpa["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 300, "a replica that leaves interrupts what it drives"


def test_qwen_scales_on_the_run_queue_with_keda() -> None:
    scaled = _get(RENDERED["keda"], "ScaledObject", "qwen")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "qwen"
    assert 1 <= scaled["minReplicaCount"] < scaled["maxReplicaCount"]
    assert scaled["cooldownPeriod"] > 0
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    # Each replica reports the one shared queue's depth: max over replicas, a sum would multiply it.
    assert re.fullmatch(r"max\(swarm_queue_waiting_runs(\{[^}]*\})?\)", query), query
    assert float(trigger["metadata"]["threshold"]) > 0
    assert re.match(r"https?://", trigger["metadata"]["serverAddress"])


def test_stage_targets_resolve_every_replica_of_a_headless_service() -> None:
    """round_robin (stages.py) spreads calls over the addresses the target resolves to: a dns:///
    target of a headless Service gives it one per ready pod; a ClusterIP would give it one VIP."""
    from swarm_orchestrator.stages import STAGE_CHANNEL_OPTIONS

    assert ("grpc.lb_policy_name", "round_robin") in STAGE_CHANNEL_OPTIONS
    env = _get(BASE, "ConfigMap", "swarm-env")["data"]
    for stage, port in STAGES.items():
        assert env[f"SWARM_{stage.upper()}_TARGET"] == f"dns:///{stage}:{port}"
        service = _get(BASE, "Service", stage)["spec"]
        assert service["clusterIP"] == "None"
        assert not service.get("publishNotReadyAddresses"), "a draining pod must leave the DNS answer"


def test_gateway_balances_over_every_orchestrator_replica() -> None:
    """Envoy's STRICT_DNS cluster makes each address a host; the headless Service gives one per
    replica, and /healthz stays 200 while any one of them is healthy (not all of them)."""
    assert _get(BASE, "Service", "orchestrator")["spec"]["clusterIP"] == "None"
    envoy = yaml.safe_load(_get(BASE, "ConfigMap", "swarm-gateway")["data"]["envoy.yaml"])
    (cluster,) = envoy["static_resources"]["clusters"]
    assert cluster["type"] == "STRICT_DNS" and cluster.get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN"
    assert cluster["health_checks"], "each replica is health-checked on its own"
    (listener,) = envoy["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (manager,) = chain["filters"]
    health = next(f for f in manager["typed_config"]["http_filters"] if f["name"] == "envoy.filters.http.health_check")
    minimum = health["typed_config"]["cluster_min_healthy_percentages"]["orchestrator"]["value"]
    assert 0 < minimum <= 50, "with 100 % the gateway goes unready whenever one orchestrator drains"


def test_every_service_deployment_serves_metrics_where_prometheus_scrapes() -> None:
    for name in ("orchestrator", *STAGES):
        template = _get(BASE, "Deployment", name)["spec"]["template"]
        (container,) = template["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["SWARM_METRICS_ADDR"] == f"0.0.0.0:{METRICS_PORT}"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == METRICS_PORT
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(METRICS_PORT)


# -------------------------------------------------------------------------------------------- Qwen


def _args(container: Mapping[str, Any]) -> dict[str, str]:
    """``--flag value`` pairs of a container's args (a flag without a value maps to "")."""
    args = [str(a) for a in container["args"]]
    flags: dict[str, str] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            following = args[i + 1] if i + 1 < len(args) else "--"
            flags[arg] = "" if following.startswith("--") else following
    return flags


def test_the_qwen_instance_entry_matches_its_server() -> None:
    deployment = _get(BASE, "Deployment", "qwen")
    (server,) = _pod(deployment)["containers"]
    args = _args(server)
    instances = json.loads(_get(BASE, "ConfigMap", "swarm-instances")["data"]["instances.json"])
    (entry,) = [i for i in instances if i["base_url"].startswith("http://qwen:")]
    assert entry["slots"] == int(args["--parallel"]), "slots are the requests one server takes at once"
    assert entry["model"] == args["--alias"]
    service = _get(BASE, "Service", "qwen")["spec"]
    (port,) = service["ports"]
    assert (
        entry["base_url"] == f"http://qwen:{port['port']}/v1"
        and int(args["--port"]) == server["ports"][0]["containerPort"]
    )
    assert "--metrics" in args
    ctx_per_slot = int(args["--ctx-size"]) // int(args["--parallel"])
    assert ctx_per_slot >= 4096, "the context is shared by the slots: each needs room for a task and its answer"
    assert server["image"].startswith("ghcr.io/ggml-org/llama.cpp:server-b"), "a pinned llama.cpp build"


def test_the_qwen_model_is_the_verified_gguf_of_make_model() -> None:
    from swarm_cli.models import QWEN_15B

    deployment = _get(BASE, "Deployment", "qwen")
    (fetch,) = _pod(deployment)["initContainers"]
    env = {e["name"]: e["value"] for e in fetch["env"]}
    assert env["MODEL_FILE"] == QWEN_15B.filename and env["MODEL_URL"].endswith("/" + QWEN_15B.filename)
    assert env["MODEL_SHA256"] == QWEN_15B.sha256
    assert "sha256sum -c" in fetch["args"][0], "a download that does not match is refused"
    (server,) = _pod(deployment)["containers"]
    assert _args(server)["--model"] == f"/models/{QWEN_15B.filename}"
    mounts = {m["name"]: m for m in server["volumeMounts"]}
    assert mounts["models"]["mountPath"] == "/models" and mounts["models"]["readOnly"] is True


def test_the_vllm_overlay_serves_the_same_instance_on_a_gpu() -> None:
    """The GPU overlay swaps the server, not the contract: same Service, model name and slots."""
    docs = RENDERED_OVERLAYS["deploy/k8s-overlays/vllm"]
    deployment = _get(docs, "Deployment", "qwen")
    pod = _pod(deployment)
    assert "initContainers" not in pod, "vLLM fetches its model itself"
    (server,) = pod["containers"]
    assert server["image"].startswith("vllm/vllm-openai:v"), "a pinned vLLM release"
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    args = _args(server)
    instances = json.loads(_get(docs, "ConfigMap", "swarm-instances")["data"]["instances.json"])
    (entry,) = [i for i in instances if i["base_url"].startswith("http://qwen:")]
    assert entry["slots"] == int(args["--max-num-seqs"]) and entry["model"] == args["--served-model-name"]
    assert int(args["--port"]) == 8080 and server["ports"][0]["name"] == "http", "the Service's target port"
    for kind, name in (("Service", "qwen"), ("PodDisruptionBudget", "qwen"), ("NetworkPolicy", "allow-qwen")):
        assert _get(docs, kind, name) == _get(BASE, kind, name)
    mounts = {m["mountPath"] for m in server["volumeMounts"]}
    volumes = {v["name"] for v in pod["volumes"]}
    assert {m["name"] for m in server["volumeMounts"]} <= volumes and "/dev/shm" in mounts


# -------------------------------------------------------------------------------- Secrets, Postgres


def _referenced_secrets(docs: Iterable[Manifest]) -> set[str]:
    names: set[str] = set()
    for workload in (d for d in docs if d["kind"] in ("Deployment", "StatefulSet")):
        pod = _pod(workload)
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                names.add(volume["secret"]["secretName"])
        for container in [*pod["containers"], *pod.get("initContainers", [])]:
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    names.add(source["secretRef"]["name"])
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    names.add(ref["name"])
    return names


def test_kubectl_apply_k_never_overwrites_a_secret() -> None:
    for directory in ("", "keda", "postgres"):
        assert not _of_kind("Secret", RENDERED[directory]), f"k8s/{directory} would reset a Secret on every apply"
    templates = {s["metadata"]["name"] for s in _of_kind("Secret", RENDERED["secrets-templates"])}
    issued = {c["spec"]["secretName"] for c in _of_kind("Certificate", RENDERED["cert-manager"])}
    for name in _referenced_secrets([*BASE, *RENDERED["postgres"]]):
        assert name in templates or name in issued, f"Secret {name} is neither a template nor issued by cert-manager"


def test_the_database_url_names_the_dev_postgres_service() -> None:
    url = _get(RENDERED["secrets-templates"], "Secret", "swarm-database")["stringData"]["SWARM_DATABASE_URL"]
    match = re.fullmatch(r"postgresql\+asyncpg://(\w+):[^@]+@([\w.-]+):(\d+)/(\w+)", url)
    assert match, url
    user, host, port, database = match.groups()
    postgres = RENDERED["postgres"]
    service = _get(postgres, "Service", "postgres")
    assert host == f"{service['metadata']['name']}.swarm.svc.cluster.local"
    assert int(port) == service["spec"]["ports"][0]["port"]
    (container,) = _pod(_get(postgres, "StatefulSet", "postgres"))["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert (env["POSTGRES_USER"]["value"], env["POSTGRES_DB"]["value"]) == (user, database)
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "swarm-postgres"


# --------------------------------------------------------------------------------- NetworkPolicies


@dataclass(frozen=True)
class Peer:
    """A source or destination: a pod (its labels, its namespace) or an address outside the cluster."""

    name: str
    labels: Mapping[str, str]
    namespace: str = "swarm"

    @property
    def external(self) -> bool:
        return self.namespace == ""


def _ns_labels(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}


def _peer_matches(rule_peers: list[dict[str, Any]] | None, peer: Peer) -> bool:
    if rule_peers is None:  # no from/to: every peer
        return True
    for item in rule_peers:
        if "ipBlock" in item:
            # ipBlock is for addresses outside the cluster; whether it matches pod IPs is up to the
            # CNI, so these checks never count on it for a pod.
            if peer.external:
                return True
            continue
        if peer.external:
            continue
        if "namespaceSelector" in item:
            ns_ok = _selects(item["namespaceSelector"], _ns_labels(peer.namespace))
        else:
            ns_ok = peer.namespace == "swarm"
        if ns_ok and _selects(item.get("podSelector", {}), peer.labels):
            return True
    return False


def _port_matches(rule_ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if rule_ports is None:
        return True
    return any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in rule_ports)


def _allowed(direction: str, subject: Peer, other: Peer, port: int, protocol: str = "TCP") -> bool:
    """Whether ``subject``'s policies let traffic in from (or out to) ``other`` on ``port``."""
    if subject.external or subject.namespace != "swarm":
        return True  # not ours to police
    kind, peers_key = ("Ingress", "from") if direction == "in" else ("Egress", "to")
    rules_key = "ingress" if direction == "in" else "egress"
    policies = [
        p["spec"]
        for p in _of_kind("NetworkPolicy")
        if _selects(p["spec"]["podSelector"], subject.labels) and kind in p["spec"]["policyTypes"]
    ]
    if not policies:
        return True
    return any(
        _peer_matches(rule.get(peers_key), other) and _port_matches(rule.get("ports"), port, protocol)
        for spec in policies
        for rule in spec.get(rules_key, [])
    )


def _reaches(source: Peer, destination: Peer, port: int, protocol: str = "TCP") -> bool:
    return _allowed("out", source, destination, port, protocol) and _allowed("in", destination, source, port, protocol)


PODS = {w["metadata"]["name"]: Peer(w["metadata"]["name"], _pod_labels(w)) for w in _workloads()}
EXTERNAL = Peer("internet", {}, namespace="")
PROMETHEUS = Peer("prometheus", {"app.kubernetes.io/name": "prometheus"}, namespace="monitoring")
ELSEWHERE = Peer("another-namespace", {NAME: "swarm-orchestrator"}, namespace="default")
KUBE_DNS = Peer("kube-dns", {"k8s-app": "kube-dns"}, namespace="kube-system")


def _container_ports(name: str) -> set[int]:
    (workload,) = [w for w in _workloads() if w["metadata"]["name"] == name]
    return {int(p["containerPort"]) for c in _pod(workload)["containers"] for p in c.get("ports", [])}


# Every connection between the swarm's pods that is allowed; any other pod-to-pod one is denied.
EXPECTED = {
    ("gateway", "orchestrator", 50051),
    ("orchestrator", "collator", 50052),
    ("orchestrator", "assessor", 50053),
    ("orchestrator", "refiner", 50054),
    ("orchestrator", "qwen", 8080),
    ("orchestrator", "postgres", 5432),
    ("refiner", "qwen", 8080),
    *((name, "jaeger", 4317) for name in ("orchestrator", "collator", "assessor", "refiner", "gateway", "qwen")),
    *((name, "jaeger", 4317) for name in ("jaeger", "postgres")),
}


def test_the_policies_start_from_deny_all() -> None:
    deny = _get(BASE, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny


def test_pod_to_pod_traffic_is_exactly_what_the_design_allows() -> None:
    allowed = {
        (src, dst, port)
        for src, source in PODS.items()
        for dst, destination in PODS.items()
        for port in _container_ports(dst)
        if _reaches(source, destination, port)
    }
    assert allowed == EXPECTED, f"unexpected: {sorted(allowed - EXPECTED)}; missing: {sorted(EXPECTED - allowed)}"


@pytest.mark.parametrize("stage", list(STAGES))
def test_only_the_orchestrator_reaches_a_stage(stage: str) -> None:
    # The stage's own ingress decides, whatever the other pods' egress says (defence in depth).
    admitted = {src for src, source in PODS.items() if _allowed("in", PODS[stage], source, STAGES[stage])}
    assert admitted == {"orchestrator"}
    for outsider in (EXTERNAL, ELSEWHERE, PROMETHEUS):
        assert not _allowed("in", PODS[stage], outsider, STAGES[stage]), f"{outsider.name} reaches {stage}"


def test_only_the_gateway_reaches_the_orchestrator() -> None:
    orchestrator = PODS["orchestrator"]
    for peer in (*PODS.values(), EXTERNAL, ELSEWHERE, PROMETHEUS):
        assert _allowed("in", orchestrator, peer, 50051) == (peer.name == "gateway"), peer.name
    assert _allowed("in", PODS["gateway"], EXTERNAL, 8080), "the Worker (through an ingress) reaches the gateway"


def test_the_assessor_reaches_nothing_but_dns_and_its_trace_sink() -> None:
    assessor = PODS["assessor"]
    assert _allowed("out", assessor, KUBE_DNS, 53, "UDP")
    for port in (80, 443, 5432, 8080, 4318):
        assert not _allowed("out", assessor, EXTERNAL, port), f"the assessor reaches the internet on {port}"
    reached = {
        (dst, port) for dst, peer in PODS.items() for port in _container_ports(dst) if _reaches(assessor, peer, port)
    }
    assert reached == {("jaeger", 4317)}


def test_the_orchestrator_reaches_its_dependencies() -> None:
    orchestrator = PODS["orchestrator"]
    for port in (443, 5432):  # hosted LLM APIs; a managed PostgreSQL
        assert _allowed("out", orchestrator, EXTERNAL, port)
    for name in ("collator", "assessor", "refiner", "gateway", "jaeger", "qwen", "postgres"):
        assert not _allowed("out", PODS[name], EXTERNAL, 5432), f"{name} reaches an outside database"
    for name in ("collator", "assessor", "gateway", "jaeger", "postgres"):
        assert not _allowed("out", PODS[name], EXTERNAL, 443), f"{name} reaches the internet"


def test_prometheus_scrapes_every_metrics_port_and_nothing_else() -> None:
    for name in ("orchestrator", *STAGES):
        assert _allowed("in", PODS[name], PROMETHEUS, METRICS_PORT), name
        assert not _allowed("in", PODS[name], PROMETHEUS, 8081), f"{name}: the health port is the kubelet's"
        assert not _allowed("in", PODS[name], ELSEWHERE, METRICS_PORT)
    assert _allowed("in", PODS["qwen"], PROMETHEUS, 8080), "llama-server's --metrics are on its HTTP port"
