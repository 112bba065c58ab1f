"""``python -m swarm_refiner``: serve until SIGTERM, then drain."""

from __future__ import annotations

import asyncio
import logging
import os

from swarmlib import serve_until_terminated

from .config import RefinerConfig
from .server import create_server

log = logging.getLogger("swarm_refiner")


async def _serve() -> None:
    config = RefinerConfig.from_env(os.environ)
    server, port = await create_server(config)
    log.info("refiner listening on %s (port %d)", config.address, port)
    await serve_until_terminated(server, config.grace)


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("SWARM_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
