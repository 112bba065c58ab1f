"""The gateway's transport sockets: what goes into ``deploy/envoy/envoy.yaml`` for each hop.

Envoy to the orchestrator: TLS that checks the orchestrator's certificate against a CA and its
name, with Envoy's client certificate for mTLS. Browsers and the Worker to Envoy: TLS with the
listener's certificate. Either hop without TLS gets Envoy's ``raw_buffer`` socket, so plaintext
is written into the config, never implied by an absent block. Values are checked by
``gateway_config.validate`` before they get here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

TLS_SOCKET = "envoy.transport_sockets.tls"
TLS_TYPES = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
RAW_BUFFER: dict[str, Any] = {
    "name": "envoy.transport_sockets.raw_buffer",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"},
}


@dataclass(frozen=True)
class UpstreamTls:
    """Envoy's TLS to the orchestrator: the CA that signs it, the name its certificate must carry
    (default: the orchestrator's host) and, for an mTLS orchestrator, Envoy's client certificate."""

    ca: str
    cert: str = ""
    key: str = ""
    server_name: str = ""


@dataclass(frozen=True)
class ListenerTls:
    """The certificate and key Envoy serves to the Worker and browsers; ``ca``, if given, is what
    signed that certificate, for clients on this machine (the wait for ``/healthz``), not Envoy."""

    cert: str
    key: str
    ca: str = ""


def _certificate(cert: str, key: str) -> dict[str, Any]:
    return {"certificate_chain": {"filename": cert}, "private_key": {"filename": key}}


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def upstream_socket(tls: UpstreamTls | None, orchestrator_host: str) -> dict[str, Any]:
    """The orchestrator cluster's transport socket (its gRPC health checks go through it too)."""
    if tls is None:
        return RAW_BUFFER
    name = tls.server_name or orchestrator_host
    # Envoy checks no name unless told to: without this, any certificate of the CA would pass.
    san = {"san_type": "IP_ADDRESS" if _is_ip(name) else "DNS", "matcher": {"exact": name}}
    context: dict[str, Any] = {
        "alpn_protocols": ["h2"],
        "validation_context": {"trusted_ca": {"filename": tls.ca}, "match_typed_subject_alt_names": [san]},
    }
    if tls.cert:
        context["tls_certificates"] = [_certificate(tls.cert, tls.key)]
    typed: dict[str, Any] = {"@type": TLS_TYPES + "UpstreamTlsContext", "common_tls_context": context}
    if not _is_ip(name):  # SNI carries host names only (RFC 6066)
        typed["sni"] = name
    return {"name": TLS_SOCKET, "typed_config": typed}


def listener_socket(tls: ListenerTls | None) -> dict[str, Any]:
    """The listener's transport socket: HTTP/2 (gRPC-web from the Worker) or HTTP/1.1 (browsers)."""
    if tls is None:
        return RAW_BUFFER
    context = {"alpn_protocols": ["h2", "http/1.1"], "tls_certificates": [_certificate(tls.cert, tls.key)]}
    return {
        "name": TLS_SOCKET,
        "typed_config": {"@type": TLS_TYPES + "DownstreamTlsContext", "common_tls_context": context},
    }
