"""Human-readable output: live progress lines, streamed answer text, the ranking table, consensus and the answer."""

from __future__ import annotations

from typing import TextIO

from swarm.v1 import common_pb2, orchestrator_pb2 as pb

_KIND = {
    pb.FAILURE_KIND_HTTP_ERROR: "http error",
    pb.FAILURE_KIND_TIMEOUT: "timeout",
    pb.FAILURE_KIND_CONNECT: "unreachable",
    pb.FAILURE_KIND_MALFORMED: "malformed stream",
    pb.FAILURE_KIND_EMPTY: "empty answer",
    pb.FAILURE_KIND_UNHEALTHY: "unhealthy",
}


def progress_line(event: pb.RunSwarmResponse) -> str | None:
    """One line per event, or None for the final event (rendered separately)."""
    which = event.WhichOneof("event")
    if which == "accepted":
        run = event.accepted
        if run.adaptive_start:
            return (
                f"run {run.id}: adaptive, {run.adaptive_start} instances first, up to {run.swarm_size} while not "
                f"settled (quorum {run.quorum})"
            )
        return f"run {run.id}: {run.swarm_size} instances (quorum {run.quorum})"
    if which == "queued":
        q = event.queued
        return (
            f"  queued: {q.position} of {q.depth} waiting for capacity ({q.waited_ms / 1000:.0f}s so far, "
            f"at most {q.timeout_ms / 1000:.0f}s)"
        )
    if which == "instance_started":
        e = event.instance_started
        retry = " (fallback)" if e.attempt > 1 else ""
        return f"  slot {e.slot + 1}: {e.instance} generating{retry} ..."
    if which == "instance_finished":
        f = event.instance_finished
        return (
            f"  slot {f.slot + 1}: {f.instance} answered in {f.latency_ms / 1000:.1f}s "
            f"({f.usage.completion_tokens} tokens) -> {f.candidate_id}"
        )
    if which == "instance_failed":
        x = event.instance_failed
        then = "; retrying on another instance" if x.will_retry else ""
        return f"  slot {x.slot + 1}: {x.instance} failed ({_KIND.get(x.kind, 'error')}): {x.reason}{then}"
    if which == "collated":
        c = event.collated.consensus
        agreed = "yes" if c.reached else "no"
        return f"collated: {event.collated.cluster_count} cluster(s), consensus {agreed} ({c.share:.0%})"
    if which == "assessed":
        a = event.assessed
        return f"assessed: {a.tests_found} test(s) found in the task; best {a.best_candidate_id} ({a.best_overall:.3f})"
    if which == "grown":
        g = event.grown
        return f"round {g.round}: +{g.added} instances ({g.size} in all), not settled: {g.reason}"
    if which == "refined":
        return f"refined: {event.refined.reason}"
    if which == "gated":
        return f"gates: {event.gated.summary}"
    return None


class StreamedText:
    """``swarm run --stream``: each slot's text as whole lines, each prefixed with its slot.

    Several instances write at once; whole lines with their slot in front stay readable when they
    interleave, in a terminal or a log alike, and one slot's answer can be picked out with grep.
    A line is printed once it is complete, and what is left of it when the attempt ends.
    """

    def __init__(self) -> None:
        self._partial: dict[int, str] = {}

    def lines(self, event: pb.RunSwarmResponse) -> list[str]:
        """The lines ``event`` completes, to print before its own progress line."""
        which = event.WhichOneof("event")
        if which == "instance_output":
            output = event.instance_output
            *complete, rest = (self._partial.pop(output.slot, "") + output.delta).split("\n")
            if rest:
                self._partial[output.slot] = rest
            return [_text_line(output.slot, line) for line in complete]
        if which in ("instance_finished", "instance_failed"):
            slot = event.instance_finished.slot if which == "instance_finished" else event.instance_failed.slot
            return [_text_line(slot, self._partial.pop(slot))] if slot in self._partial else []
        return []


def _text_line(slot: int, line: str) -> str:
    text = line.removesuffix("\r")  # a model that ends its lines with CRLF
    return f"  slot {slot + 1} | {text}".rstrip()


