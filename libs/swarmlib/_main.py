"""The one ``python -m swarm_<service>`` entry point: logging, config, clean config errors, serve."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import NoReturn, TypeVar

from ._errors import ConfigError
from ._server import SwarmServer, serve_until_terminated

ConfigT = TypeVar("ConfigT")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def run_service(
    name: str,
    build_config: Callable[[Mapping[str, str]], ConfigT],
    create_server: Callable[[ConfigT], Awaitable[tuple[SwarmServer, int]]],
    grace_of: Callable[[ConfigT], float],
    *,
    env: Mapping[str, str] | None = None,
) -> None:
    """Serve service ``name`` until SIGTERM/SIGINT, then drain for ``grace_of(config)`` seconds.

    Logging level comes from ``SWARM_LOG_LEVEL`` (default INFO); the config is built from ``env``
    (``os.environ`` by default). A ``ConfigError`` raised while building the config, reading the
    grace or creating the server is the operator's to fix: ``swarm-<name>: <message>`` on stderr
    and exit status 2, no traceback.
    """
    env = os.environ if env is None else env
    level = env.get("SWARM_LOG_LEVEL", "").strip().upper() or "INFO"
    if level not in logging.getLevelNamesMapping():
        _fail(name, f"SWARM_LOG_LEVEL={level!r} is not a log level (use DEBUG, INFO, WARNING or ERROR)")
    logging.basicConfig(level=level, format=LOG_FORMAT)
    log = logging.getLogger(f"swarm_{name}")

    async def serve() -> None:
        config = build_config(env)
        grace = grace_of(config)
        server, port = await create_server(config)
        log.info("%s listening on port %d", name, port)
        await serve_until_terminated(server, grace)

    try:
        asyncio.run(serve())
    except ConfigError as exc:
        _fail(name, str(exc))


def _fail(name: str, message: str) -> NoReturn:
    print(f"swarm-{name}: {message}", file=sys.stderr)
    raise SystemExit(2)
