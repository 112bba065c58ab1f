"""One in-process stack: collator, assessor, refiner and orchestrator on 127.0.0.1 ephemeral ports,
wired to each other over real channels.

The tests and the quality benchmark start the services the same way; what they change is only
environment: ``env`` for every service, ``overrides`` for the orchestrator. The stack says how it
speaks on the wire: plaintext on 127.0.0.1 by default (``SWARM_PLAINTEXT=true``, explicitly), or
TLS with the certificates of a ``StackTls`` (mTLS between the orchestrator and the stages).
Its orchestrator authenticates callers like any other: the stack adds a local approver key to the
keys file (a temporary one unless ``SWARM_API_KEYS_FILE`` names one) and its channel sends it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from swarm.v1 import orchestrator_pb2_grpc
from swarm_assessor.config import AssessorConfig
from swarm_assessor.server import create_server as create_assessor
from swarm_cli.local_keys import LOCAL_TENANT
from swarm_collator.config import CollatorConfig
from swarm_collator.server import create_server as create_collator
from swarm_orchestrator.config import OrchestratorConfig
from swarm_orchestrator.server import create_server as create_orchestrator
from swarm_refiner.config import RefinerConfig
from swarm_refiner.server import create_server as create_refiner
from swarmlib import METRICS_ADDR_VAR, SwarmServer, TlsConfig, bearer_interceptors, grpc_channel
from swarmlib.api_keys import KEYS_FILE_VAR, add_key

# A run with a hundred candidates (their code, tests and outputs) is over gRPC's 4 MB default.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
# Every service serves /metrics on a free port (the fixed defaults would collide across servers).
METRICS_DEFAULTS = {METRICS_ADDR_VAR: "127.0.0.1:0"}
# Short deadlines suit instances on this machine (fakes, replay servers); override them for real models.
ORCHESTRATOR_DEFAULTS = {
    **METRICS_DEFAULTS,
    "SWARM_INSTANCE_TIMEOUT_S": "3",
    "SWARM_LLM_RETRY_BASE_DELAY_S": "0.01",
    "SWARM_STAGE_TIMEOUT_S": "60",
}


@dataclass(frozen=True)
class StackTls:
    """Certificates for every server of the stack and for its own client of the orchestrator.

    One certificate for 127.0.0.1 serves as each service's identity: its server certificate and,
    for the orchestrator, the client certificate it presents to the stages.
    """

    ca: Path
    cert: Path
    key: Path
    client_auth: bool = True

    def env(self) -> dict[str, str]:
        return {
            "SWARM_TLS_CA": str(self.ca),
            "SWARM_TLS_CERT": str(self.cert),
            "SWARM_TLS_KEY": str(self.key),
            "SWARM_TLS_CLIENT_AUTH": "true" if self.client_auth else "false",
        }


def transport_env(tls: StackTls | None) -> dict[str, str]:
    """The variables that say how a service of the stack speaks: plaintext, said so, or TLS."""
    return {"SWARM_PLAINTEXT": "true"} if tls is None else tls.env()


@dataclass(frozen=True)
class Stages:
    """Targets of the three downstream services, and the TLS they serve (None: plaintext)."""

    collator: str
    assessor: str
    refiner: str
    tls: StackTls | None = None
    # Each stage's bound /metrics port by service name (none when SWARM_METRICS_ADDR=off).
    metrics_ports: dict[str, int] = field(default_factory=dict)


@asynccontextmanager
async def stage_servers(env: Mapping[str, str] | None = None, tls: StackTls | None = None) -> AsyncIterator[Stages]:
    """Collator, assessor and refiner on 127.0.0.1:0 (the collator loads the real embedding model)."""
    env = {**METRICS_DEFAULTS, **transport_env(tls), **(env or {})}
    servers: list[SwarmServer] = []
    try:
        collator, c_port = await create_collator(CollatorConfig.from_env({**env, "SWARM_COLLATOR_ADDR": "127.0.0.1:0"}))
        servers.append(collator)
        assessor, a_port = await create_assessor(AssessorConfig.from_env({**env, "SWARM_ASSESSOR_ADDR": "127.0.0.1:0"}))
        servers.append(assessor)
        refiner, r_port = await create_refiner(RefinerConfig.from_env({**env, "SWARM_REFINER_ADDR": "127.0.0.1:0"}))
        servers.append(refiner)
        for server in servers:
            await server.start()
        ports = {
            name: server.metrics.port
            for name, server in zip(("collator", "assessor", "refiner"), servers, strict=True)
            if server.metrics is not None and server.metrics.port is not None
        }
        yield Stages(f"127.0.0.1:{c_port}", f"127.0.0.1:{a_port}", f"127.0.0.1:{r_port}", tls, ports)
    finally:
        for server in reversed(servers):
            await server.stop(0.5)


def instances_json(urls: Sequence[tuple[str, str]], model: str = "qwen") -> str:
    """``SWARM_INSTANCES`` for (name, base_url) pairs, differing by seed and temperature."""
    return json.dumps(
        [
            {"name": name, "base_url": url, "model": model, "temperature": 0.2 + 0.3 * i, "seed": 100 * (i + 1)}
            for i, (name, url) in enumerate(urls)
        ]
    )


@dataclass
class Orchestrator:
    """The running orchestrator; ``channel`` and ``stub`` send ``api_key`` (tenant ``local``'s
    approver) on every call. ``keys_file`` is the file it reads keys from (add more with
    ``swarmlib.api_keys.add_key``)."""

    server: SwarmServer
    target: str
    channel: grpc.aio.Channel
    stub: orchestrator_pb2_grpc.OrchestratorServiceStub
    api_key: str
    keys_file: Path


@asynccontextmanager
async def orchestrator(
    stages: Stages,
    instances: str,
    database_url: str,
    env: Mapping[str, str] | None = None,
    /,
    **overrides: str,
) -> AsyncIterator[Orchestrator]:
    """An orchestrator on 127.0.0.1:0 over the given stages, instances and database, with the
    stages' TLS (its channel to them and its own port; the stack's client channel too).

    Its environment, each layer over the one before: ``ORCHESTRATOR_DEFAULTS``, the transport,
    ``env``, the wiring (address, stage targets, instances, database), ``overrides``.
    """
    with tempfile.TemporaryDirectory(prefix="swarm-keys-") as scratch:
        async with _orchestrator(stages, instances, database_url, Path(scratch), env, overrides) as orch:
            yield orch


@asynccontextmanager
async def _orchestrator(
    stages: Stages,
    instances: str,
    database_url: str,
    scratch: Path,
    env: Mapping[str, str] | None,
    overrides: Mapping[str, str],
) -> AsyncIterator[Orchestrator]:
    config_env = {
        **ORCHESTRATOR_DEFAULTS,
        **transport_env(stages.tls),
        **(env or {}),
        "SWARM_ORCHESTRATOR_ADDR": "127.0.0.1:0",
        "SWARM_COLLATOR_TARGET": stages.collator,
        "SWARM_ASSESSOR_TARGET": stages.assessor,
        "SWARM_REFINER_TARGET": stages.refiner,
        "SWARM_INSTANCES": instances,
        "SWARM_DATABASE_URL": database_url,
        **overrides,
    }
    keys_file = Path(config_env.get(KEYS_FILE_VAR) or scratch / "api-keys.json")
    config_env[KEYS_FILE_VAR] = str(keys_file)
    api_key, _ = add_key(keys_file, LOCAL_TENANT, "local", "approver")
    server, port = await create_orchestrator(OrchestratorConfig.from_env(config_env))
    await server.start()
    target = f"127.0.0.1:{port}"
    channel = grpc_channel(
        target,
        TlsConfig.from_env(transport_env(stages.tls)),
        options=CHANNEL_OPTIONS,
        interceptors=bearer_interceptors(api_key),
    )
    try:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        yield Orchestrator(server, target, channel, stub, api_key, keys_file)
    finally:
        await channel.close()
        await server.stop(0.5)
