"""``python -m swarm_orchestrator``: serve until SIGTERM, then drain."""

from __future__ import annotations

from swarmlib import run_service

from .config import OrchestratorConfig
from .server import create_server


def main() -> None:
    run_service("orchestrator", OrchestratorConfig.from_env, create_server, lambda config: config.grace_s)


if __name__ == "__main__":
    main()
