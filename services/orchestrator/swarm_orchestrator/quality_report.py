"""Quality metrics over the runs of a time window, as JSON-ready data and as Markdown.

The definitions are written out in ``quality_metrics`` and in docs/quality-gates.md ("Reports").
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Any

from swarm.v1 import common_pb2, orchestrator_pb2 as pb

from .report import action_label, cell, outcome_label, status_label
from .reputation import INSTANCE, MODEL, Snapshot, Tally


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _reputation_rows(now: Snapshot, before: Snapshot, scope: int) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(k for k in now if k[0] == scope):
        tally, earlier = now[key], before.get(key, Tally())
        rows.append(
            {
                "name": key[1],
                "observations": tally.observations,
                "mean": round(tally.mean, 4),
                "multiplier": round(tally.multiplier, 4),
                "multiplier_before": round(earlier.multiplier, 4),
                "moved": round(tally.multiplier - earlier.multiplier, 4),
            }
        )
    return rows


def quality_metrics(
    runs: Sequence[pb.Run],
    now: Snapshot,
    before: Snapshot,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> dict[str, Any]:
    """Aggregate quality over ``runs`` (those created in [since, until)).

    Definitions: *finished* runs are all but RUNNING ones; *success rate* is SUCCEEDED (including
    approved) over finished; *answered* runs are those with a final answer (whatever the gates
    said); *consensus rate* and *mean overall* are over answered runs; *refinement kept rate* is
    kept over attempted refinements (skipped ones are not attempts); *reputation* is per model,
    with its multiplier now and at ``since`` (no history before it: 1.0).
    """
    statuses = Counter(status_label(run.status) for run in runs)
    finished = [run for run in runs if run.status != pb.RUN_STATUS_RUNNING]
    answered = [run for run in runs if run.HasField("final")]
    refinements = [run.refinement for run in runs if run.HasField("refinement")]
    attempted = [r for r in refinements if r.outcome in (pb.REFINEMENT_OUTCOME_KEPT, pb.REFINEMENT_OUTCOME_DROPPED)]
    skipped = [r for r in refinements if r.outcome == pb.REFINEMENT_OUTCOME_SKIPPED]
    gated = [run.gate for run in runs if run.gate.outcome != common_pb2.GATE_OUTCOME_UNSPECIFIED]
    deciding = Counter(
        name for gate in gated if gate.outcome != common_pb2.GATE_OUTCOME_PASS for name in gate.deciding_rules
    )
    actions = Counter(action_label(entry.action) for run in runs for entry in run.audit)
    ratings = [f.rating for run in runs for f in run.feedback]
    return {
        "window": {
            "since": since.isoformat(timespec="seconds") if since else None,
            "until": until.isoformat(timespec="seconds") if until else None,
        },
        "runs": len(runs),
        "status": dict(sorted(statuses.items())),
        "success_rate": _rate(statuses.get("succeeded", 0), len(finished)),
        "consensus_rate": _rate(sum(run.consensus.reached for run in answered), len(answered)),
        "mean_overall": _mean([run.final.overall for run in answered]),
        "refinement": {
            "attempted": len(attempted),
            "kept": sum(r.kept for r in attempted),
            "skipped": len(skipped),
            "kept_rate": _rate(sum(r.kept for r in attempted), len(attempted)),
        },
        "gates": {
            "evaluated": len(gated),
            "outcomes": dict(sorted(Counter(outcome_label(g.outcome) for g in gated).items())),
            "deciding_rules": dict(deciding.most_common()),
        },
        "approvals": {
            "approved": actions.get("approved", 0),
            "rejected": actions.get("rejected", 0),
            "pending": statuses.get("needs_approval", 0),
        },
        "feedback": {"count": len(ratings), "mean_rating": _mean([float(r) for r in ratings])},
        "cost_usd": round(sum(run.usage.cost_usd for run in runs), 6),
        "reputation": {
            "models": _reputation_rows(now, before, MODEL),
            "instances": _reputation_rows(now, before, INSTANCE),
        },
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "-"


def quality_markdown(metrics: dict[str, Any]) -> str:
    """The aggregate report for people."""
    window = metrics["window"]
    lines = [f"# Swarm quality: {window['since'] or 'first run'} to {window['until'] or 'now'}", ""]
    status = ", ".join(f"{name} {count}" for name, count in metrics["status"].items()) or "none"
    mean = metrics["mean_overall"]
    refinement, gates, approvals, feedback = (
        metrics["refinement"],
        metrics["gates"],
        metrics["approvals"],
        metrics["feedback"],
    )
    lines += [
        "| metric | value |",
        "|---|---|",
        f"| runs | {metrics['runs']} ({status}) |",
        f"| success rate | {_percent(metrics['success_rate'])} |",
        f"| consensus rate | {_percent(metrics['consensus_rate'])} |",
        f"| mean overall | {'-' if mean is None else f'{mean:.3f}'} |",
        f"| refinement kept | {refinement['kept']}/{refinement['attempted']} ({_percent(refinement['kept_rate'])}), "
        f"{refinement['skipped']} skipped |",
        f"| gate outcomes | {_counts(gates['outcomes'])} |",
        f"| rules that held or failed runs | {_counts(gates['deciding_rules'])} |",
        f"| approvals | {approvals['approved']} approved, {approvals['rejected']} rejected, "
        f"{approvals['pending']} pending |",
        f"| feedback | {feedback['count']}"
        + (f", mean rating {feedback['mean_rating']:.2f}/5" if feedback["mean_rating"] is not None else "")
        + " |",
        f"| cost | ${metrics['cost_usd']:.4f} |",
    ]
    for scope in ("models", "instances"):
        rows = metrics["reputation"][scope]
        lines += ["", f"## Reputation by {scope[:-1]}", ""]
        if not rows:
            lines.append("no history yet (every multiplier is 1.0)")
            continue
        lines += ["| name | observations | mean | multiplier | before | moved |", "|---|---:|---:|---:|---:|---:|"]
        lines += [
            f"| {cell(r['name'])} | {r['observations']} | {r['mean']:.3f} | {r['multiplier']:.3f} "
            f"| {r['multiplier_before']:.3f} | {r['moved']:+.3f} |"
            for r in rows
        ]
    return "\n".join(lines) + "\n"
