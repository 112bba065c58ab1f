"""Wires the orchestrator: store, instance pool, LLM client, stage channels, gRPC server."""

from __future__ import annotations

import grpc
import httpx
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace import TracerProvider

from swarm.v1 import orchestrator_pb2_grpc
from swarmlib import (
    ChatClient,
    Metrics,
    RetryPolicy,
    SwarmServer,
    TlsConfig,
    build_server,
    configure_tracing,
    grpc_channel,
)
from swarmlib.api_keys import KeyFile

from .config import OrchestratorConfig
from .fanout import Fanout
from .identity import AuthInterceptor
from .lease import Leases
from .metrics import OrchestratorMetrics, queue_refresh
from .pipeline import Pipeline
from .pool import InstancePool
from .run_queue import RunQueue
from .service import OrchestratorServicer
from .spending import Spending
from .stages import STAGE_CHANNEL_OPTIONS, StageCalls, StageRetry
from .store import RunStore
from .store_leases import LeaseTerms

SERVICE_NAME = "swarm.v1.OrchestratorService"


def open_channel(target: str, tracer_provider: TracerProvider, tls: TlsConfig, variable: str) -> grpc.aio.Channel:
    """A channel to a stage that carries the trace context to it (OpenTelemetry client interceptors),
    over TLS with the orchestrator's own certificate as its client identity when ``tls`` has one."""
    return grpc_channel(
        target,
        tls,
        variable=variable,
        interceptors=aio_client_interceptors(tracer_provider=tracer_provider),  # type: ignore[no-untyped-call]
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            *STAGE_CHANNEL_OPTIONS,
        ],
    )


async def _show_pool(recorded: OrchestratorMetrics, pool: InstancePool) -> None:
    recorded.show_pool(pool)


async def _show_budgets(recorded: OrchestratorMetrics, spending: Spending) -> None:
    recorded.show_budgets(await spending.remaining_ratios())


async def create_server(config: OrchestratorConfig) -> tuple[SwarmServer, int]:
    """Build the orchestrator bound to ``config.address`` (port 0 picks a free port)."""
    keys = KeyFile(config.api_keys_file)  # a malformed file fails start-up, naming the record
    tracer_provider = configure_tracing("swarm-orchestrator", config.telemetry_env)
    store = await RunStore.open(
        config.database_url,
        lease=LeaseTerms(ttl_s=config.run_lease_s),
        busy_timeout_s=config.store_busy_timeout_s,
    )
    http = httpx.AsyncClient(timeout=httpx.Timeout(config.instance_timeout_s, connect=5.0))
    retry = RetryPolicy(attempts=config.llm_retry_attempts, base_delay=config.llm_retry_base_delay_s)
    client = ChatClient(http, retry)
    pool = InstancePool(config.instances, dict(config.secrets), config.unhealthy_after)
    devboxes = None
    if config.devboxes.count:  # imported only when configured: it loads the Runloop SDK
        from .devboxes import open_devboxes

        devboxes = open_devboxes(config, http, retry)
        client, pool = devboxes.client, devboxes.pool
    channels = [
        open_channel(target, tracer_provider, config.transport.tls, f"SWARM_{stage}_TARGET")
        for stage, target in (
            ("COLLATOR", config.collator_target),
            ("ASSESSOR", config.assessor_target),
            ("REFINER", config.refiner_target),
        )
    ]
    stage_retry = StageRetry(config.stage_retry_base_delay_s, config.stage_retry_max_delay_s)
    calls = StageCalls.over_channels(*channels).retrying(stage_retry)
    metrics = Metrics(config.metrics)
    recorded = OrchestratorMetrics(metrics.registry)
    pipeline = Pipeline(config, pool, Fanout(pool, client, recorded), calls, store)
    # Runs left RUNNING by an orchestrator that is gone end before this one serves, and then on
    # every heartbeat of this one.
    queue = RunQueue(config, pool, store)
    leases = Leases(store, lambda: pipeline.driving)
    await leases.sweep()
    if devboxes is not None:
        devboxes.scale_on(queue)  # the devbox pool grows on this queue's depth (docs/scaling.md)
    spending = Spending(config, pool, store, http)
    servicer = OrchestratorServicer(config, pool, pipeline, store, queue, spending)
    # The queue gauges are read from the store at scrape time (docs/metrics.md), health from the pool.
    metrics.on_scrape(queue_refresh(recorded, queue.state, lambda: (config.max_active_runs, queue.capacity().slots)))
    metrics.on_scrape(lambda: _show_pool(recorded, pool))
    metrics.on_scrape(lambda: _show_budgets(recorded, spending))
    server, port = await build_server(
        service_names=[SERVICE_NAME],
        register=lambda s: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(servicer, s),
        address=config.address,
        tracer_provider=tracer_provider,
        transport=config.transport,
        interceptors=[AuthInterceptor(keys)],
        metrics=metrics,
    )
    pool.start_checks(http, config.health_interval_s)
    leases.start()
    queue.start()
    if devboxes is not None:
        devboxes.start()

    async def close() -> None:
        await servicer.cancel_running()
        await queue.aclose()
        await leases.aclose()
        await pool.stop_checks()
        if devboxes is not None:
            await devboxes.aclose()
        for channel in channels:
            await channel.close()
        await http.aclose()
        await store.close()

    server.on_stop(close)
    return server, port
