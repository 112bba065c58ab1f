"""Budget configuration: defaults from the environment, per-caller and per-tenant overrides from
SWARM_BUDGETS_FILE, and a malformed file refused at start-up naming what to fix; the bound and
the shrink it allows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_orchestrator.budget import remaining_ratio
from swarm_orchestrator.budget_config import Budgets, Limits
from swarm_orchestrator.cost import RunShape, largest_fitting, upper_bound_usd
from swarmlib import ConfigError, InstanceSpec


def test_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "budgets.json"
    path.write_text(json.dumps({"callers": {"acme/alice": {"daily_usd": 2}}, "tenants": {"acme": {"monthly_usd": 50}}}))
    budgets = Budgets.from_env(
        {"SWARM_BUDGET_DAILY_USD": "1", "SWARM_BUDGET_MONTHLY_USD": "10", "SWARM_BUDGETS_FILE": str(path)}
    )
    assert budgets.for_caller("acme/bob") == Limits(1.0, 10.0)
    assert budgets.for_caller("acme/alice") == Limits(2.0, 10.0)  # the month it leaves out keeps the default
    assert budgets.for_tenant("acme") == Limits(0.0, 50.0)
    assert budgets.for_tenant("other") == Limits()
    assert not Budgets.from_env({}).any


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("[]", '"callers" and/or "tenants"'),
        ('{"callers": {"alice": {"daily_usd": 1}}}', "tenant/user"),
        ('{"tenants": {"acme": {"daily_usd": -1}}}', "acme.daily_usd=-1"),
        ('{"tenants": {"acme": {"weekly_usd": 1}}}', '"daily_usd" and/or "monthly_usd"'),
        ("{not json", "not JSON"),
    ],
)
def test_a_malformed_file_is_refused(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "budgets.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="SWARM_BUDGETS_FILE") as error:
        Budgets.from_env({"SWARM_BUDGETS_FILE": str(path)})
    assert words in str(error.value)


def test_the_bound_grows_with_slots_and_shrinks_to_fit() -> None:
    spec = InstanceSpec(name="p", base_url="", model="", price_input_per_mtok=1.0, price_output_per_mtok=2.0)
    shape = RunShape("Write fib(n).", 4, 1, 2, 512)
    one = upper_bound_usd(RunShape("Write fib(n).", 1, 1, 2, 512), [spec])
    assert upper_bound_usd(shape, [spec]) > one > 0
    assert largest_fitting(shape, [spec], one) == 1
    assert largest_fitting(shape, [spec], one * 0.99) == 0
    free = InstanceSpec(name="f", base_url="", model="")
    assert upper_bound_usd(shape, [free]) == 0


def test_remaining_ratio_is_the_tightest_per_scope() -> None:
    uses = [
        pb.BudgetUse(scope="caller", name="a/x", period="day", limit_usd=10, spent_usd=2, reserved_usd=3),
        pb.BudgetUse(scope="caller", name="a/y", period="day", limit_usd=10, spent_usd=9),
        pb.BudgetUse(scope="tenant", name="a", period="month", limit_usd=0, spent_usd=9),
    ]
    assert remaining_ratio(uses) == {"caller_day": pytest.approx(0.1)}
