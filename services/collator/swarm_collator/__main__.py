"""``python -m swarm_collator``: serve on ``SWARM_COLLATOR_ADDR`` until SIGTERM or SIGINT."""

from __future__ import annotations

from swarmlib import run_service

from .config import CollatorConfig
from .server import create_server


def main() -> None:
    run_service("collator", CollatorConfig.from_env, create_server, lambda config: config.shutdown_grace_s)


if __name__ == "__main__":
    main()
