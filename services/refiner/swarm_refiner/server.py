"""Wiring: the gRPC server with tracing, health, reflection and the shared HTTP client."""

from __future__ import annotations

import grpc
import httpx

from swarm.v1 import refiner_pb2, refiner_pb2_grpc
from swarmlib import ChatClient, Metrics, RetryPolicy, SwarmServer, build_server, configure_tracing

from .config import RefinerConfig
from .service import RefinerServicer

SERVICE_NAME = refiner_pb2.DESCRIPTOR.services_by_name["RefinerService"].full_name


async def create_server(config: RefinerConfig) -> tuple[SwarmServer, int]:
    """A bound, not yet started server and its port (``127.0.0.1:0`` picks a free one)."""
    provider = configure_tracing("swarm-refiner", config.env)
    # One pooled client for every call; each call's own deadline bounds it (see ChatClient).
    http = httpx.AsyncClient(timeout=httpx.Timeout(config.llm_timeout))
    servicer = RefinerServicer(config, ChatClient(http, RetryPolicy(attempts=config.llm_attempts)))

    def register(server: grpc.aio.Server) -> None:
        refiner_pb2_grpc.add_RefinerServiceServicer_to_server(servicer, server)

    try:
        server, port = await build_server(
            service_names=[SERVICE_NAME],
            register=register,
            address=config.address,
            tracer_provider=provider,
            transport=config.transport,
            metrics=Metrics(config.metrics),
        )
    except BaseException:
        await http.aclose()
        raise
    server.on_stop(http.aclose)
    return server, port
