"""What the quality benchmark found: one outcome per task and repeat, their summary and the printed report."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from .data import model_of
from .quality_options import BenchOptions


@dataclass
class RunOutcome:
    """One task × repeat: what the swarm chose and how it scored."""

    task_id: str
    repeat: int
    code: str
    consensus: bool
    confidence: float
    source: str
    run_id: str = ""
    error: str = ""
    drawn: list[str] = field(default_factory=list)
    stage_s: float | None = None
    wall_s: float = 0.0
    codet_source: str | None = None
    # Scoring (None when the task has no reference test).
    passed: bool | None = None
    codet_passed: bool | None = None
    drawn_passed: list[bool] | None = None

    def line(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task_id": self.task_id,
            "repeat": self.repeat,
            "code": self.code,
            "consensus": self.consensus,
            "confidence": self.confidence,
            "source": self.source,
            "run_id": self.run_id,
            "drawn": self.drawn,
            "codet_source": self.codet_source,
            "stage_s": self.stage_s,
            "wall_s": round(self.wall_s, 3),
        }
        if self.error:
            out["error"] = self.error
        if self.passed is not None:
            out["passed"] = self.passed
            out["codet_passed"] = self.codet_passed
            out["drawn_passed"] = self.drawn_passed
        return out


@dataclass
class Summary:
    """Everything ``report`` prints, over the same draws."""

    runs: int = 0
    failed_runs: int = 0
    scored_runs: int = 0
    random_pick: float | None = None
    swarm: float | None = None
    codet: float | None = None
    codet_runs: int = 0
    swarm_on_codet_runs: float | None = None
    oracle: float | None = None
    consensus_coverage: float = 0.0
    consensus_precision: float | None = None
    median_stage_s: float | None = None
    median_run_s: float | None = None
    total_s: float = 0.0
    # Per recorded source label (``model_of``): mean reference-test pass over its drawn candidates.
    by_source: dict[str, float] = field(default_factory=dict)
    by_source_candidates: dict[str, int] = field(default_factory=dict)
    best_source: str | None = None
    best_source_rate: float | None = None
    outcomes: list[RunOutcome] = field(default_factory=list)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(outcomes: Sequence[RunOutcome]) -> Summary:
    summary = Summary(runs=len(outcomes), outcomes=list(outcomes))
    summary.failed_runs = sum(1 for o in outcomes if not o.code)
    scored = [o for o in outcomes if o.passed is not None and o.drawn_passed is not None]
    summary.scored_runs = len(scored)
    if scored:
        summary.random_pick = _mean([sum(o.drawn_passed or []) / max(1, len(o.drawn_passed or [])) for o in scored])
        summary.swarm = _mean([float(bool(o.passed)) for o in scored])
        summary.oracle = _mean([float(any(o.drawn_passed or [])) for o in scored])
        with_codet = [o for o in scored if o.codet_passed is not None]
        summary.codet_runs = len(with_codet)
        summary.codet = _mean([float(bool(o.codet_passed)) for o in with_codet])
        summary.swarm_on_codet_runs = _mean([float(bool(o.passed)) for o in with_codet])
        claiming = [o for o in scored if o.consensus]
        summary.consensus_precision = _mean([float(bool(o.passed)) for o in claiming])
        _by_source(summary, scored)
    summary.consensus_coverage = _mean([float(o.consensus) for o in outcomes]) or 0.0
    stages = [o.stage_s for o in outcomes if o.stage_s is not None]
    summary.median_stage_s = statistics.median(stages) if stages else None
    summary.median_run_s = statistics.median([o.wall_s for o in outcomes]) if outcomes else None
    return summary


def _by_source(summary: Summary, scored: Sequence[RunOutcome]) -> None:
    """Each source's pass rate over the candidates drawn of it, and the best of them: what always
    asking that one model (with those settings) would have scored on these tasks."""
    passes: dict[str, list[bool]] = {}
    for outcome in scored:
        for source, passed in zip(outcome.drawn, outcome.drawn_passed or [], strict=False):
            passes.setdefault(model_of(source), []).append(passed)
    summary.by_source = {label: sum(p) / len(p) for label, p in sorted(passes.items())}
    summary.by_source_candidates = {label: len(p) for label, p in sorted(passes.items())}
    if summary.by_source:
        best = max(summary.by_source, key=lambda label: (summary.by_source[label], label))
        summary.best_source, summary.best_source_rate = best, summary.by_source[best]


def report(summary: Summary, options: BenchOptions, stream: TextIO) -> None:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    k = "all" if options.per_task is None else str(options.per_task)
    print(
        f"data {options.data.name}: {summary.runs} runs ({summary.failed_runs} without an answer), "
        f"K={k}, repeats={options.repeats}, seed={options.seed}, refine={'on' if options.refine else 'off'}, "
        f"visible tests={'on' if options.visible_tests else 'off'}",
        file=stream,
    )
    if summary.scored_runs:
        print(f"reference-test pass rate over {summary.scored_runs} runs (same draws):", file=stream)
        print(f"  random pick   {pct(summary.random_pick)}   (mean over drawn candidates)", file=stream)
        print(f"  swarm         {pct(summary.swarm)}", file=stream)
        codet_note = f"(over the {summary.codet_runs} runs that reported generated tests"
        if summary.codet_runs:
            codet_note += f"; swarm on those runs {pct(summary.swarm_on_codet_runs)}"
        codet_note += ")"
        print(f"  codet         {pct(summary.codet)}   {codet_note}", file=stream)
        print(f"  oracle        {pct(summary.oracle)}   (any drawn candidate passes)", file=stream)
        if summary.best_source is not None:
            n = summary.by_source_candidates[summary.best_source]
            print(
                f"  best source   {pct(summary.best_source_rate)}   ({summary.best_source}, over its {n} drawn "
                f"candidates; {len(summary.by_source)} sources)",
                file=stream,
            )
            shown = ", ".join(f"{label} {rate:.3f}" for label, rate in summary.by_source.items())
            print(f"  per source    {shown}", file=stream)
        print(
            f"consensus precision {pct(summary.consensus_precision)}  (runs claiming consensus that pass)", file=stream
        )
    print(f"consensus coverage  {pct(summary.consensus_coverage)}  (runs claiming consensus)", file=stream)
    print(
        f"timings: median collation+assessment {_secs(summary.median_stage_s)} per run, "
        f"median run {_secs(summary.median_run_s)}, total wall {summary.total_s:.1f}s",
        file=stream,
    )
    print(f"selections: {options.out}", file=stream)


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}s"


def summary_dict(summary: Summary) -> Mapping[str, Any]:
    """The printed figures as a dict (tests and scripts)."""
    return {k: v for k, v in vars(summary).items() if k != "outcomes"}
