"""TLS on the wire: the config's fail-fast checks, and real servers that refuse what they must.

Servers are built by ``build_server`` (what every service uses) on 127.0.0.1 ephemeral ports and
called with gRPC health checks over real channels, with the session's throwaway certificates.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from swarm_orchestrator.config import OrchestratorConfig
from swarmlib import ConfigError, SwarmServer, TlsConfig, Transport, build_server, grpc_channel, is_loopback
from tests.certs import Certs, KeyPair

ROOT = Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def tls_env(
    certs: Certs, identity: KeyPair | None = None, *, ca: Path | None = None, client_auth: bool = False
) -> dict[str, str]:
    env = {"SWARM_TLS_CA": str(ca or certs.ca)}
    if identity is not None:
        env |= {"SWARM_TLS_CERT": str(identity.cert), "SWARM_TLS_KEY": str(identity.key)}
    if client_auth:
        env["SWARM_TLS_CLIENT_AUTH"] = "true"
    return env


@asynccontextmanager
async def health_server(tls: TlsConfig, health_address: str = "") -> AsyncIterator[tuple[SwarmServer, str]]:
    """A bare server (health and reflection only) as every service builds it; its target."""
    server, port = await build_server(
        service_names=[],
        register=lambda _: None,
        address="127.0.0.1:0",
        tracer_provider=TracerProvider(),
        transport=Transport(tls, health_address),
    )
    await server.start()
    try:
        yield server, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def check(target: str, tls: TlsConfig, server_name: str = "") -> grpc.StatusCode | int:
    """The health status a client with ``tls`` gets, or the status code of the failed call."""
    async with grpc_channel(target, tls, server_name=server_name) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return int(reply.status)


# ------------------------------------------------------------------------------------- the config


def test_nothing_set_means_plaintext_on_loopback_only() -> None:
    tls = TlsConfig.from_env({})
    assert not tls.uses_tls and tls.server_credentials() is None and tls.channel_credentials() is None
    for address in ("127.0.0.1:0", "localhost:50051", "[::1]:50051", "unix:/tmp/swarm.sock"):
        tls.check_server(address, "SWARM_X_ADDR")
        tls.check_client(address, "SWARM_X_TARGET")
    with pytest.raises(ConfigError) as refused:
        tls.check_server("0.0.0.0:50051", "SWARM_X_ADDR")
    message = str(refused.value)
    assert message.startswith("SWARM_X_ADDR='0.0.0.0:50051' is not a loopback address and no TLS is configured")
    for variable in ("SWARM_TLS_CERT", "SWARM_TLS_KEY", "SWARM_TLS_CA", "SWARM_TLS_CLIENT_AUTH", "SWARM_PLAINTEXT"):
        assert variable in message
    with pytest.raises(ConfigError, match=r"SWARM_X_TARGET='collator:50052' is not a loopback.*SWARM_TLS_CA"):
        tls.check_client("collator:50052", "SWARM_X_TARGET")


def test_plaintext_on_purpose_serves_any_address() -> None:
    tls = TlsConfig.from_env({"SWARM_PLAINTEXT": "true"})
    tls.check_server("0.0.0.0:50051", "SWARM_X_ADDR")
    tls.check_client("collator:50052", "SWARM_X_TARGET")
    assert tls.server_credentials() is None and tls.channel_credentials() is None


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.8.9.10:1", True),
        ("localhost:50051", True),
        ("LOCALHOST:1", True),
        ("[::1]:50051", True),
        ("dns:///localhost:50051", True),
        ("ipv4:127.0.0.1:1,127.0.0.2:2", True),
        ("unix:/run/swarm.sock", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        (":50051", False),
        ("10.0.0.7:50051", False),
        ("collator:50052", False),
        ("dns:///collator.swarm.svc:50052", False),
        ("ipv4:127.0.0.1:1,10.0.0.1:2", False),
        ("localhost.evil.example:1", False),
    ],
)
def test_what_counts_as_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_tls_config_loads_and_describes_itself(certs: Certs) -> None:
    tls = TlsConfig.from_env(tls_env(certs, certs.server, client_auth=True))
    assert tls.uses_tls and tls.client_auth
    assert tls.describe() == "mTLS (client certificates required)"
    assert TlsConfig.from_env(tls_env(certs, certs.server)).describe() == "TLS"
    assert "BEGIN" not in repr(tls), "key material stays out of reprs (and so out of logs)"
    tls.check_server("0.0.0.0:50051", "SWARM_X_ADDR")


def _refusal(env: Mapping[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        TlsConfig.from_env(env)
    return str(info.value)


def test_unreadable_files_are_named(certs: Certs, tmp_path: Path) -> None:
    missing = tmp_path / "nope.crt"
    message = _refusal({"SWARM_TLS_CERT": str(missing), "SWARM_TLS_KEY": str(certs.server.key)})
    assert message == f"SWARM_TLS_CERT={str(missing)!r} cannot be read: No such file or directory"
    assert _refusal({"SWARM_TLS_CA": str(tmp_path)}) == f"SWARM_TLS_CA={str(tmp_path)!r} cannot be read: Is a directory"


def test_files_that_are_not_what_they_should_be(certs: Certs, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    cert, key = str(certs.server.cert), str(certs.server.key)
    assert "SWARM_TLS_CERT=" in _refusal({"SWARM_TLS_CERT": str(junk), "SWARM_TLS_KEY": key})
    assert "holds no PEM certificate" in _refusal({"SWARM_TLS_CERT": key, "SWARM_TLS_KEY": key})
    bad_key = _refusal({"SWARM_TLS_CERT": cert, "SWARM_TLS_KEY": str(junk)})
    assert bad_key.startswith(f"SWARM_TLS_KEY={str(junk)!r} is not an unencrypted PEM private key")
    assert _refusal({"SWARM_TLS_CA": str(junk)}).startswith(f"SWARM_TLS_CA={str(junk)!r} holds no PEM certificate")


def test_a_key_that_does_not_match_its_certificate(certs: Certs) -> None:
    message = _refusal({"SWARM_TLS_CERT": str(certs.server.cert), "SWARM_TLS_KEY": str(certs.stray_key)})
    assert message == (
        f"SWARM_TLS_KEY={str(certs.stray_key)!r} does not match the certificate in "
        f"SWARM_TLS_CERT={str(certs.server.cert)!r}: give the key it was issued for"
    )


def test_incomplete_or_contradictory_settings(certs: Certs) -> None:
    cert, key, ca = str(certs.server.cert), str(certs.server.key), str(certs.ca)
    assert "SWARM_TLS_CERT is set but SWARM_TLS_KEY is not" in _refusal({"SWARM_TLS_CERT": cert})
    assert "SWARM_TLS_KEY is set but SWARM_TLS_CERT is not" in _refusal({"SWARM_TLS_KEY": key})
    assert "SWARM_TLS_CLIENT_AUTH=true needs SWARM_TLS_CA" in _refusal(
        {"SWARM_TLS_CERT": cert, "SWARM_TLS_KEY": key, "SWARM_TLS_CLIENT_AUTH": "true"}
    )
    assert "SWARM_TLS_CLIENT_AUTH=true needs SWARM_TLS_CERT and SWARM_TLS_KEY" in _refusal(
        {"SWARM_TLS_CA": ca, "SWARM_TLS_CLIENT_AUTH": "true"}
    )
    assert _refusal({"SWARM_PLAINTEXT": "true", "SWARM_TLS_CA": ca}) == (
        "SWARM_PLAINTEXT=true and SWARM_TLS_CA are both set: choose TLS or plaintext"
    )
    assert "is not a boolean" in _refusal({"SWARM_TLS_CLIENT_AUTH": "required"})
    ca_only = TlsConfig.from_env({"SWARM_TLS_CA": ca})
    ca_only.check_client("collator:50052", "SWARM_X_TARGET")  # a client that trusts the CA: fine
    with pytest.raises(ConfigError, match="a TLS server needs its own certificate and key"):
        ca_only.check_server("127.0.0.1:0", "SWARM_X_ADDR")


def test_orchestrator_config_refuses_plaintext_off_loopback(certs: Certs) -> None:
    base = {"SWARM_INSTANCES": '[{"name": "a", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]'}
    with pytest.raises(ConfigError, match=r"^SWARM_ORCHESTRATOR_ADDR='0\.0\.0\.0:50051' is not a loopback"):
        OrchestratorConfig.from_env({**base, "SWARM_ORCHESTRATOR_ADDR": "0.0.0.0:50051"})
    with pytest.raises(ConfigError, match=r"^SWARM_ASSESSOR_TARGET='assessor:50053' is not a loopback"):
        OrchestratorConfig.from_env({**base, "SWARM_ASSESSOR_TARGET": "assessor:50053"})
    config = OrchestratorConfig.from_env(
        {**base, **tls_env(certs, certs.server, client_auth=True), "SWARM_ASSESSOR_TARGET": "assessor:50053"}
    )
    assert config.transport.tls.client_auth


def _service_exit(service: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "OTEL_"))}
    return subprocess.run(
        [sys.executable, "-m", f"swarm_{service}"],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_service_refuses_to_start_without_tls_off_loopback(certs: Certs) -> None:
    proc = _service_exit("refiner", {"SWARM_REFINER_ADDR": "0.0.0.0:0"})
    assert proc.returncode == 2
    assert proc.stderr.startswith("swarm-refiner: SWARM_REFINER_ADDR='0.0.0.0:0' is not a loopback address")
    assert "SWARM_TLS_CERT and SWARM_TLS_KEY" in proc.stderr and "SWARM_PLAINTEXT=true" in proc.stderr
    mismatched = _service_exit(
        "refiner", {"SWARM_TLS_CERT": str(certs.server.cert), "SWARM_TLS_KEY": str(certs.stray_key)}
    )
    assert mismatched.returncode == 2
    assert mismatched.stderr.startswith(f"swarm-refiner: SWARM_TLS_KEY={str(certs.stray_key)!r} does not match")


# -------------------------------------------------------------------------------- real servers


async def test_tls_server_refuses_a_plaintext_client(certs: Certs) -> None:
    async with health_server(TlsConfig.from_env(tls_env(certs, certs.server))) as (_, target):
        assert await check(target, TlsConfig.from_env(tls_env(certs))) == SERVING
        assert await check(target, TlsConfig.from_env({})) == grpc.StatusCode.UNAVAILABLE


async def test_client_refuses_a_server_its_ca_did_not_sign(certs: Certs) -> None:
    async with health_server(TlsConfig.from_env(tls_env(certs, certs.rogue_server))) as (_, target):
        assert await check(target, TlsConfig.from_env(tls_env(certs))) == grpc.StatusCode.UNAVAILABLE
        assert await check(target, TlsConfig.from_env(tls_env(certs, ca=certs.rogue_ca))) == SERVING


async def test_mtls_server_refuses_clients_without_a_certificate_of_its_ca(certs: Certs) -> None:
    server_tls = TlsConfig.from_env(tls_env(certs, certs.server, client_auth=True))
    async with health_server(server_tls) as (_, target):
        assert await check(target, TlsConfig.from_env(tls_env(certs, certs.client))) == SERVING
        assert await check(target, TlsConfig.from_env(tls_env(certs))) == grpc.StatusCode.UNAVAILABLE, "no cert"
        rogue = TlsConfig.from_env(tls_env(certs, certs.rogue_client))
        assert await check(target, rogue) == grpc.StatusCode.UNAVAILABLE, "a certificate from another CA"
        assert await check(target, TlsConfig.from_env({})) == grpc.StatusCode.UNAVAILABLE, "plaintext"


async def test_server_name_is_checked_and_can_be_named(certs: Certs) -> None:
    client = TlsConfig.from_env(tls_env(certs))
    async with health_server(TlsConfig.from_env(tls_env(certs, certs.server))) as (_, target):
        assert await check(target, client, server_name="orchestrator") == SERVING
        assert await check(target, client, server_name="collator") == grpc.StatusCode.UNAVAILABLE


async def test_health_port_answers_health_alone_in_plaintext(certs: Certs) -> None:
    server_tls = TlsConfig.from_env(tls_env(certs, certs.server, client_auth=True))
    async with health_server(server_tls, health_address="127.0.0.1:0") as (server, _):
        assert server.health_port is not None
        health_target = f"127.0.0.1:{server.health_port[1]}"
        assert await check(health_target, TlsConfig.from_env({})) == SERVING
        async with grpc.aio.insecure_channel(health_target) as channel:
            other = channel.unary_unary("/swarm.v1.OrchestratorService/ListRuns")
            with pytest.raises(grpc.aio.AioRpcError) as nothing_else:
                await other(b"", timeout=5)
            assert nothing_else.value.code() == grpc.StatusCode.UNIMPLEMENTED
        await server.health.enter_graceful_shutdown()
        assert await check(health_target, TlsConfig.from_env({})) == NOT_SERVING, "it says what the main port says"


async def test_health_port_says_not_serving_through_the_drain_then_closes(certs: Certs) -> None:
    server_tls = TlsConfig.from_env(tls_env(certs, certs.server, client_auth=True))
    server, port = await build_server(
        service_names=[],
        register=lambda _: None,
        address="127.0.0.1:0",
        tracer_provider=TracerProvider(),
        transport=Transport(server_tls, "127.0.0.1:0"),
    )
    await server.start()
    assert server.health_port is not None
    health_target = f"127.0.0.1:{server.health_port[1]}"
    client = TlsConfig.from_env(tls_env(certs, certs.client))
    async with grpc_channel(f"127.0.0.1:{port}", client) as channel:
        # A Watch on the TLS port is a call in flight: the drain waits for it until the grace ends.
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == SERVING
        stopping = asyncio.create_task(server.stop(1.5))
        await asyncio.sleep(0.3)
        assert not stopping.done()
        assert await check(health_target, TlsConfig.from_env({})) == NOT_SERVING, "up, and draining"
        await stopping
    assert await check(health_target, TlsConfig.from_env({})) == grpc.StatusCode.UNAVAILABLE, "closed after it"