def ranking_table(run: pb.Run) -> str:
    header = f"{'rank':>4}  {'cand':<5} {'instance':<12} {'overall':>7} {'correct':>7} {'complete':>8} {'style':>5} {'consens':>7} {'tests':>6}"  # noqa: E501
    lines = [header, "-" * len(header)]
    for c in run.candidates:
        s = c.scores
        rank = str(c.rank) if c.rank else "-"
        tests = f"{s.tests_passed}/{s.tests_total}" if s.tests_total else "-"
        lines.append(
            f"{rank:>4}  {c.id:<5} {c.instance[:12]:<12} {s.overall:>7.3f} {s.correctness:>7.2f} "
            f"{s.completeness:>8.2f} {s.style:>5.2f} {s.consensus:>7.2f} {tests:>6}"
        )
    return "\n".join(lines)


def _refinement_details(refined: pb.Refined, out: TextIO) -> None:
    """Rounds, template and, in the refiner's words, what the attempt changed and why."""
    if refined.rounds:
        template = f", template {refined.template_version}" if refined.template_version else ""
        print(f"  {refined.rounds} round(s){template}", file=out)
    if refined.explanation:
        verdict = "kept" if refined.kept else "not kept"
        print(f"  what {refined.candidate_id or 'the attempt'} ({verdict}) changed:", file=out)
        print("    " + refined.explanation.replace("\n", "\n    "), file=out)


def render_run(run: pb.Run, out: TextIO) -> None:
    """The full result of a run, as `swarm run` and `swarm runs show` print it."""
    status = pb.RunStatus.Name(run.status).removeprefix("RUN_STATUS_").lower()
    print(f"\nrun {run.id}: {status}", file=out)
    if run.error:
        print(f"error: {run.error}", file=out)
    for failure in run.failures:
        print(f"  failed: {failure.instance} (slot {failure.slot + 1}): {failure.reason}", file=out)
    if run.candidates:
        print("\nranking:", file=out)
        print(ranking_table(run), file=out)
    if run.HasField("consensus") and run.clusters:
        c = run.consensus
        verdict = "reached" if c.reached else "not reached"
        print(
            f"\nconsensus {verdict}: {c.share:.0%} of responses in the largest of {c.cluster_count} cluster(s)",
            file=out,
        )
    if run.analysis:
        print(f"\nanalysis:\n{run.analysis}", file=out)
    if run.HasField("refinement"):
        print(f"\nrefinement: {run.refinement.reason}", file=out)
        _refinement_details(run.refinement, out)
    if run.gate.outcome != common_pb2.GATE_OUTCOME_UNSPECIFIED:
        print(f"\nquality gates: {run.gate.summary}", file=out)
        for rule in run.gate.rules:
            mark = "ok  " if rule.passed else "FAIL"
            print(f"  {mark} {rule.name}: {rule.detail}", file=out)
    for entry in run.audit:
        action = pb.AuditAction.Name(entry.action).removeprefix("AUDIT_ACTION_").lower()
        when = entry.time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
        comment = f": {entry.comment}" if entry.comment else ""
        print(f"  {when} {action} by {entry.actor}{comment}", file=out)
    if run.status == pb.RUN_STATUS_NEEDS_APPROVAL:
        print(f"waiting for approval: swarm approve {run.id} --comment ... (or swarm reject)", file=out)
    for feedback in run.feedback:
        prefer = f", preferred {feedback.preferred_candidate_id}" if feedback.preferred_candidate_id else ""
        print(f"  feedback from {feedback.user}: {feedback.rating}/5{prefer} {feedback.comment}".rstrip(), file=out)
    if run.HasField("final"):
        origin = "refined" if run.final.origin == pb.CANDIDATE_ORIGIN_REFINED else "swarm"
        print(f"\nfinal answer ({run.final.candidate_id}, {origin}, overall {run.final.overall:.3f}):", file=out)
        print("```python", file=out)
        print(run.final.code.rstrip(), file=out)
        print("```", file=out)
    usage = run.usage
    print(
        f"\ntokens: {usage.prompt_tokens} in / {usage.completion_tokens} out, cost ${usage.cost_usd:.4f}",
        file=out,
    )
