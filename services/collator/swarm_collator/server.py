"""Server assembly: load the model once, then hand the servicer to the shared bootstrap."""

from __future__ import annotations

import asyncio

import grpc

from swarm.v1 import collator_pb2_grpc
from swarmlib import Metrics, SwarmServer, build_server, configure_tracing

from .config import CollatorConfig
from .embedder import Embedder
from .service import CollatorServicer

SERVICE_NAME = "swarm.v1.CollatorService"


async def create_server(config: CollatorConfig) -> tuple[SwarmServer, int]:
    """A bound, not yet started server and its port.

    The model loads here, in a thread, so health reports SERVING only once Collate can answer.
    """
    tracer_provider = configure_tracing("swarm-collator", config.telemetry_env)
    embedder = await asyncio.to_thread(
        Embedder.load, config.embedding_model_path, config.embedding_model_name, threads=config.torch_threads
    )
    servicer = CollatorServicer(config, embedder)

    def register(server: grpc.aio.Server) -> None:
        collator_pb2_grpc.add_CollatorServiceServicer_to_server(servicer, server)

    return await build_server(
        service_names=[SERVICE_NAME],
        register=register,
        address=config.address,
        tracer_provider=tracer_provider,
        transport=config.transport,
        metrics=Metrics(config.metrics),
    )
