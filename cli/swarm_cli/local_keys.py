"""The keys a local stack makes for itself, so ``make run`` and ``swarm up`` need no ceremony.

On first start the keys file gets a local approver key (tenant ``local``), kept in
``$SWARM_HOME/cli-key`` (0600) where every ``swarm`` command finds it, and, for ``swarm up`` with
the Worker, a service key for the Worker's GATEWAY_TOKEN (``$SWARM_HOME/worker-key``). Later
starts reuse a kept key while its record is in the file, unrevoked, with the same role.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from swarmlib.api_keys import add_key, key_id, load_keys

LOCAL_TENANT = "local"
CLI_KEY = "cli-key"
WORKER_KEY = "worker-key"


def local_principal(env: Mapping[str, str]) -> str:
    """``$USER`` when it is an identity, else ``local``."""
    from swarmlib.api_keys import IDENTITY

    user = env.get("USER", "").strip()
    return user if IDENTITY.match(user) else "local"


def ensure_key(keys_file: Path, kept: Path, principal: str, role: str, tenant: str = LOCAL_TENANT) -> str:
    """The key kept in ``kept`` if ``keys_file`` still accepts it for ``principal`` in that role;
    else a new one, added to ``keys_file`` and written to ``kept`` (mode 0600)."""
    records = load_keys(keys_file)
    if kept.is_file():
        key = kept.read_text().strip()
        record = records.get(key_id(key) or "")
        if (
            record is not None
            and record.matches(key)
            and not record.revoked
            and (record.role, record.principal, record.tenant) == (role, principal, tenant)
        ):
            return key
    key, _ = add_key(keys_file, tenant, principal, role)
    kept.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(key + "\n")
    os.chmod(kept, 0o600)
    return key
