"""``python -m swarm_collator``: serve on ``SWARM_COLLATOR_ADDR`` until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os

from swarmlib import ConfigError, serve_until_terminated

from .config import CollatorConfig
from .server import create_server

log = logging.getLogger("swarm_collator")


async def _main() -> None:
    config = CollatorConfig.from_env(os.environ)
    server, port = await create_server(config)
    log.info("collator listening on port %d (model %s)", port, config.embedding_model_name)
    await serve_until_terminated(server, config.shutdown_grace_s)


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        asyncio.run(_main())
    except ConfigError as exc:
        # A misconfiguration is the operator's to fix: one clear line, not a traceback.
        log.error("configuration error: %s", exc)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
