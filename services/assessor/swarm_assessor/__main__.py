"""``python -m swarm_assessor``: serve Assess until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os

from swarmlib import serve_until_terminated

from .config import AssessorConfig
from .server import create_server

log = logging.getLogger("swarm_assessor")


async def _main() -> None:
    config = AssessorConfig.from_env(os.environ)
    server, port = await create_server(config)
    log.info(
        "assessor listening on %s (port %d), %d concurrent executions, %gs per candidate",
        config.address,
        port,
        config.max_concurrency,
        config.timeout_s,
    )
    await serve_until_terminated(server, config.grace_s)


def main() -> None:
    """Entry point; logging is configured here only, never on import."""
    logging.basicConfig(
        level=os.environ.get("SWARM_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(_main())


if __name__ == "__main__":
    main()
