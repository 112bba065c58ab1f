"""The whole stack behind TLS: mTLS between the orchestrator and the stages, a TLS (mTLS) orchestrator
reached by the CLI and by Envoy, with the session's throwaway certificates (tests/certs.py).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.grpc_web import GrpcWebClient
from swarm_bench.stack import Stages, orchestrator
from swarm_cli.gateway import running_gateway, start_gateway
from swarm_cli.gateway_config import GatewaySettings
from swarm_cli.gateway_tls import ListenerTls, UpstreamTls
from swarmlib import TlsConfig, grpc_channel
from tests.certs import Certs, KeyPair
from tests.fakes.openai_server import Behaviour
from tests.fakes.replies import FIB_REPLY, REFINED_FIB_REPLY
from tests.orchestrator.test_swarm import FIB_TASK, WRONG_FIB_REPLY, collect, fakes, named, solve_or_refine

ORIGIN = "http://127.0.0.1:8787"
SERVICE = "swarm.v1.OrchestratorService"


def client_tls(certs: Certs, identity: KeyPair | None) -> TlsConfig:
    env = {"SWARM_TLS_CA": str(certs.ca)}
    if identity is not None:
        env |= {"SWARM_TLS_CERT": str(identity.cert), "SWARM_TLS_KEY": str(identity.key)}
    return TlsConfig.from_env(env)


async def health(target: str, tls: TlsConfig) -> grpc.StatusCode:
    async with grpc_channel(target, tls) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def test_a_swarm_runs_over_mtls_between_orchestrator_and_stages(tls_stages: Stages, sqlite_url: str) -> None:
    # Two instances, both wrong: the assessor fails them, the collator clusters them, the refiner fixes it.
    better = solve_or_refine(WRONG_FIB_REPLY, REFINED_FIB_REPLY)
    async with (
        fakes((Behaviour.ANSWER, better), (Behaviour.ANSWER, better)) as servers,
        orchestrator(tls_stages, named(servers), sqlite_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2))
        assert error is None
        run = events[-1].done
        assert run.status == pb.RUN_STATUS_SUCCEEDED
        assert all(c.tests for c in run.candidates), "the assessor ran every candidate's tests"
        assert run.clusters and "collation unavailable" not in run.analysis, "the collator answered"
        assert run.refinement.kept and run.final.origin == pb.CANDIDATE_ORIGIN_REFINED, "the refiner answered"
        assert run.candidates[0].id == run.final.candidate_id and run.candidates[0].scores.tests_passed == 3


async def test_every_server_refuses_plaintext_and_clients_without_a_certificate(
    tls_stages: Stages, sqlite_url: str, certs: Certs
) -> None:
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(tls_stages, named(servers), sqlite_url) as orch,
    ):
        for target in (tls_stages.collator, tls_stages.assessor, tls_stages.refiner, orch.target):
            assert await health(target, client_tls(certs, certs.client)) == grpc.StatusCode.OK
            assert await health(target, TlsConfig.from_env({})) == grpc.StatusCode.UNAVAILABLE, target
            assert await health(target, client_tls(certs, None)) == grpc.StatusCode.UNAVAILABLE, target
            rogue = client_tls(certs, certs.rogue_client)
            assert await health(target, rogue) == grpc.StatusCode.UNAVAILABLE, target


async def swarm_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """``python -m swarm_cli.main`` with only ``env``'s Swarm variables, off the servers' loop."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swarm_cli.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean, **env},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_reaches_a_tls_orchestrator(tls_stages: Stages, sqlite_url: str, certs: Certs) -> None:
    tls = {
        "SWARM_TLS_CA": str(certs.ca),
        "SWARM_TLS_CERT": str(certs.client.cert),
        "SWARM_TLS_KEY": str(certs.client.key),
    }
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(tls_stages, named(servers), sqlite_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        tls["SWARM_API_KEY"] = orch.api_key
        code, out, err = await swarm_cli(tls, "--target", orch.target, "run", FIB_TASK, "--size", "1", "--no-refine")
        assert code == 0, err
        assert "def fib" in out
        code, out, err = await swarm_cli({**tls, "SWARM_ORCHESTRATOR_TARGET": orch.target}, "instances")
        assert code == 0 and out.startswith("fake-1"), err
        # By the name in its certificate, as through a port-forward to 127.0.0.1.
        named_tls = {**tls, "SWARM_TLS_SERVER_NAME": "orchestrator"}
        code, _, err = await swarm_cli(named_tls, "--target", orch.target, "wait", "--timeout", "10")
        assert code == 0, err
        code, _, err = await swarm_cli({}, "--target", orch.target, "instances")
        assert code == 3 and "UNAVAILABLE" in err, "plaintext is refused: unreachable"
        without_cert = {"SWARM_TLS_CA": str(certs.ca)}
        code, _, err = await swarm_cli(without_cert, "--target", orch.target, "instances")
        assert code == 3 and "UNAVAILABLE" in err, "no client certificate: refused"


async def test_the_cli_refuses_plaintext_off_loopback_unless_asked() -> None:
    code, _, err = await swarm_cli({}, "--target", "orchestrator.example:50051", "instances")
    assert code == 2
    assert err.startswith("swarm: --target='orchestrator.example:50051' is not a loopback address")
    assert "SWARM_TLS_CA" in err and "--plaintext" in err
    code, _, err = await swarm_cli({}, "--target", "192.0.2.1:9", "--plaintext", "wait", "--timeout", "0.5")
    assert code == 3 and "not SERVING" in err, "with --plaintext it tries, and finds nobody"


async def test_envoy_reaches_a_tls_orchestrator_and_serves_tls(
    tls_stages: Stages, sqlite_url: str, certs: Certs, tmp_path: Path
) -> None:
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(tls_stages, named(servers), sqlite_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        host, _, port = orch.target.rpartition(":")
        upstream = UpstreamTls(str(certs.ca), str(certs.client.cert), str(certs.client.key))
        listener = ListenerTls(str(certs.server.cert), str(certs.server.key), str(certs.ca))
        settings = GatewaySettings("127.0.0.1", 0, host, int(port), (ORIGIN,), upstream, listener)
        # Serving means Envoy's gRPC health check passed: it reached the mTLS orchestrator.
        async with running_gateway(settings, tmp_path / "gateway") as gateway:
            assert gateway.url.startswith("https://127.0.0.1:")
            verify = ssl.create_default_context(cafile=str(certs.ca))
            async with httpx.AsyncClient(timeout=30.0, verify=verify) as http:
                assert (await http.get(f"{gateway.url}/healthz")).status_code == 200
                client = GrpcWebClient(http, gateway.url, SERVICE, {"authorization": f"Bearer {orch.api_key}"})
                request = pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True)
                events = [event async for _, event in client.stream("RunSwarm", request, pb.RunSwarmResponse)]
                assert events[-1].done.status == pb.RUN_STATUS_SUCCEEDED
            async with httpx.AsyncClient(timeout=5.0) as plain:
                with pytest.raises(httpx.HTTPError):
                    await plain.get(gateway.url.replace("https://", "http://") + "/healthz")

        # Without its client certificate Envoy's health checks are refused: never serving.
        no_cert = GatewaySettings("127.0.0.1", 0, host, int(port), (ORIGIN,), UpstreamTls(str(certs.ca)))
        with pytest.raises(RuntimeError, match=f"orchestrator at {orch.target} fails its health check"):
            await start_gateway(no_cert, tmp_path / "no-cert", timeout=4.0)
