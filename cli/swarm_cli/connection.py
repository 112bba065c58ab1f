"""How the ``swarm`` commands reach the orchestrator: its address, the TLS to use, the API key.

TLS comes from the same variables as the services' (``SWARM_TLS_CA`` to trust the orchestrator,
``SWARM_TLS_CERT``/``SWARM_TLS_KEY`` as the client certificate an mTLS orchestrator asks for);
``--plaintext`` is the explicit escape for an orchestrator that serves without TLS off loopback,
and ``--tls-server-name`` names the certificate's host when the address is not it (a
``kubectl port-forward`` to 127.0.0.1, say). Rules: docs/tls.md.

The API key goes on every call as ``authorization: Bearer``: ``--api-key``, else ``$SWARM_API_KEY``,
else the key the local stack wrote (``$SWARM_HOME/cli-key``). docs/identity.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from swarmlib import ConfigError, TlsConfig, bearer_interceptors, grpc_channel
from swarmlib.api_keys import KEY_VAR

from . import tracing

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
    parser.add_argument("--api-key", help=f"your API key (default ${KEY_VAR}, else $SWARM_HOME/cli-key)")


def api_key(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str]:
    """The key to send and where it came from (for the fix an UNAUTHENTICATED answer prints)."""
    if getattr(args, "api_key", None):
        return str(args.api_key).strip(), "--api-key"
    if env.get(KEY_VAR, "").strip():
        return env[KEY_VAR].strip(), f"${KEY_VAR}"
    kept = Path(env.get("SWARM_HOME", "") or ".swarm") / "cli-key"
    try:
        return kept.read_text().strip(), str(kept)
    except OSError:
        return "", ""


@dataclass(frozen=True)
class Connection:
    """The orchestrator's address and how to reach it, checked before any call is made."""

    target: str
    tls: TlsConfig
    server_name: str = ""
    api_key: str = ""
    # Where ``api_key`` came from: "--api-key", "$SWARM_API_KEY", the cli-key file, or "" (none).
    key_source: str = ""

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
        key, source = api_key(args, env)
        return cls(target, tls, str(args.tls_server_name or env.get(SERVER_NAME_VAR, "").strip()), key, source)

    def channel(self) -> grpc.aio.Channel:
        """A channel that sends the key (when there is one) and the trace on every call."""
        interceptors = [*tracing.client_interceptors(), *(bearer_interceptors(self.api_key) if self.api_key else [])]
        return grpc_channel(self.target, self.tls, server_name=self.server_name, interceptors=interceptors)

    def unauthenticated_fix(self) -> str:
        """One line that says how to get a key accepted."""
        if not self.api_key:
            return (
                f"swarm: no API key: pass --api-key KEY or set ${KEY_VAR} "
                "(`swarm keys add --tenant T --principal NAME` makes one; `swarm up` writes $SWARM_HOME/cli-key)"
            )
        return (
            f"swarm: the orchestrator refused the API key from {self.key_source}: use a current key "
            "(`swarm keys list` shows which are active; `swarm keys add` makes a new one)"
        )
