"""Typed readers for environment variables that fail fast with a message naming the variable.

Each service builds one frozen config object from these at start-up and passes it down;
nothing deeper reads the environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ._errors import ConfigError


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    """A string variable; empty counts as unset."""
    value = env.get(name, "").strip()
    return value or default


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int | None = None) -> int:
    """An integer variable, optionally bounded below."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float | None = None) -> float:
    """A float variable, optionally bounded below."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A boolean variable: 1/true/yes/on or 0/false/no/off."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def require(checks: Iterable[tuple[bool, str]]) -> None:
    """Refuse a configuration at the first check that fails, with that check's message (which
    names the variable and the accepted values)."""
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
