"""How the ``swarm`` commands reach the orchestrator: its address and the TLS to use.

TLS comes from the same variables as the services' (``SWARM_TLS_CA`` to trust the orchestrator,
``SWARM_TLS_CERT``/``SWARM_TLS_KEY`` as the client certificate an mTLS orchestrator asks for);
``--plaintext`` is the explicit escape for an orchestrator that serves without TLS off loopback,
and ``--tls-server-name`` names the certificate's host when the address is not it (a
``kubectl port-forward`` to 127.0.0.1, say). Rules: docs/tls.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from swarmlib import ConfigError, TlsConfig, grpc_channel

TARGET_VAR = "SWARM_ORCHESTRATOR_TARGET"
SERVER_NAME_VAR = "SWARM_TLS_SERVER_NAME"
DEFAULT_TARGET = "127.0.0.1:50051"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", help=f"orchestrator host:port (default ${TARGET_VAR} or {DEFAULT_TARGET})")
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="talk to the orchestrator without TLS even off loopback (ignores SWARM_TLS_*)",
    )
    parser.add_argument(
        "--tls-server-name",
        help=f"the name the orchestrator's certificate carries, if not the target's host (default ${SERVER_NAME_VAR})",
    )


@dataclass(frozen=True)
class Connection:
    """The orchestrator's address and how to reach it, checked before any call is made."""

    target: str
    tls: TlsConfig
    server_name: str = ""

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str]) -> Connection:
        """Raises ``ConfigError`` (naming the variable) for TLS settings that cannot work."""
        target = str(args.target or env.get(TARGET_VAR, "").strip() or DEFAULT_TARGET)
        tls = TlsConfig(plaintext=True) if args.plaintext else TlsConfig.from_env(env)
        variable = "--target" if args.target else TARGET_VAR
        try:
            tls.check_client(target, variable)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (or --plaintext)") from None
        return cls(target, tls, str(args.tls_server_name or env.get(SERVER_NAME_VAR, "").strip()))

    def channel(self) -> grpc.aio.Channel:
        return grpc_channel(self.target, self.tls, server_name=self.server_name)
