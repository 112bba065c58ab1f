"""Assemble the assessor's gRPC server from its config; the caller decides when to start it."""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health_pb2

from swarm.v1 import assessor_pb2_grpc
from swarmlib import Metrics, SandboxUnavailableError, SwarmServer, build_server, configure_tracing, open_sandbox

from .config import AssessorConfig
from .metrics import MeteredSandbox, SandboxMetrics
from .service import AssessorServicer

log = logging.getLogger(__name__)

SERVICE_NAME = "swarm.v1.AssessorService"


async def create_server(config: AssessorConfig) -> tuple[SwarmServer, int]:
    """Probe the sandbox, then build the server bound to ``config.address``.

    A host where bubblewrap cannot run still gets a server: health reports NOT_SERVING and each
    Assess fails with FAILED_PRECONDITION naming the cause, which is easier to diagnose from a
    client than a service that never comes up.
    """
    metrics = Metrics(config.metrics)
    sandbox = MeteredSandbox(open_sandbox(config.sandbox), SandboxMetrics(metrics.registry))
    try:
        await sandbox.probe()
    except SandboxUnavailableError as exc:
        log.error("sandbox unavailable, Assess will fail until fixed: %s", exc)
    servicer = AssessorServicer(config, sandbox)

    def register(server: grpc.aio.Server) -> None:
        assessor_pb2_grpc.add_AssessorServiceServicer_to_server(servicer, server)

    server, port = await build_server(
        service_names=[SERVICE_NAME],
        register=register,
        address=config.address,
        tracer_provider=configure_tracing("swarm-assessor", config.telemetry_env),
        transport=config.transport,
        metrics=metrics,
    )
    server.on_stop(sandbox.aclose)
    if sandbox.unavailable_reason is not None:
        await server.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
    return server, port
