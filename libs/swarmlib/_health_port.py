"""A plaintext port that answers ``grpc.health.v1.Health`` and nothing else.

The kubelet's native gRPC probe cannot speak TLS, so a service behind TLS (or mTLS) would fail
its probes on its own port. This port shares the service's health servicer, so it says exactly
what the main port's health says (NOT_SERVING as soon as a drain starts), and no other RPC is
registered on it: what it tells a caller is SERVING or not, nothing more (docs/tls.md).
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2_grpc


async def health_only_server(servicer: health.aio.HealthServicer, address: str) -> tuple[grpc.aio.Server, int]:
    """A bound, not yet started server on ``address`` that serves ``servicer`` alone."""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind the health port {address}")
    return server, port
