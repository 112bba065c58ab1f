"""``swarm keys add | list | revoke``: the orchestrator's API keys, edited in its keys file.

The commands edit the file directly (``--file``, default as the orchestrator's:
``$SWARM_API_KEYS_FILE`` or ``$SWARM_HOME/api-keys.json``); a running orchestrator re-reads it
when it changes. A new key is printed once: the file keeps only its SHA-256 (docs/identity.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from swarmlib import ConfigError
from swarmlib.api_keys import ROLES, add_key, default_keys_file, load_keys, revoke_key

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="the orchestrator's API keys (tenants, principals, roles)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    add = keys_sub.add_parser("add", help="create a key; it is printed once")
    add.add_argument("--tenant", required=True, help="the tenant whose runs the key sees")
    add.add_argument("--principal", required=True, help="who the key is (user name, e-mail, service account)")
    add.add_argument("--role", choices=ROLES, default="member", help="member (default), approver or service")
    listing = keys_sub.add_parser("list", help="the keys (never their secrets or hashes)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id; the orchestrator refuses it at once")
    revoke.add_argument("id")
    for command in (add, listing, revoke):
        command.add_argument(
            "--file", type=Path, help="the keys file (default $SWARM_API_KEYS_FILE or $SWARM_HOME/api-keys.json)"
        )


def run(args: argparse.Namespace) -> int:
    path: Path = args.file or default_keys_file(os.environ)
    try:
        if args.keys_command == "add":
            key, record = add_key(path, args.tenant, args.principal, args.role)
            print(key)
            print(
                f"key {record.id}: {record.role} {record.principal} in tenant {record.tenant}, stored in {path}. "
                "This is the only time the key is shown: keep it now (send it as --api-key or $SWARM_API_KEY).",
                file=sys.stderr,
            )
            return EXIT_OK
        if args.keys_command == "revoke":
            record = revoke_key(path, args.id)
            print(f"key {record.id} ({record.principal} in tenant {record.tenant}) is revoked")
            return EXIT_OK
        records = load_keys(path)
    except ConfigError as exc:
        print(f"swarm keys: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not records:
        print(f"no keys in {path}; create one with `swarm keys add --tenant T --principal NAME`")
    for record in records.values():
        state = "revoked" if record.revoked else "active"
        print(
            f"{record.id}  {record.tenant:<16} {record.principal:<24} {record.role:<8} {state:<7} {record.created_at}"
        )
    return EXIT_OK
