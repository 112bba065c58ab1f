"""The gateway's Envoy config, rendered from ``deploy/envoy/envoy.yaml`` for one place it runs.

Local use and Kubernetes share that one file; what differs (where Envoy listens, where the
orchestrator is, which origins may call from a browser, TLS on either side) is validated here
before it is written into the YAML, so a bad value is refused with a message instead of becoming
a broken or widened config. ``python -m swarm_cli.gateway_config k8s --origin URL`` regenerates k8s/gateway-config.yaml.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from string import Template

from .gateway_tls import ListenerTls, UpstreamTls, listener_socket, upstream_socket

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "deploy" / "envoy" / "envoy.yaml"

# What k8s/gateway-config.yaml is rendered with (the origin is the deployer's: see deploy/README.md).
K8S_LISTEN = ("0.0.0.0", 8080)
K8S_ORCHESTRATOR = ("orchestrator", 50051)
K8S_DEFAULT_ORIGIN = "https://swarm.example.com"
K8S_CONFIGMAP = "swarm-gateway"
# Where the gateway pod mounts its TLS Secret (k8s/gateway.yaml): the CA, and its certificate,
# which is both the listener's and the client certificate it presents to the orchestrator.
K8S_TLS_DIR = PurePosixPath("/etc/swarm-tls")
K8S_UPSTREAM_TLS = UpstreamTls(str(K8S_TLS_DIR / "ca.crt"), str(K8S_TLS_DIR / "tls.crt"), str(K8S_TLS_DIR / "tls.key"))
K8S_LISTENER_TLS = ListenerTls(str(K8S_TLS_DIR / "tls.crt"), str(K8S_TLS_DIR / "tls.key"))
ORIGINS_ANNOTATION = "swarm/allowed-origins"

_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")


class GatewayConfigError(ValueError):
    """A value that cannot go into the gateway's config; the message says which and why."""


@dataclass(frozen=True)
class GatewaySettings:
    """Where Envoy listens, the orchestrator it fronts and the browser origins it lets call, and
    TLS on each side (None: plaintext, written as such into the config)."""

    listen_host: str
    listen_port: int
    orchestrator_host: str
    orchestrator_port: int
    allowed_origins: tuple[str, ...]
    upstream_tls: UpstreamTls | None = None
    listener_tls: ListenerTls | None = None

    @property
    def url(self) -> str:
        """The gateway's URL as a client on this machine reaches it."""
        host = "127.0.0.1" if self.listen_host in ("0.0.0.0", "::") else self.listen_host
        scheme = "http" if self.listener_tls is None else "https"
        return f"{scheme}://{host}:{self.listen_port}"


def _port(name: str, port: int) -> int:
    if not 1 <= port <= 65535:
        raise GatewayConfigError(f"{name} is {port}; use a port in 1..65535")
    return port


def _origin(origin: str) -> str:
    if "*" in origin:
        raise GatewayConfigError(f"allowed origin {origin!r} has a wildcard; name the page's exact origin")
    if not _ORIGIN.fullmatch(origin):
        raise GatewayConfigError(
            f"allowed origin {origin!r} is not an origin; use scheme://host[:port] with http or https, "
            "no path, e.g. http://127.0.0.1:8787"
        )
    return origin


def _file(what: str, path: str) -> str:
    if not PurePosixPath(path).is_absolute() or any(ord(c) < 32 for c in path):
        raise GatewayConfigError(f"{what} {path!r} is not an absolute path; Envoy reads it from wherever it runs")
    return path


def _validate_tls(settings: GatewaySettings) -> None:
    upstream, listener = settings.upstream_tls, settings.listener_tls
    if upstream is not None:
        _file("the orchestrator's CA", upstream.ca)
        if bool(upstream.cert) != bool(upstream.key):
            raise GatewayConfigError("the gateway's client certificate needs both a certificate and a key, or neither")
        if upstream.cert:
            _file("the gateway's client certificate", upstream.cert)
            _file("the gateway's client key", upstream.key)
        name = upstream.server_name
        if name and not _HOSTNAME.fullmatch(name) and not _is_ip(name):
            raise GatewayConfigError(f"orchestrator server name {name!r} is not a host name or IP address")
    if listener is not None:
        _file("the listener's certificate", listener.cert)
        _file("the listener's key", listener.key)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def validate(settings: GatewaySettings) -> GatewaySettings:
    """The settings unchanged, or a ``GatewayConfigError`` naming the first bad value."""
    try:
        ipaddress.ip_address(settings.listen_host)
    except ValueError:
        raise GatewayConfigError(f"listen host {settings.listen_host!r} is not an IP address") from None
    _port("listen port", settings.listen_port)
    if not _HOSTNAME.fullmatch(settings.orchestrator_host):
        raise GatewayConfigError(f"orchestrator host {settings.orchestrator_host!r} is not a host name or IPv4 address")
    _port("orchestrator port", settings.orchestrator_port)
    if not settings.allowed_origins:
        raise GatewayConfigError("no allowed origin; name the page's origin, e.g. http://127.0.0.1:8787")
    for origin in settings.allowed_origins:
        _origin(origin)
    _validate_tls(settings)
    return settings


