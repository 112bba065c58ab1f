"""Reports read the typed outcomes (refinement, sandbox limit), never the wording beside them."""

from __future__ import annotations

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarm_orchestrator import quality_report, report


def _run(
    outcome: pb.RefinementOutcome, reason: str, *, limit: common_pb2.SandboxLimit = common_pb2.SANDBOX_LIMIT_UNSPECIFIED
) -> pb.Run:
    run = pb.Run(id="r", status=pb.RUN_STATUS_SUCCEEDED)
    run.refinement.CopyFrom(pb.Refined(outcome=outcome, kept=outcome == pb.REFINEMENT_OUTCOME_KEPT, reason=reason))
    run.candidates.append(pb.Candidate(id="c1", rank=1, limit=limit, error="stopped"))
    return run


def test_the_refinement_outcome_comes_from_the_enum() -> None:
    # Wording that says the opposite of the enum: the enum decides.
    runs = [
        _run(pb.REFINEMENT_OUTCOME_DROPPED, "skipped-looking words"),
        _run(pb.REFINEMENT_OUTCOME_KEPT, "dropped-looking words"),
        _run(pb.REFINEMENT_OUTCOME_SKIPPED, "kept-looking words"),
    ]
    metrics = quality_report.quality_metrics(runs, {}, {}, None, None)
    assert metrics["refinement"] == {"attempted": 2, "kept": 1, "skipped": 1, "kept_rate": 0.5}
    assert report.run_document(runs[0])["refinement"]["outcome"] == "dropped"
    assert "## Refinement\n\nkept (dropped-looking words)" in report.run_markdown(runs[1])


def test_a_candidates_sandbox_limit_is_named_in_both_formats() -> None:
    run = _run(pb.REFINEMENT_OUTCOME_SKIPPED, "skipped: settled", limit=common_pb2.SANDBOX_LIMIT_MEMORY)
    assert report.run_document(run)["candidates"][0]["sandbox_limit"] == "memory"
    assert "| memory | - | stopped |" in report.run_markdown(run)  # killed: no usage was reported
    clean = _run(pb.REFINEMENT_OUTCOME_SKIPPED, "skipped: settled")
    assert report.run_document(clean)["candidates"][0]["sandbox_limit"] is None


def test_what_a_candidates_execution_used_is_in_both_formats() -> None:
    run = _run(pb.REFINEMENT_OUTCOME_SKIPPED, "skipped: settled")
    run.candidates[0].sandbox_cpu_ms = 41.26
    run.candidates[0].sandbox_peak_rss_kb = 20_480
    candidate = report.run_document(run)["candidates"][0]
    assert (candidate["sandbox_cpu_ms"], candidate["sandbox_peak_rss_mb"]) == (41.3, 20.0)
    assert "| - | 41 ms / 20 MB | stopped |" in report.run_markdown(run)
