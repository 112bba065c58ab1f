"""The report of one run: what the swarm answered and why (``quality_report`` sums up many runs).

Rendered by the orchestrator, not by each client, so the CLI, a web page and a script reading the
JSON all see the same numbers with the same definitions (docs/quality-gates.md). The JSON
documents are plain dictionaries with stable keys and lower-case enum names; the Markdown is for
people and may change.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from swarm.v1 import common_pb2, orchestrator_pb2 as pb


def _name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()


def status_label(value: int) -> str:
    return _name(pb.RunStatus, value, "RUN_STATUS_")


def _origin(value: int) -> str:
    return _name(pb.CandidateOrigin, value, "CANDIDATE_ORIGIN_")


def outcome_label(value: int) -> str:
    return _name(common_pb2.GateOutcome, value, "GATE_OUTCOME_")


def action_label(value: int) -> str:
    return _name(pb.AuditAction, value, "AUDIT_ACTION_")


def _refinement_outcome(value: int) -> str:
    return _name(pb.RefinementOutcome, value, "REFINEMENT_OUTCOME_")


def _limit(value: int) -> str | None:
    """The sandbox limit that stopped a candidate, or None when none did."""
    if value == common_pb2.SANDBOX_LIMIT_UNSPECIFIED:
        return None
    return _name(common_pb2.SandboxLimit, value, "SANDBOX_LIMIT_")


def _time(message: Any, field: str) -> str | None:
    if not message.HasField(field):
        return None
    return str(getattr(message, field).ToDatetime(tzinfo=dt.UTC).isoformat(timespec="seconds"))


def _round(value: float) -> float:
    return round(value, 4)


def _candidate(c: pb.Candidate) -> dict[str, Any]:
    s = c.scores
    return {
        "id": c.id,
        "rank": c.rank,
        "origin": _origin(c.origin),
        "instance": c.instance,
        "model": c.model,
        "overall": _round(s.overall),
        "correctness": _round(s.correctness),
        "completeness": _round(s.completeness),
        "style": _round(s.style),
        "centrality": _round(s.consensus),
        "dual_agreement": _round(s.dual_agreement),
        "behaviour_cluster_size": s.behaviour_cluster_size,
        "cluster_id": c.cluster_id,
        "visible_tests": {"passed": s.tests_passed, "total": s.tests_total},
        "generated_tests": {"passed": s.generated_passed, "total": s.generated_total},
        "failing_tests": [t.name for t in c.tests if not t.passed],
        # The vote multiplier it was ranked with; None for a refinement, which casts no vote.
        "reputation": _round(c.reputation) if c.reputation else None,
        "latency_ms": round(c.latency_ms, 1),
        "error": c.error,
        "sandbox_limit": _limit(c.limit),
        # What its sandboxed execution used (0 when it was not run or a limit killed it).
        "sandbox_cpu_ms": round(c.sandbox_cpu_ms, 1),
        "sandbox_peak_rss_mb": round(c.sandbox_peak_rss_kb / 1024, 1),
    }


def _usage(candidate: dict[str, Any]) -> str:
    if not candidate["sandbox_cpu_ms"]:
        return "-"
    return f"{candidate['sandbox_cpu_ms']:.0f} ms / {candidate['sandbox_peak_rss_mb']:.0f} MB"


def _gate(gate: common_pb2.GateDecision) -> dict[str, Any] | None:
    if gate.outcome == common_pb2.GATE_OUTCOME_UNSPECIFIED:
        return None
    return {
        "outcome": outcome_label(gate.outcome),
        "summary": gate.summary,
        "deciding_rules": list(gate.deciding_rules),
        "rules": [
            {
                "name": r.name,
                "kind": r.kind,
                "passed": r.passed,
                "on_fail": outcome_label(r.on_fail),
                "detail": r.detail,
            }
            for r in gate.rules
        ],
    }


def run_document(run: pb.Run) -> dict[str, Any]:
    """The run report as JSON-ready data."""
    final = None
    if run.HasField("final"):
        final = {
            "candidate_id": run.final.candidate_id,
            "origin": _origin(run.final.origin),
            "overall": _round(run.final.overall),
            "code": run.final.code,
        }
    refinement = None
    if run.HasField("refinement"):
        r = run.refinement
        refinement = {
            "outcome": _refinement_outcome(r.outcome),
            "kept": r.kept,
            "overall": _round(r.overall),
            "reason": r.reason,
        }
    c = run.consensus
    return {
        "run": {
            "id": run.id,
            "task": run.task,
            "status": status_label(run.status),
            "created_at": _time(run, "created_at"),
            "finished_at": _time(run, "finished_at"),
            "swarm_size": run.swarm_size,
            "quorum": run.quorum,
            "tests_found": run.tests_found,
            "generated_tests": run.generated_tests,
            "error": run.error,
        },
        "final": final,
        "candidates": [_candidate(candidate) for candidate in run.candidates],
        "consensus": {
            "reached": c.reached,
            "share": _round(c.share),
            "confidence": _round(c.confidence),
            "cluster_count": c.cluster_count,
            "basis": c.basis,
        },
        "clusters": [
            {"id": k.id, "candidates": list(k.candidate_ids), "representative": k.representative_id}
            for k in run.clusters
        ],
        "differences": run.analysis,
        "refinement": refinement,
        "gate": _gate(run.gate),
        "approvals": [
            {"actor": a.actor, "action": action_label(a.action), "time": _time(a, "time"), "comment": a.comment}
            for a in run.audit
        ],
        "feedback": [
            {
                "user": f.user,
                "rating": f.rating,
                "preferred_candidate_id": f.preferred_candidate_id,
                "comment": f.comment,
                "time": _time(f, "time"),
            }
            for f in run.feedback
        ],
        "failures": [
            {
                "slot": f.slot,
                "instance": f.instance,
                "kind": _name(pb.FailureKind, f.kind, "FAILURE_KIND_"),
                "reason": f.reason,
            }
            for f in run.failures
        ],
        "usage": {
            "prompt_tokens": run.usage.prompt_tokens,
            "completion_tokens": run.usage.completion_tokens,
            "cost_usd": round(run.usage.cost_usd, 6),
        },
    }


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _fence(text: str, language: str = "") -> list[str]:
    """A fenced block long enough that the text cannot close it early."""
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return [f"{ticks}{language}", text.rstrip(), ticks]


def _multiplier(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def run_markdown(run: pb.Run) -> str:
    """The run report for people."""
    doc = run_document(run)
    head = doc["run"]
    lines = [f"# Run {run.id}", ""]
    lines.append(f"- status: **{head['status']}**" + (f" ({cell(run.error)})" if run.error else ""))
    lines.append(f"- created: {head['created_at']}; finished: {head['finished_at'] or '-'}")
    lines.append(
        f"- swarm: {run.swarm_size} slot(s), quorum {run.quorum}; visible tests {run.tests_found}, "
        f"generated tests kept {run.generated_tests}"
    )
    lines += ["", "## Task", "", *_fence(run.task)]
    if doc["final"]:
        f = doc["final"]
        lines += ["", f"## Final answer: {f['candidate_id']} ({f['origin']}, overall {f['overall']:.3f})", ""]
        lines += _fence(run.final.code, "python")
    if run.candidates:
        lines += ["", "## Candidates", ""]
        lines.append(
            "| rank | id | origin | instance | model | overall | visible | generated | dual | cluster size "
            "| reputation | sandbox limit | sandbox CPU / peak | error |"
        )
        lines.append("|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|")
        for c in doc["candidates"]:
            visible, generated = c["visible_tests"], c["generated_tests"]
            lines.append(
                f"| {c['rank'] or '-'} | {c['id']} | {c['origin']} | {cell(c['instance'])} | {cell(c['model'])} "
                f"| {c['overall']:.3f} | {visible['passed']}/{visible['total']} "
                f"| {generated['passed']}/{generated['total']} | {c['dual_agreement']:.2f} "
                f"| {c['behaviour_cluster_size']} | {_multiplier(c['reputation'])} | {c['sandbox_limit'] or '-'} "
                f"| {_usage(c)} | {cell(c['error'][:80])} |"
            )
    consensus = doc["consensus"]
    verdict = "reached" if consensus["reached"] else "not reached"
    lines += [
        "",
        "## Consensus",
        "",
        f"{verdict}: {consensus['share']:.0%} of responses in the largest of {consensus['cluster_count']} "
        f"cluster(s), confidence {consensus['confidence']:.2f}"
        + (f", basis {consensus['basis']}" if consensus["basis"] else ""),
    ]
    for cluster in doc["clusters"]:
        lines.append(f"- cluster {cluster['id']}: {', '.join(cluster['candidates'])}")
    if run.analysis:
        lines += ["", "## Differences", "", *_fence(run.analysis)]
    if doc["refinement"]:
        r = doc["refinement"]
        lines += ["", "## Refinement", "", f"{r['outcome']} ({cell(r['reason'])})"]
    if doc["gate"]:
        gate = doc["gate"]
        lines += ["", "## Quality gates", "", f"**{gate['outcome']}**: {cell(gate['summary'])}", ""]
        lines += ["| rule | kind | result | on fail | detail |", "|---|---|---|---|---|"]
        for rule in gate["rules"]:
            result = "pass" if rule["passed"] else "FAIL"
            lines.append(f"| {rule['name']} | {rule['kind']} | {result} | {rule['on_fail']} | {cell(rule['detail'])} |")
    if doc["approvals"]:
        lines += ["", "## Approvals", ""]
        for a in doc["approvals"]:
            comment = f": {cell(a['comment'])}" if a["comment"] else ""
            lines.append(f"- {a['time']} **{a['action']}** by {a['actor']}{comment}")
    if doc["feedback"]:
        lines += ["", "## Feedback", ""]
        for f in doc["feedback"]:
            prefer = f", preferred {f['preferred_candidate_id']}" if f["preferred_candidate_id"] else ""
            comment = f": {cell(f['comment'])}" if f["comment"] else ""
            lines.append(f"- {f['time']} {f['user']} rated {f['rating']}/5{prefer}{comment}")
    if doc["failures"]:
        lines += ["", "## Failures", ""]
        lines += [
            f"- slot {f['slot'] + 1} on {f['instance']} ({f['kind']}): {cell(f['reason'])}" for f in doc["failures"]
        ]
    usage = doc["usage"]
    lines += [
        "",
        "## Usage",
        "",
        f"{usage['prompt_tokens']} prompt / {usage['completion_tokens']} completion tokens, ${usage['cost_usd']:.4f}",
    ]
    return "\n".join(lines) + "\n"


def render(document: dict[str, Any]) -> str:
    """JSON for a report document: stable key order, two-space indent."""
    return json.dumps(document, indent=2) + "\n"
