"""API keys: their format, the keys file that holds their SHA-256 digests, and looking one up.

A key is ``swk_<id>_<secret>``: the id finds its record without comparing against every digest,
the secret is 32 random bytes (``secrets.token_urlsafe``). The file holds only the SHA-256 of the
whole key; a fast hash is right here because the secret is 256 random bits, not a password a
dictionary could guess (docs/identity.md). The orchestrator and ``swarm keys`` share this module:
the one writes nothing, the other edits the file atomically (written beside it, then renamed) with
mode 0600.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ._errors import ConfigError

log = logging.getLogger(__name__)

KEYS_FILE_VAR = "SWARM_API_KEYS_FILE"
KEY_VAR = "SWARM_API_KEY"
ROLES = ("member", "approver", "service")
PREFIX = "swk"
# Identities (principals, tenants, x-swarm-user): names, e-mail addresses or service accounts.
IDENTITY = re.compile(r"^[A-Za-z0-9._@+-]{1,128}$")
_KEY = re.compile(r"^swk_([a-z0-9]{12})_([A-Za-z0-9_-]{43,})$")
_FIELDS = ("id", "tenant", "principal", "role", "sha256", "created_at", "revoked")


def default_keys_file(env: Mapping[str, str]) -> Path:
    """``$SWARM_API_KEYS_FILE``, else ``$SWARM_HOME/api-keys.json`` (``SWARM_HOME`` defaults to .swarm)."""
    explicit = str(env.get(KEYS_FILE_VAR, "")).strip()
    return Path(explicit) if explicit else Path(str(env.get("SWARM_HOME", "") or ".swarm")) / "api-keys.json"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(key: str) -> str | None:
    """The id inside a well-formed key; None for anything else (never echo what was sent)."""
    match = _KEY.match(key)
    return match.group(1) if match else None


@dataclass(frozen=True)
class KeyRecord:
    """One key as stored: who it is (principal, in a tenant), what it may do (role), its digest."""

    id: str
    tenant: str
    principal: str
    role: str
    sha256: str
    created_at: str
    revoked: bool = False

    def matches(self, key: str) -> bool:
        """Constant-time comparison of the key's digest with the stored one."""
        return hmac.compare_digest(digest(key).encode(), self.sha256.encode())


def check_identity(what: str, value: str) -> str:
    if not IDENTITY.match(value):
        raise ConfigError(f"{what} {value!r} is not an identity: use 1..128 letters, digits and . _ @ + - (no spaces)")
    return value


def new_key(tenant: str, principal: str, role: str) -> tuple[str, KeyRecord]:
    """A fresh key and its record; the key is shown once, only its digest is kept."""
    check_identity("tenant", tenant)
    check_identity("principal", principal)
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    ident = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
    key = f"{PREFIX}_{ident}_{secrets.token_urlsafe(32)}"
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return key, KeyRecord(ident, tenant, principal, role, digest(key), created)


def _record(path: Path, index: int, raw: Any) -> KeyRecord:
    where = f"{path}: record {index}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} is not an object with the fields {', '.join(_FIELDS)}")
    missing = [name for name in _FIELDS if name not in raw]
    if missing:
        raise ConfigError(f"{where} (id {raw.get('id')!r}) lacks {', '.join(missing)}")
    text = {name: raw[name] for name in _FIELDS if name != "revoked"}
    if not all(isinstance(value, str) for value in text.values()) or not isinstance(raw["revoked"], bool):
        raise ConfigError(f"{where} (id {raw.get('id')!r}): every field is a string except revoked (true/false)")
    record = KeyRecord(**text, revoked=raw["revoked"])
    try:
        check_identity("tenant", record.tenant)
        check_identity("principal", record.principal)
    except ConfigError as exc:
        raise ConfigError(f"{where} (id {record.id!r}): {exc}") from None
    if record.role not in ROLES:
        raise ConfigError(f"{where} (id {record.id!r}): role {record.role!r} is not one of {', '.join(ROLES)}")
    if not re.fullmatch(r"[0-9a-f]{64}", record.sha256) or not re.fullmatch(r"[a-z0-9]{12}", record.id):
        raise ConfigError(f"{where} (id {record.id!r}): id must be 12 of a-z0-9 and sha256 64 hex digits")
    return record


def load_keys(path: Path) -> dict[str, KeyRecord]:
    """The records of ``path`` by id; a missing file has none. Raises ConfigError naming the file
    and the record for anything malformed, so a bad edit fails start-up, not a caller."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the API keys file ({exc}); fix it or remove it") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("keys"), list):
        raise ConfigError(f'{path}: the API keys file must be {{"keys": [...]}} (as `swarm keys add` writes it)')
    records: dict[str, KeyRecord] = {}
    for index, item in enumerate(raw["keys"]):
        record = _record(path, index, item)
        if record.id in records:
            raise ConfigError(f"{path}: record {index} repeats the id {record.id!r}")
        records[record.id] = record
    return records


def save_keys(path: Path, records: dict[str, KeyRecord]) -> None:
    """Write ``records`` to ``path`` atomically (a temporary file beside it, renamed), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"keys": [asdict(r) for r in records.values()]}, indent=2) + "\n"
    handle, temporary = tempfile.mkstemp(prefix=".api-keys.", dir=path.parent)
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def add_key(path: Path, tenant: str, principal: str, role: str) -> tuple[str, KeyRecord]:
    """Create a key, store its record in ``path``; returns the key (to show once) and the record."""
    records = load_keys(path)
    key, record = new_key(tenant, principal, role)
    records[record.id] = record
    save_keys(path, records)
    return key, record


def revoke_key(path: Path, ident: str) -> KeyRecord:
    records = load_keys(path)
    if ident not in records:
        raise ConfigError(f"{path} has no key {ident!r}; `swarm keys list` shows the ids")
    records[ident] = replace(records[ident], revoked=True)
    save_keys(path, records)
    return records[ident]


class KeyFile:
    """The keys file as the server reads it: loaded at start, re-read when its mtime, size or inode
    changes (``swarm keys add`` or a refreshed Secret mount take effect without a restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._records: dict[str, KeyRecord] = {}
        self.reload()

    def _current_stamp(self) -> tuple[int, int, int] | None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def reload(self) -> None:
        stamp = self._current_stamp()
        self._records = load_keys(self.path)
        self._stamp = stamp

    def lookup(self, ident: str) -> KeyRecord | None:
        """The record of ``ident`` from the file as it is now. A file broken after start-up keeps
        the last good records (a bad edit must not lock everybody out) and is logged once."""
        stamp = self._current_stamp()
        if stamp != self._stamp:
            try:
                self.reload()
            except ConfigError as exc:
                self._stamp = stamp
                log.error("API keys file changed but cannot be used; keeping the keys read before: %s", exc)
        return self._records.get(ident)
