"""deploy/tls/make-certs.sh, the openssl path to the certificates cert-manager would make: what it
writes is accepted by the services' TLS config, and mTLS works between two of its certificates."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import grpc
import pytest

from swarmlib import TlsConfig
from tests.libs.test_tls import SERVING, check, health_server

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "tls" / "make-certs.sh"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the script needs the openssl command")


def _make(out: Path, *names: str, extra_san: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EXTRA_SAN": extra_san}
    return subprocess.run([str(SCRIPT), str(out), *names], env=env, capture_output=True, text=True, timeout=60)


def _identity(out: Path, name: str, *, client_auth: bool = False) -> TlsConfig:
    folder = out / name
    return TlsConfig.from_env(
        {
            "SWARM_TLS_CERT": str(folder / "tls.crt"),
            "SWARM_TLS_KEY": str(folder / "tls.key"),
            "SWARM_TLS_CA": str(folder / "ca.crt"),
            "SWARM_TLS_CLIENT_AUTH": "true" if client_auth else "false",
        }
    )


async def test_its_certificates_give_mtls_between_services(tmp_path: Path) -> None:
    made = _make(tmp_path, "orchestrator", "collator")
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (tmp_path / "collator").iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    assert stat.S_IMODE((tmp_path / "collator" / "tls.key").stat().st_mode) == 0o600
    collator = _identity(tmp_path, "collator", client_auth=True)
    orchestrator = _identity(tmp_path, "orchestrator")
    async with health_server(collator) as (_, target):
        # Dialled as the orchestrator dials it in the cluster: by its Service name.
        assert await check(target, orchestrator, server_name="collator") == SERVING
        assert await check(target, orchestrator, server_name="collator.swarm.svc.cluster.local") == SERVING
        assert await check(target, orchestrator, server_name="refiner") == grpc.StatusCode.UNAVAILABLE
        ca_only = TlsConfig.from_env({"SWARM_TLS_CA": str(tmp_path / "ca.crt")})
        assert await check(target, ca_only, server_name="collator") == grpc.StatusCode.UNAVAILABLE, "no client cert"


def test_the_ca_is_made_once_and_extra_names_are_added(tmp_path: Path) -> None:
    assert _make(tmp_path, "refiner").returncode == 0
    ca = (tmp_path / "ca.crt").read_bytes()
    again = _make(tmp_path, "gateway", extra_san="DNS:swarm-gateway.example.com,IP:127.0.0.1")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "ca.crt").read_bytes() == ca, "later runs sign with the same CA"
    assert "DNS:swarm-gateway.example.com,IP:127.0.0.1" in again.stdout
    _identity(tmp_path, "gateway")  # accepted by the services' config
    bad = _make(tmp_path, "Not A Name")
    assert bad.returncode == 2 and "is not a service name" in bad.stderr