def render(settings: GatewaySettings, template: Path = TEMPLATE) -> str:
    """Envoy's bootstrap YAML for these settings."""
    validate(settings)
    try:
        text = template.read_text()
    except FileNotFoundError:
        raise GatewayConfigError(f"the gateway config template {template} is missing") from None
    origins = [{"exact": origin} for origin in settings.allowed_origins]
    return Template(text).substitute(
        listen_host=settings.listen_host,
        listen_port=settings.listen_port,
        orchestrator_host=settings.orchestrator_host,
        orchestrator_port=settings.orchestrator_port,
        allowed_origins=json.dumps(origins),  # JSON is YAML: each origin a quoted string
        listener_transport_socket=json.dumps(listener_socket(settings.listener_tls)),
        upstream_transport_socket=json.dumps(upstream_socket(settings.upstream_tls, settings.orchestrator_host)),
    )


def k8s_settings(origins: Sequence[str]) -> GatewaySettings:
    """In the cluster every hop is TLS: mTLS to the orchestrator, TLS to the Worker."""
    return GatewaySettings(*K8S_LISTEN, *K8S_ORCHESTRATOR, tuple(origins), K8S_UPSTREAM_TLS, K8S_LISTENER_TLS)


def k8s_configmap(origins: Sequence[str], template: Path = TEMPLATE) -> str:
    """k8s/gateway-config.yaml: the ConfigMap holding the config rendered for the cluster."""
    config = render(k8s_settings(origins), template)
    body = "".join(f"    {line}\n" if line else "\n" for line in config.splitlines())
    return (
        "# Generated from deploy/envoy/envoy.yaml; do not edit. Regenerate with\n"
        f"#   python -m swarm_cli.gateway_config k8s --origin {' --origin '.join(origins)} > k8s/gateway-config.yaml\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        f"  name: {K8S_CONFIGMAP}\n"
        "  namespace: swarm\n"
        "  labels:\n"
        "    app.kubernetes.io/part-of: swarm\n"
        "  annotations:\n"
        f"    {ORIGINS_ANNOTATION}: {json.dumps(','.join(origins))}\n"
        "data:\n"
        "  envoy.yaml: |\n"
        f"{body}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swarm_cli.gateway_config", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    k8s = sub.add_parser("k8s", help="print k8s/gateway-config.yaml for the page's origin(s)")
    k8s.add_argument("--origin", action="append", help=f"the page's origin (repeatable; default {K8S_DEFAULT_ORIGIN})")
    local = sub.add_parser("render", help="print the config for one listener and orchestrator")
    local.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT Envoy listens on")
    local.add_argument("--orchestrator", default="127.0.0.1:50051", help="HOST:PORT of the orchestrator")
    local.add_argument("--origin", action="append", required=True, help="the page's origin (repeatable)")
    local.add_argument("--orchestrator-ca", help="TLS to the orchestrator: the CA file that signs it")
    local.add_argument("--client-cert", default="", help="mTLS: the gateway's client certificate file")
    local.add_argument("--client-key", default="", help="mTLS: the gateway's client key file")
    local.add_argument("--listen-cert", help="TLS on the listener: its certificate file (with --listen-key)")
    local.add_argument("--listen-key", help="TLS on the listener: its key file")
    args = parser.parse_args(argv)
    try:
        if args.command == "k8s":
            print(k8s_configmap(args.origin or [K8S_DEFAULT_ORIGIN]), end="")
        else:
            listen_host, _, listen_port = str(args.listen).rpartition(":")
            orchestrator_host, _, orchestrator_port = str(args.orchestrator).rpartition(":")
            upstream = (
                UpstreamTls(args.orchestrator_ca, args.client_cert, args.client_key) if args.orchestrator_ca else None
            )
            listener = ListenerTls(args.listen_cert, args.listen_key or "") if args.listen_cert else None
            settings = GatewaySettings(
                listen_host,
                int(listen_port),
                orchestrator_host,
                int(orchestrator_port),
                tuple(args.origin),
                upstream,
                listener,
            )
            print(render(settings), end="")
    except (GatewayConfigError, ValueError) as exc:
        print(f"gateway config: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
