"""The web chain in one call: the services in-process, Envoy (gRPC-web) in front of the
orchestrator and the Worker with its page under ``wrangler dev``, as ``swarm up`` runs them.

The browser tests and the web-path benchmark stand on it; what they put behind it (fake, replay
or real instances) is theirs to start.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from swarm_cli.children import stop
from swarm_cli.gateway import Gateway, running_gateway
from swarm_cli.gateway_config import GatewaySettings
from swarm_cli.local_keys import LOCAL_TENANT
from swarm_cli.worker_dev import WorkerVars, fresh_vars, missing_toolchain, page_url, start_worker
from swarmlib.api_keys import add_key

from .stack import Orchestrator, instances_json, orchestrator, stage_servers

WORKER_START_S = 120.0


class WebToolchainMissingError(RuntimeError):
    """The Worker cannot run here (its toolchain is not installed); the message says how to fix it."""


@dataclass(frozen=True)
class WebStack:
    """The running chain: the page's origin, the Worker's configuration, the gateway, the orchestrator."""

    origin: str
    worker_vars: WorkerVars
    gateway: Gateway
    orchestrator: Orchestrator

    @property
    def signed_in_url(self) -> str:
        """The page with the local user's key in its fragment (the page signs in with it once)."""
        return page_url(int(self.origin.rsplit(":", 1)[1]), self.worker_vars.api_key)


@asynccontextmanager
async def web_stack(
    workdir: Path,
    instances: Sequence[tuple[str, str]],
    chat: tuple[str, str],
    *,
    model: str = "qwen",
    stage_env: Mapping[str, str] | None = None,
    **orchestrator_env: str,
) -> AsyncIterator[WebStack]:
    """The chain for ``instances`` (name, OpenAI base URL); normal mode asks ``chat`` (base URL,
    model). The Worker holds a service key of tenant ``local``; the orchestrator's own channel holds
    that tenant's approver key. The swarm writes no tests unless ``orchestrator_env`` says."""
    missing = missing_toolchain()
    if missing is not None:
        raise WebToolchainMissingError(f"{missing}: run `make worker-install worker-gen`")
    settings = {"SWARM_TEST_WRITERS": "0", **orchestrator_env}
    async with AsyncExitStack() as stack:
        stages = await stack.enter_async_context(stage_servers(stage_env))
        database = f"sqlite+aiosqlite:///{workdir / 'swarm.db'}"
        orch = await stack.enter_async_context(
            orchestrator(stages, instances_json(list(instances), model=model), database, **settings)
        )
        # The page's port stays bound until the gateway is up: Envoy binds port 0, and the kernel
        # could otherwise hand it the port just probed, leaving the page's origin to Envoy.
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            web_port = int(held.getsockname()[1])
            origin = f"http://127.0.0.1:{web_port}"
            host, _, port = orch.target.rpartition(":")
            gateway_settings = GatewaySettings("127.0.0.1", 0, host, int(port), (origin,))
            gateway = await stack.enter_async_context(running_gateway(gateway_settings, workdir / "gateway"))
        service_key, _ = add_key(orch.keys_file, LOCAL_TENANT, "worker", "service")
        worker_vars = fresh_vars(gateway.url, *chat, gateway_token=service_key)
        deadline = time.monotonic() + WORKER_START_S
        worker = await start_worker(web_port, worker_vars, os.environ, workdir, deadline)
        stack.push_async_callback(stop, [worker], 10.0)
        yield WebStack(origin, worker_vars, gateway, orch)
