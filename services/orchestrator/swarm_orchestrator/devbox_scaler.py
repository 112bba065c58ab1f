"""When the devbox pool grows or shrinks: a pure function of the policy, what the scaler remembers
and what it sees now (the queue's depth, which devboxes serve and since when each is idle).

Kept apart from the loop that acts on it (``devbox_scaling``) so every rule is tested without a
devbox, a queue or a clock. The rules and why they are what they are: docs/queue.md, "Scaling the
devbox pool".
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

from swarmlib import env_float, env_int, require


@dataclass(frozen=True)
class ScalePolicy:
    """Limits and timings of the devbox pool's size (``SWARM_DEVBOX_MIN`` … ``_COOLDOWN_S``).

    ``minimum == maximum`` (the default: both are ``SWARM_DEVBOX_INSTANCES``) is a fixed pool.
    """

    minimum: int = 0
    maximum: int = 0
    grow_queue: int = 1
    grow_after_s: float = 30.0
    shrink_idle_s: float = 600.0
    cooldown_s: float = 60.0
    interval_s: float = 5.0

    def __post_init__(self) -> None:
        require(
            [
                (
                    self.minimum <= self.maximum,
                    f"SWARM_DEVBOX_MIN={self.minimum} must be <= SWARM_DEVBOX_MAX={self.maximum}",
                ),
                (self.grow_queue >= 1, f"SWARM_DEVBOX_GROW_QUEUE={self.grow_queue} must be >= 1 (waiting runs)"),
                (self.grow_after_s >= 0, f"SWARM_DEVBOX_GROW_AFTER_S={self.grow_after_s} must be >= 0"),
                (self.shrink_idle_s >= 0, f"SWARM_DEVBOX_SHRINK_IDLE_S={self.shrink_idle_s} must be >= 0"),
                (self.cooldown_s >= 0, f"SWARM_DEVBOX_COOLDOWN_S={self.cooldown_s} must be >= 0"),
                (self.interval_s > 0, f"SWARM_DEVBOX_SCALE_INTERVAL_S={self.interval_s} must be > 0"),
            ]
        )

    @property
    def enabled(self) -> bool:
        return self.maximum > self.minimum

    @classmethod
    def from_env(cls, env: Mapping[str, str], count: int) -> ScalePolicy:
        """``SWARM_DEVBOX_MIN`` and ``SWARM_DEVBOX_MAX`` default to ``count`` (no scaling)."""
        return cls(
            minimum=env_int(env, "SWARM_DEVBOX_MIN", count),
            maximum=env_int(env, "SWARM_DEVBOX_MAX", count),
            grow_queue=env_int(env, "SWARM_DEVBOX_GROW_QUEUE", cls.grow_queue),
            grow_after_s=env_float(env, "SWARM_DEVBOX_GROW_AFTER_S", cls.grow_after_s),
            shrink_idle_s=env_float(env, "SWARM_DEVBOX_SHRINK_IDLE_S", cls.shrink_idle_s),
            cooldown_s=env_float(env, "SWARM_DEVBOX_COOLDOWN_S", cls.cooldown_s),
            interval_s=env_float(env, "SWARM_DEVBOX_SCALE_INTERVAL_S", cls.interval_s),
        )


class Action(enum.Enum):
    HOLD = "hold"
    GROW = "grow"
    SHRINK = "shrink"


@dataclass(frozen=True)
class Seen:
    """What the scaler sees at ``now``.

    ``serving``: the devbox instances in the pool now, in slot order; ``parked``: the slots it may
    grow into, in slot order; ``idle_since``: per serving devbox, since when no run holds a slot
    on it and no call is in flight (None: in use now); ``changing``: a grown devbox is still
    booting or a shrunk one still draining.
    """

    now: float
    depth: int
    serving: tuple[str, ...]
    parked: tuple[str, ...]
    idle_since: Mapping[str, float | None]
    changing: bool = False


@dataclass(frozen=True)
class Memory:
    """What the scaler carries from one look to the next."""

    above_since: float | None = None  # since when the depth has stayed >= grow_queue
    last_change: float = -math.inf  # when it last grew or shrank


@dataclass(frozen=True)
class Decision:
    action: Action
    name: str = ""  # the slot to grow into or the devbox to shrink
    reason: str = ""


def observe(policy: ScalePolicy, memory: Memory, seen: Seen) -> Memory:
    """``memory`` after seeing ``seen``, no step taken (a growth the budget refused takes none)."""
    if seen.depth < policy.grow_queue:
        return Memory(None, memory.last_change)
    return Memory(seen.now if memory.above_since is None else memory.above_since, memory.last_change)


def decide(policy: ScalePolicy, memory: Memory, seen: Seen) -> tuple[Decision, Memory]:
    """Grow by one while the queue has stayed deep, shrink by one devbox idle long enough, else hold.

    One step at a time: nothing while a step is under way or within ``cooldown_s`` of the last.
    A step restarts the wait for a deep queue, so the next growth needs the queue still deep after
    another ``grow_after_s``.
    """
    now = seen.now
    above = seen.depth >= policy.grow_queue
    memory = observe(policy, memory, seen)
    above_since = memory.above_since
    if seen.changing:
        return Decision(Action.HOLD, reason="a devbox is still booting or draining"), memory
    if now - memory.last_change < policy.cooldown_s:
        return Decision(Action.HOLD, reason="cooling down after the last step"), memory
    stepped = Memory(now if above else None, now)
    if len(seen.serving) < policy.minimum and seen.parked:
        return Decision(Action.GROW, seen.parked[0], f"below SWARM_DEVBOX_MIN={policy.minimum}"), stepped
    if above_since is not None and now - above_since >= policy.grow_after_s:
        if len(seen.serving) >= policy.maximum or not seen.parked:
            return Decision(Action.HOLD, reason=f"at SWARM_DEVBOX_MAX={policy.maximum}"), memory
        reason = f"{seen.depth} runs waiting for {now - above_since:.0f} s"
        return Decision(Action.GROW, seen.parked[0], reason), stepped
    if seen.depth == 0 and len(seen.serving) > policy.minimum:
        for name in reversed(seen.serving):  # the last grown first: the pool keeps devbox-1 … devbox-k
            since = seen.idle_since.get(name)
            if since is not None and now - since >= policy.shrink_idle_s:
                return Decision(Action.SHRINK, name, f"no run on it for {now - since:.0f} s"), stepped
    return Decision(Action.HOLD), memory
