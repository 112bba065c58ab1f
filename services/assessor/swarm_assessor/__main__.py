"""``python -m swarm_assessor``: serve Assess until SIGTERM or SIGINT."""

from __future__ import annotations

from swarmlib import run_service

from .config import AssessorConfig
from .server import create_server


def main() -> None:
    """Entry point; logging is configured here only, never on import."""
    run_service("assessor", AssessorConfig.from_env, create_server, lambda config: config.grace_s)


if __name__ == "__main__":
    main()
