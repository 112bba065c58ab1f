"""A real Prometheus (Debian's package) scrapes the in-process stack and finds the swarm's series."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import Stages, orchestrator
from swarm_cli.children import stop
from swarm_cli.prometheus import RULES, Prometheus, start_prometheus
from tests.fakes.openai_server import Behaviour
from tests.fakes.replies import FIB_REPLY
from tests.orchestrator.test_swarm import FIB_TASK, collect, fakes, named

FOUND_WITHIN_S = 30.0


async def until_found(prometheus: Prometheus, expression: str, count: int = 1) -> list[dict[str, Any]]:
    """The query's result once it has ``count`` series (Prometheus scrapes every second)."""
    deadline = time.monotonic() + FOUND_WITHIN_S
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = await prometheus.query(expression)
        if len(result) >= count:
            return result
        await asyncio.sleep(0.5)
    raise AssertionError(f"Prometheus did not find {count} series of {expression!r}: {result}")


async def test_prometheus_scrapes_every_service_and_finds_the_run(
    stages: Stages, sqlite_url: str, tmp_path: Path
) -> None:
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY), (Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), sqlite_url, SWARM_REFINE="false") as orch,
    ):
        assert orch.server.metrics is not None and orch.server.metrics.port
        targets = {name: f"127.0.0.1:{port}" for name, port in stages.metrics_ports.items()}
        targets["orchestrator"] = f"127.0.0.1:{orch.server.metrics.port}"
        assert set(targets) == {"orchestrator", "collator", "assessor", "refiner"}
        prometheus = await start_prometheus(targets, tmp_path / "prometheus", port=0, interval_s=1.0)
        try:
            events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2))
            assert error is None
            status = pb.RunStatus.Name(events[-1].done.status).removeprefix("RUN_STATUS_").lower()

            runs = await until_found(prometheus, "swarm_runs_total")
            assert [(r["metric"]["status"], r["metric"]["job"], r["value"][1]) for r in runs] == [
                (status, "swarm-orchestrator", "1")
            ]
            up = await until_found(prometheus, 'up{job=~"swarm-.+"} == 1', count=4)
            assert {r["metric"]["job"] for r in up} == {f"swarm-{name}" for name in targets}
            assert await until_found(prometheus, "swarm_queue_waiting_runs")
            assert await until_found(prometheus, "swarm_sandbox_executions_total")
            # The repository's alert rules are loaded, healthy, and nothing fires after one good run.
            async with httpx.AsyncClient() as http:
                groups = (await http.get(f"{prometheus.url}/api/v1/rules")).json()["data"]["groups"]
            assert RULES.is_file() and {g["name"] for g in groups} == {"swarm-slo-recording", "swarm-alerts"}
            assert all(rule["health"] != "err" for group in groups for rule in group["rules"])
            assert not await prometheus.query('ALERTS{alertstate="firing"}')
        finally:
            await stop([prometheus.child], grace=5.0)
