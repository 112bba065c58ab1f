"""The budgets callers spend against: per caller (tenant/user) and per tenant, per UTC day and month.

Defaults per caller come from ``SWARM_BUDGET_DAILY_USD`` / ``SWARM_BUDGET_MONTHLY_USD`` (unset or 0:
no limit); ``SWARM_BUDGETS_FILE`` names a JSON file of overrides, read once at start-up:

    {"callers": {"acme/alice": {"daily_usd": 2, "monthly_usd": 20}},
     "tenants": {"acme": {"daily_usd": 10, "monthly_usd": 100}}}

A caller's entry replaces the defaults for that caller (a period it leaves out keeps the default);
a tenant's entry is a limit on the sum of all its callers. docs/budgets.md gives the whole policy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmlib import ConfigError, env_float, env_str

PERIODS = ("day", "month")


@dataclass(frozen=True)
class Limits:
    """USD per UTC day and per UTC month; 0 means no limit for that period."""

    daily_usd: float = 0.0
    monthly_usd: float = 0.0

    def of(self, period: str) -> float:
        return self.daily_usd if period == "day" else self.monthly_usd

    @property
    def any(self) -> bool:
        return self.daily_usd > 0 or self.monthly_usd > 0


@dataclass(frozen=True)
class Budgets:
    """Every configured budget; ``for_caller`` / ``for_tenant`` resolve the overrides."""

    default: Limits = field(default_factory=Limits)
    callers: Mapping[str, Limits] = field(default_factory=dict)
    tenants: Mapping[str, Limits] = field(default_factory=dict)

    def for_caller(self, caller: str) -> Limits:
        return self.callers.get(caller, self.default)

    def for_tenant(self, tenant: str) -> Limits:
        return self.tenants.get(tenant, Limits())

    @property
    def any(self) -> bool:
        return (
            self.default.any or any(x.any for x in self.callers.values()) or any(x.any for x in self.tenants.values())
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Budgets:
        default = Limits(
            env_float(env, "SWARM_BUDGET_DAILY_USD", 0.0, minimum=0.0),
            env_float(env, "SWARM_BUDGET_MONTHLY_USD", 0.0, minimum=0.0),
        )
        path = env_str(env, "SWARM_BUDGETS_FILE", "")
        if not path:
            return cls(default)
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"SWARM_BUDGETS_FILE={path}: cannot read it ({exc.strerror})") from None
        except ValueError as exc:
            raise ConfigError(f"SWARM_BUDGETS_FILE={path}: not JSON ({exc})") from None
        if not isinstance(raw, dict) or set(raw) - {"callers", "tenants"}:
            raise ConfigError(f'SWARM_BUDGETS_FILE={path}: use an object with "callers" and/or "tenants" only')
        callers = {name: _limits(path, name, entry, default) for name, entry in _section(path, raw, "callers").items()}
        for name in callers:
            if name.count("/") != 1:
                raise ConfigError(f"SWARM_BUDGETS_FILE={path}: caller {name!r} must be written tenant/user")
        tenants = {name: _limits(path, name, entry, Limits()) for name, entry in _section(path, raw, "tenants").items()}
        return cls(default, callers, tenants)


def _section(path: str, raw: dict[str, Any], name: str) -> dict[str, Any]:
    section = raw.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f'SWARM_BUDGETS_FILE={path}: "{name}" must be an object of name -> limits')
    return section


def _limits(path: str, name: str, entry: Any, base: Limits) -> Limits:
    if not isinstance(entry, dict) or set(entry) - {"daily_usd", "monthly_usd"}:
        raise ConfigError(f'SWARM_BUDGETS_FILE={path}: {name!r} takes "daily_usd" and/or "monthly_usd" only')
    values = {}
    for key in ("daily_usd", "monthly_usd"):
        value = entry.get(key, getattr(base, key))
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"SWARM_BUDGETS_FILE={path}: {name}.{key}={value!r} must be a number >= 0")
        values[key] = float(value)
    return Limits(**values)
