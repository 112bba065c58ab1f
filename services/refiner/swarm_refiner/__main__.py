"""``python -m swarm_refiner``: serve until SIGTERM, then drain."""

from __future__ import annotations

from swarmlib import run_service

from .config import RefinerConfig
from .server import create_server


def main() -> None:
    run_service("refiner", RefinerConfig.from_env, create_server, lambda config: config.grace)


if __name__ == "__main__":
    main()
