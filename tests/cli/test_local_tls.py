"""What ``swarm up`` makes of the environment's TLS settings: plaintext said explicitly without
them; with them, TLS for the services and the gateway's mTLS to the orchestrator."""

from __future__ import annotations

import pytest

from swarm_cli.gateway_tls import UpstreamTls
from swarm_cli.localstack import gateway_upstream, transport_env
from swarmlib import ConfigError, TlsConfig
from tests.certs import Certs


def test_without_tls_settings_the_local_stack_says_plaintext() -> None:
    tls = TlsConfig.from_env({})
    assert transport_env(tls) == {"SWARM_PLAINTEXT": "true"}
    assert gateway_upstream(tls) is None


def test_with_tls_settings_every_hop_uses_them(certs: Certs) -> None:
    env = {
        "SWARM_TLS_CA": str(certs.ca),
        "SWARM_TLS_CERT": str(certs.server.cert),
        "SWARM_TLS_KEY": str(certs.server.key),
    }
    tls = TlsConfig.from_env(env)
    assert transport_env(tls) == {}, "the services read SWARM_TLS_* from the environment they inherit"
    assert gateway_upstream(tls) == UpstreamTls(str(certs.ca), str(certs.server.cert), str(certs.server.key))


def test_the_gateway_needs_the_ca_to_check_the_orchestrator(certs: Certs) -> None:
    tls = TlsConfig.from_env({"SWARM_TLS_CERT": str(certs.server.cert), "SWARM_TLS_KEY": str(certs.server.key)})
    with pytest.raises(ConfigError, match="SWARM_TLS_CA"):
        gateway_upstream(tls)
