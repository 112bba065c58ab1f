"""The devbox pool's sizing rules as a pure function: grow, hold, shrink, the limits and the cooldown."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from swarm_orchestrator.devbox_config import DevboxInstancesConfig
from swarm_orchestrator.devbox_scaler import Action, Memory, ScalePolicy, Seen, decide
from swarmlib import ConfigError

POLICY = ScalePolicy(minimum=2, maximum=4, grow_queue=3, grow_after_s=10.0, shrink_idle_s=60.0, cooldown_s=30.0)
TWO = ("devbox-1", "devbox-2")
SPARE = ("devbox-3", "devbox-4")


def seen(
    now: float,
    depth: int,
    serving: tuple[str, ...] = TWO,
    *,
    idle_since: Mapping[str, float | None] | None = None,
    changing: bool = False,
) -> Seen:
    """What the scaler sees; a serving devbox not in ``idle_since`` is in use."""
    parked = tuple(n for n in ("devbox-1", "devbox-2", "devbox-3", "devbox-4") if n not in serving)
    idle: dict[str, float | None] = {name: None for name in serving}
    idle.update(idle_since or {})
    return Seen(now, depth, serving, parked, idle, changing)


def test_grows_by_one_only_once_the_queue_stayed_deep_for_grow_after_s() -> None:
    decision, memory = decide(POLICY, Memory(), seen(100.0, 3))
    assert decision.action is Action.HOLD and memory.above_since == 100.0
    decision, memory = decide(POLICY, memory, seen(109.0, 5))
    assert decision.action is Action.HOLD and memory.above_since == 100.0
    decision, memory = decide(POLICY, memory, seen(110.0, 4))
    assert (decision.action, decision.name) == (Action.GROW, "devbox-3")
    assert "4 runs waiting for 10 s" in decision.reason
    assert memory == Memory(above_since=110.0, last_change=110.0)


def test_a_queue_that_dips_below_the_threshold_starts_the_wait_again() -> None:
    _, memory = decide(POLICY, Memory(), seen(100.0, 3))
    _, memory = decide(POLICY, memory, seen(105.0, 2))
    assert memory.above_since is None
    decision, memory = decide(POLICY, memory, seen(111.0, 3))
    assert decision.action is Action.HOLD and memory.above_since == 111.0


def test_one_step_at_a_time_nothing_while_a_devbox_boots_or_drains() -> None:
    memory = Memory(above_since=0.0)
    decision, kept = decide(POLICY, memory, seen(100.0, 9, changing=True))
    assert decision.action is Action.HOLD and "booting or draining" in decision.reason
    assert kept == memory


def test_cooldown_after_a_step_then_the_queue_must_stay_deep_again() -> None:
    memory = Memory(above_since=110.0, last_change=110.0)
    three = ("devbox-1", "devbox-2", "devbox-3")
    decision, memory = decide(POLICY, memory, seen(139.0, 9, three))
    assert decision.action is Action.HOLD and "cooling down" in decision.reason
    decision, memory = decide(POLICY, memory, seen(140.0, 9, three))
    assert (decision.action, decision.name) == (Action.GROW, "devbox-4")


def test_never_above_the_maximum() -> None:
    four = TWO + SPARE
    decision, memory = decide(POLICY, Memory(above_since=0.0), seen(100.0, 50, four))
    assert decision.action is Action.HOLD and "SWARM_DEVBOX_MAX=4" in decision.reason
    assert memory.last_change == -math.inf  # a hold starts no cooldown


def test_shrinks_the_last_devbox_idle_for_shrink_idle_s_when_nothing_waits() -> None:
    three = ("devbox-1", "devbox-2", "devbox-3")
    idle: dict[str, float | None] = {"devbox-3": 50.0}  # 1 and 2 in use
    decision, _ = decide(POLICY, Memory(), seen(109.0, 0, three, idle_since=idle))
    assert decision.action is Action.HOLD  # idle for 59 s only
    decision, memory = decide(POLICY, Memory(), seen(110.0, 0, three, idle_since=idle))
    assert (decision.action, decision.name) == (Action.SHRINK, "devbox-3")
    assert memory.last_change == 110.0
    # All idle: the last grown goes first, so the pool stays devbox-1 … devbox-k.
    idle = {"devbox-1": 0.0, "devbox-2": 0.0, "devbox-3": 0.0}
    decision, _ = decide(POLICY, Memory(), seen(500.0, 0, three, idle_since=idle))
    assert (decision.action, decision.name) == (Action.SHRINK, "devbox-3")


def test_a_busy_devbox_or_a_waiting_run_keeps_the_pool() -> None:
    three = ("devbox-1", "devbox-2", "devbox-3")
    assert decide(POLICY, Memory(), seen(500.0, 0, three))[0].action is Action.HOLD  # all in use
    idle = {"devbox-1": 0.0, "devbox-2": 0.0, "devbox-3": 0.0}
    assert decide(POLICY, Memory(), seen(500.0, 1, three, idle_since=idle))[0].action is Action.HOLD


def test_never_below_the_minimum_and_back_up_to_it() -> None:
    idle = {"devbox-1": 0.0, "devbox-2": 0.0}
    assert decide(POLICY, Memory(), seen(500.0, 0, TWO, idle_since=idle))[0].action is Action.HOLD
    decision, _ = decide(POLICY, Memory(), seen(500.0, 0, ("devbox-1",)))
    assert (decision.action, decision.name) == (Action.GROW, "devbox-2")
    assert "SWARM_DEVBOX_MIN=2" in decision.reason


def test_policy_from_env_defaults_to_a_fixed_pool_and_checks_its_limits() -> None:
    fixed = ScalePolicy.from_env({}, 2)
    assert (fixed.minimum, fixed.maximum, fixed.enabled) == (2, 2, False)
    env = {"SWARM_DEVBOX_MIN": "1", "SWARM_DEVBOX_MAX": "5", "SWARM_DEVBOX_GROW_QUEUE": "4"}
    scaled = ScalePolicy.from_env(env, 2)
    assert (scaled.minimum, scaled.maximum, scaled.grow_queue, scaled.enabled) == (1, 5, 4, True)
    with pytest.raises(ConfigError, match="SWARM_DEVBOX_MIN=3 must be <= SWARM_DEVBOX_MAX=2"):
        ScalePolicy.from_env({"SWARM_DEVBOX_MIN": "3"}, 2)
    with pytest.raises(ConfigError, match="SWARM_DEVBOX_GROW_QUEUE=0"):
        ScalePolicy.from_env({"SWARM_DEVBOX_GROW_QUEUE": "0"}, 2)


def test_devbox_config_names_every_slot_up_to_the_maximum() -> None:
    base = {"SWARM_DEVBOX_BLUEPRINT": "bpt_qwen", "RUNLOOP_API_KEY": "rl_k"}
    config = DevboxInstancesConfig.from_env({**base, "SWARM_DEVBOX_INSTANCES": "2", "SWARM_DEVBOX_MAX": "4"})
    assert config.names == ["devbox-1", "devbox-2", "devbox-3", "devbox-4"]
    assert (config.scaling.minimum, config.scaling.maximum) == (2, 4)
    with pytest.raises(ConfigError, match="1 <= MIN <= INSTANCES <= MAX <= 16"):
        DevboxInstancesConfig.from_env({**base, "SWARM_DEVBOX_INSTANCES": "2", "SWARM_DEVBOX_MAX": "17"})
    with pytest.raises(ConfigError, match="need SWARM_DEVBOX_INSTANCES"):
        DevboxInstancesConfig.from_env({**base, "SWARM_DEVBOX_MAX": "3"})
