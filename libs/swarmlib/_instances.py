"""Instance configuration: a JSON file (``SWARM_INSTANCES_FILE``) or inline JSON (``SWARM_INSTANCES``).

Each entry: ``name``, ``base_url``, ``model``, optional ``api_key_env`` (the variable holding the
key, never the key itself), ``temperature``, ``seed``, ``price_input_per_mtok``,
``price_output_per_mtok``, ``slots`` (requests it serves at once: its server's parallel slots;
0, the default, means the orchestrator's SWARM_INSTANCE_SLOTS).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._errors import ConfigError


def token_cost_usd(
    prompt_tokens: int, completion_tokens: int, price_input_per_mtok: float, price_output_per_mtok: float
) -> float:
    """The price of one call in USD from per-million-token prices (the one cost formula)."""
    return (prompt_tokens * price_input_per_mtok + completion_tokens * price_output_per_mtok) / 1e6


@dataclass(frozen=True)
class InstanceSpec:
    """One OpenAI-compatible LLM endpoint with its sampling settings and prices."""

    name: str
    base_url: str
    model: str
    api_key_env: str = ""
    temperature: float = 0.7
    seed: int = 0
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0
    slots: int = 0

    def api_key(self, env: Mapping[str, str]) -> str:
        """Resolve the key from ``env``; a named but unset variable is a configuration error."""
        if not self.api_key_env:
            return ""
        value = env.get(self.api_key_env, "")
        if not value:
            raise ConfigError(f"instance {self.name!r}: environment variable {self.api_key_env} is not set")
        return value

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return token_cost_usd(prompt_tokens, completion_tokens, self.price_input_per_mtok, self.price_output_per_mtok)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = {
    "name": str,
    "base_url": str,
    "model": str,
    "api_key_env": str,
    "temperature": float,
    "seed": int,
    "price_input_per_mtok": float,
    "price_output_per_mtok": float,
    "slots": int,
}


def _parse_entry(index: int, raw: object) -> InstanceSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"instance #{index}: expected an object, got {type(raw).__name__}")
    unknown = set(raw) - set(_FIELDS)
    if unknown:
        raise ConfigError(f"instance #{index}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
    for required in ("name", "base_url", "model"):
        if not isinstance(raw.get(required), str) or not raw[required].strip():
            raise ConfigError(f"instance #{index}: field {required!r} is required and must be a non-empty string")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        kind = _FIELDS[key]
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            values[key] = float(value)
        elif kind is int and isinstance(value, int) and not isinstance(value, bool):
            values[key] = value
        elif kind is str and isinstance(value, str):
            values[key] = value
        else:
            raise ConfigError(f"instance #{index} ({raw['name']}): field {key!r} must be {kind.__name__}")
    if values.get("slots", 0) < 0:
        raise ConfigError(f"instance {values['name']!r}: slots must be >= 0 (0 uses SWARM_INSTANCE_SLOTS)")
    if not values["base_url"].startswith(("http://", "https://")):
        raise ConfigError(f"instance {values['name']!r}: base_url must start with http:// or https://")
    return InstanceSpec(**values)


def parse_instances(document: object) -> tuple[InstanceSpec, ...]:
    """Validate a decoded JSON document: a list of entries or ``{"instances": [...]}``."""
    if isinstance(document, dict) and "instances" in document:
        document = document["instances"]
    if not isinstance(document, list) or not document:
        raise ConfigError("instances: expected a non-empty list of instance objects")
    specs = tuple(_parse_entry(i, raw) for i, raw in enumerate(document))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"instances: duplicate name(s) {duplicates}")
    return specs


def load_instances(env: Mapping[str, str]) -> tuple[InstanceSpec, ...]:
    """Instances from ``SWARM_INSTANCES`` (inline JSON) or ``SWARM_INSTANCES_FILE`` (a JSON file)."""
    inline = env.get("SWARM_INSTANCES", "").strip()
    path = env.get("SWARM_INSTANCES_FILE", "").strip()
    if inline:
        try:
            return parse_instances(json.loads(inline))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"SWARM_INSTANCES is not valid JSON: {exc}") from None
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"SWARM_INSTANCES_FILE={path}: {exc.strerror}") from None
        try:
            return parse_instances(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"SWARM_INSTANCES_FILE={path} is not valid JSON: {exc}") from None
    raise ConfigError("no instances configured: set SWARM_INSTANCES_FILE (a JSON file) or SWARM_INSTANCES")
