"""``python -m swarm_orchestrator``: serve until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os

from swarmlib import env_float, serve_until_terminated

from .config import OrchestratorConfig
from .server import create_server


async def _main() -> None:
    config = OrchestratorConfig.from_env(os.environ)
    server, port = await create_server(config)
    logging.getLogger("swarm_orchestrator").info("orchestrator listening on port %d", port)
    await serve_until_terminated(server, env_float(os.environ, "SWARM_ORCHESTRATOR_GRACE_S", 10.0, minimum=0.0))


def main() -> None:
    logging.basicConfig(level=os.environ.get("SWARM_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_main())


if __name__ == "__main__":
    main()
