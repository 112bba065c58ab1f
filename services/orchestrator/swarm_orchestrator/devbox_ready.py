"""Waiting for a new devbox's model server, which loads its weights after the devbox runs.

``GET /v1/models`` is probed through the tunnel until it answers or ``ready_timeout_s`` passes;
every few failed probes the devbox's status is read as well, so a devbox that died while its
server was loading is given up on without waiting for the whole deadline.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from runloop_api_client import AsyncRunloop

from swarmlib import Endpoint, InstanceSpec, LLMError, SandboxUnavailableError, list_models
from swarmlib._runloop import devbox_stopped

from .devbox_config import DevboxInstancesConfig

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0
# While waiting for the model server, the devbox status is read every this many failed probes.
STATUS_EVERY = 5


async def until_serving(
    client: AsyncRunloop, http: httpx.AsyncClient, config: DevboxInstancesConfig, box_id: str, spec: InstanceSpec
) -> None:
    """Probe ``/v1/models`` at ``spec`` until it answers; ``SandboxUnavailableError`` if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + config.ready_timeout_s
    endpoint = Endpoint(spec.name, spec.base_url, spec.model)
    failed = 0
    while True:
        try:
            models = await list_models(http, endpoint, timeout=min(PROBE_TIMEOUT_S, config.ready_timeout_s))
        except LLMError as exc:
            last = str(exc)
        else:
            if spec.model not in models:
                log.info("devbox instance %s serves %s, asked for as %s", spec.name, models, spec.model)
            return
        failed += 1
        if failed % STATUS_EVERY == 0:
            await _raise_unless_running(client, box_id, config.max_retries)
        if loop.time() + config.probe_interval_s > deadline:
            raise SandboxUnavailableError(
                f"the model server on devbox {box_id} did not answer GET /v1/models through the tunnel "
                f"within {config.ready_timeout_s:g}s (last: {last})"
            )
        await asyncio.sleep(config.probe_interval_s)


async def _raise_unless_running(client: AsyncRunloop, box_id: str, retries: int) -> None:
    stopped = await devbox_stopped(client, box_id, retries)
    if stopped is not None:
        raise SandboxUnavailableError(f"devbox {box_id} stopped while its model server was starting: {stopped}")
