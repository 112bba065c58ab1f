"""One run is one trace from its first hop, exported over OTLP to a real receiver.

The four services run as processes (``python -m swarm_<service>``) and ``swarm run`` as a fifth,
each exporting its spans with its own OTLP exporter (gRPC, batched) to ``swarm_bench.otlp_receiver``
on 127.0.0.1, as they would to Jaeger. The trace must be one tree: the CLI's ``swarm run`` span at
the root, the orchestrator's ``RunSwarm`` under the CLI's call, every instance call and the
collator, assessor and refiner under the orchestrator, the run id on the root and on ``RunSwarm``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from contextlib import ExitStack
from pathlib import Path

from swarm_bench.otlp_receiver import CLIENT_KIND, SERVER_KIND, OtlpReceiver, ReceivedSpan
from tests.fakes.openai_server import Behaviour, FakeLLMServer
from tests.test_shutdown import FIB_TASK, ROOT, free_port, health_stub, launched, service_env, wait_serving
from tests.test_tracing import solve_or_refine

STAGES = ("collator", "assessor", "refiner")
HOPS = {
    "/swarm.v1.CollatorService/Collate": "swarm-collator",
    "/swarm.v1.AssessorService/Assess": "swarm-assessor",
    "/swarm.v1.RefinerService/Refine": "swarm-refiner",
}
RUN_SWARM = "/swarm.v1.OrchestratorService/RunSwarm"


def otel_env(endpoint: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "100"}


def complete(spans: list[ReceivedSpan]) -> bool:
    """The CLI's root and every hop of its trace have arrived."""
    roots = [s for s in spans if s.service == "swarm-cli" and s.name == "swarm run"]
    if not roots:
        return False
    names = {s.name for s in spans if s.trace_id == roots[0].trace_id and s.kind == SERVER_KIND}
    return {RUN_SWARM, *HOPS} <= names


async def test_a_run_is_one_trace_from_the_cli_through_every_hop_over_otlp(tmp_path: Path) -> None:
    async with (
        OtlpReceiver() as receiver,
        FakeLLMServer(behaviour=Behaviour.ANSWER, reply=solve_or_refine) as llm,
    ):
        ports = {name: free_port() for name in (*STAGES, "orchestrator")}
        with ExitStack() as processes:
            launched_ = {}
            for name, port in ports.items():
                env = {**service_env(name, port, tmp_path, llm_url=llm.base_url), **otel_env(receiver.endpoint)}
                if name == "orchestrator":
                    env.update({f"SWARM_{stage.upper()}_TARGET": f"127.0.0.1:{ports[stage]}" for stage in STAGES})
                launched_[name] = processes.enter_context(launched(name, env, tmp_path / f"{name}.log"))
            for name, port in ports.items():
                async with health_stub(port) as health:
                    await wait_serving(launched_[name], health, tmp_path / f"{name}.log", 60.0)

            cli_env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "OTEL_"))}
            cli_env.update(otel_env(receiver.endpoint), SWARM_API_KEY=(tmp_path / "cli-key").read_text().strip())
            cli = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "swarm_cli.main",
                "--target",
                f"127.0.0.1:{ports['orchestrator']}",
                "--plaintext",
                "run",
                FIB_TASK,
                "--size",
                "2",
                cwd=ROOT,
                env=cli_env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _out, err = await asyncio.wait_for(cli.communicate(), timeout=120)
            assert cli.returncode == 0, err.decode()
            spans = await receiver.wait_for(complete, timeout_s=30)

    assert complete(spans), sorted({(s.service, s.name) for s in spans})
    root = next(s for s in spans if s.service == "swarm-cli" and s.name == "swarm run")
    assert f"trace: {root.trace_id}" in err.decode()  # what the user takes to Jaeger
    run = receiver.trace(root.trace_id)
    by_id = {s.span_id: s for s in run}
    assert root.parent_id == ""
    assert all(s.parent_id in by_id for s in run if s is not root), "a span of the run hangs outside its tree"

    run_id = root.attributes["swarm.run_id"]
    assert isinstance(run_id, str) and f"run {run_id}" in err.decode()
    (run_swarm,) = [s for s in run if s.name == RUN_SWARM and s.kind == SERVER_KIND]
    assert run_swarm.service == "swarm-orchestrator" and run_swarm.attributes["swarm.run_id"] == run_id
    caller = by_id[run_swarm.parent_id]
    assert (caller.service, caller.kind, caller.parent_id) == ("swarm-cli", CLIENT_KIND, root.span_id)

    def under_run_swarm(span: ReceivedSpan) -> bool:
        while span.parent_id:
            if span.parent_id == run_swarm.span_id:
                return True
            span = by_id[span.parent_id]
        return False

    llm_calls = [s for s in run if s.name == "llm.chat"]
    assert len(llm_calls) >= 3  # two answers and at least one refinement (plus the test writer)
    assert all(s.service == "swarm-orchestrator" or s.service == "swarm-refiner" for s in llm_calls)
    assert all(under_run_swarm(s) for s in llm_calls)
    for method, service in HOPS.items():
        servers = [s for s in run if s.name == method and s.kind == SERVER_KIND]
        assert servers and all(s.service == service for s in servers), method
        for server in servers:
            client = by_id[server.parent_id]
            assert (client.service, client.kind) == ("swarm-orchestrator", CLIENT_KIND)
            assert under_run_swarm(server)
