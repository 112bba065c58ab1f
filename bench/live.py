"""The live gain over one Qwen: HumanEval with the real local Qwen2.5-Coder-0.5B, greedy against the swarm.

Usage: .venv/bin/python bench/live.py [--arms greedy,swarm3] [--refine on|off] [--out /tmp/swarm-bench/live.jsonl]
       [--refine-model M] [--budget-min 600] [--start K] [--limit N] [--threads 0] [--summary]

Starts ``swarm up``'s stack (one llama.cpp server with the GGUF from .swarm/models, the four
services as child processes) with five instances as ``swarm up`` makes them (temperatures 0.2,
0.5, 0.8, 0.35, 0.65, distinct seeds), and answers HumanEval problems in task order with each arm:

* ``greedy``: one call to the same model server at temperature 0, with the product's prompt
  (``prompts.solve_messages``) and extraction (``swarmlib.extract_code``): the user asking one
  Qwen directly;
* ``swarm3`` / ``swarm5``: one ``RunSwarm`` of size 3 (instances qwen-1..3) or 5 with the
  product's defaults, refinement on or off (``--refine``);
* ``adaptive``: one ``RunSwarm`` that leaves the size to the server, the product's default (the
  adaptive swarm, docs/adaptive.md: 3 answers, 2 more a round while not settled, up to 7, over
  the five instances round-robin); the summary adds its answers and rounds a problem.

A run with refinement on gives both its selection before refinement and its final answer; one
with it off, the selection alone (a refinement round costs one to two more generations, so
``--refine off`` covers more problems in the same time). ``--refine-model
qwen2.5-coder-1.5b-instruct`` refines on that model instead (``swarm up --refine-model``: a server
of its own, the orchestrator's SWARM_REFINE_INSTANCE); its lines are kept apart from those refined
by the best answer's own instance. Every answer of the swarm of 3 is scored too: their mean is the
pass rate of **one sampled instance** (the swarm's own temperatures).

Only the prompt is sent; the hidden test (``test`` + ``check(entry_point)``) is run by this bench
alone, after the run, in the project's sandbox. One JSON line per (arm, refinement, problem) goes to ``--out``;
a second start with the same ``--out`` skips what is there, so an interrupted bench resumes
(``--summary`` only prints the figures of the file). Progress, with an estimate of the time left,
goes to stderr. A new problem starts only while the time used plus the mean time of a problem
fits in ``--budget-min``; SIGINT/SIGTERM stop at once and print the summary. ``--retry-errors``
runs again, for every arm alike, what ended without an answer (a starved host's timeouts); the
later line replaces the earlier one in the summary.

The summary gives each arm's pass rate with its sample size, the swarm's gain over greedy on the
problems both answered (ratio of pass rates; the seed asks > 1.20, issue 14 >= 1.25) and the
median and mean time per problem. Timeouts are raised as in ``bench/refine.py`` (a shared
2-core host): 300 s per instance and per stage, and the learned reputation is off (one model at
fixed temperatures: what it would learn over the bench's own runs is noise).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import httpx

from swarm.v1 import orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarm_bench.humaneval import HUMANEVAL_SIZE, Problem, load_problems, model_stack
from swarm_bench.quality_scoring import Scorer
from swarm_cli.localstack import LocalStack, StackSettings, instances_document, refine_env
from swarm_cli.models import RECIPES
from swarm_orchestrator.prompts import solve_messages
from swarm_orchestrator.sizing import MAX_AUTO_SIZE
from swarmlib import ChatClient, Endpoint, LLMError, bearer_interceptors, extract_code

MODEL = "qwen2.5-coder-0.5b-instruct"
INSTANCES = 5
ARMS = ("greedy", "swarm3", "swarm5", "adaptive")
MAX_TOKENS = 1024  # the orchestrator's default SWARM_MAX_TOKENS
RUN_TIMEOUT_S = 3600.0  # a backstop only: the instance and stage timeouts bound a run
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


@dataclass
class Line:
    """One arm on one problem, as written to ``--out``."""

    arm: str
    task_id: str
    refined: bool = False  # refinement was on for this run (a swarm arm)
    refiner: str = ""  # the refine-only instance's model (--refine-model); "": the best answer's instance
    passed: bool = False  # the answer the user gets (for a swarm arm: after refinement)
    unrefined_passed: bool = False  # a swarm arm's selection before refinement (greedy: = passed)
    swarm_passed: list[bool] = field(default_factory=list)  # a swarm arm's answers, in rank order
    refinement: str = ""  # kept / dropped / skipped
    consensus: bool = False
    rounds: int = 0  # a swarm arm's answer rounds (the adaptive arm grows while not settled)
    wall_s: float = 0.0
    completion_tokens: int = 0
    run_id: str = ""
    error: str = ""

    @property
    def key(self) -> tuple[str, bool, str, str]:
        """What a resumed bench skips: this arm, with refinement on or off and by whom, on this problem."""
        return self.arm, self.refined, self.refiner, self.task_id


# -- the arms ------------------------------------------------------------------------------------


async def greedy(client: ChatClient, endpoint: Endpoint, scorer: Scorer, problem: Problem) -> Line:
    """One answer at temperature 0, extracted as the orchestrator extracts a candidate's code."""
    line = Line("greedy", problem.task_id)
    started = time.perf_counter()
    try:
        result = await client.complete(
            endpoint, solve_messages(problem.prompt), timeout=300.0, temperature=0.0, max_tokens=MAX_TOKENS
        )
    except LLMError as exc:  # a failed call is a failed answer, recorded with its reason
        line.error = f"{type(exc).__name__}: {exc}"[:300]
        line.wall_s = round(time.perf_counter() - started, 2)
        return line
    line.wall_s = round(time.perf_counter() - started, 2)
    line.completion_tokens = result.completion_tokens
    line.passed = await scorer.passes(problem.record(), extract_code(result.text, problem.prompt))
    line.unrefined_passed = line.passed
    return line


def swarm_request(arm: str, problem: Problem, refine: bool) -> pb.RunSwarmRequest:
    """``swarmN``: a fixed swarm on instances qwen-1..N; ``adaptive``: the size left to the server, every
    instance (the product's default: 3 answers, then 2 more a round while not settled, up to 7)."""
    if arm == "adaptive":
        return pb.RunSwarmRequest(task=problem.prompt, skip_refine=not refine)
    size = int(arm.removeprefix("swarm"))
    return pb.RunSwarmRequest(
        task=problem.prompt, swarm_size=size, instances=[f"qwen-{i + 1}" for i in range(size)], skip_refine=not refine
    )


async def swarm(
    stub: orchestrator_pb2_grpc.OrchestratorServiceStub,
    scorer: Scorer,
    problem: Problem,
    arm: str,
    refine: bool,
    refiner: str,
) -> Line:
    """One RunSwarm; its selection before refinement and its final answer scored with the hidden test."""
    line = Line(arm, problem.task_id, refined=refine, refiner=refiner, rounds=1)
    request = swarm_request(arm, problem, refine)
    run: pb.Run | None = None
    started = time.perf_counter()
    try:
        async for event in stub.RunSwarm(request, timeout=RUN_TIMEOUT_S):
            if event.HasField("grown"):
                line.rounds = event.grown.round
            if event.HasField("done"):
                run = event.done
    except grpc.aio.AioRpcError as exc:
        line.error = f"{exc.code().name}: {exc.details()}"[:300]
    line.wall_s = round(time.perf_counter() - started, 2)
    if run is None:
        line.error = line.error or "the stream ended without a result"
        return line
    line.run_id = run.id
    ranked = sorted(
        (c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_SWARM and c.rank > 0), key=lambda c: c.rank
    )
    if not ranked or not run.final.code:
        line.error = line.error or run.error or "the run has no ranked answer"
        return line
    record = problem.record()
    line.swarm_passed = [await scorer.passes(record, c.code) for c in ranked]
    line.unrefined_passed = line.swarm_passed[0]
    line.passed = await scorer.passes(record, run.final.code)
    line.consensus = run.consensus.reached
    line.completion_tokens = run.usage.completion_tokens
    outcome = run.refinement.outcome
    line.refinement = {pb.REFINEMENT_OUTCOME_KEPT: "kept", pb.REFINEMENT_OUTCOME_DROPPED: "dropped"}.get(
        outcome, "skipped"
    )
    return line


# -- the results file ----------------------------------------------------------------------------


def read_lines(path: Path) -> list[Line]:
    """What an earlier start wrote (a torn last line, from a kill mid-write, is ignored)."""
    if not path.exists():
        return []
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(Line(**json.loads(raw)))
        except (json.JSONDecodeError, TypeError):
            continue
    return lines


def rate(passed: Iterable[bool]) -> str:
    values = list(passed)
    return f"{sum(values) / len(values):.3f} ({sum(values)}/{len(values)})" if values else "n/a"


def summary_lines(lines: Sequence[Line]) -> list[str]:
    """Pass rate per arm, the gain over greedy on the problems both answered, time per problem.

    A swarm arm's "without refinement" is every run's selection before refinement (a run with
    refinement off, else the first one with it on); "with refinement" counts the runs that had it on.
    """
    latest = {line.key: line for line in lines}  # a retried line replaces the one before it
    plain: dict[str, dict[str, Line]] = {}
    refined: dict[tuple[str, str], dict[str, Line]] = {}  # by (arm, refiner)
    for line in sorted(latest.values(), key=lambda x: (x.refined, x.refiner)):  # without refinement first
        plain.setdefault(line.arm, {}).setdefault(line.task_id, line)
        if line.refined:
            refined.setdefault((line.arm, line.refiner), {})[line.task_id] = line
    greedy_lines = plain.get("greedy", {})
    out = [f"HumanEval, {MODEL} (local llama.cpp, Q4_K_M); hidden tests scored by the bench only"]
    for arm in ARMS:
        done = plain.get(arm, {})
        if not done:
            continue
        if arm == "greedy":
            out.append(f"greedy (1 instance, temperature 0): {rate(x.passed for x in done.values())}; {timing(done)}")
            continue
        errors = sum(1 for line in done.values() if line.error)
        out.append(
            f"{arm} without refinement: {rate(x.unrefined_passed for x in done.values())}; {timing(done)}; "
            f"runs without an answer {errors}"
        )
        if arm == "swarm3":
            answers = [p for line in done.values() for p in line.swarm_passed]
            out.append(f"  one sampled instance (each answer of the swarm of 3): {rate(answers)}")
        if arm == "adaptive":
            out.append(f"  {growth(done)}")
        out += gain_lines(done, greedy_lines, "unrefined_passed")
        out += oracle_lines(done, greedy_lines)
        for (refined_arm, refiner), with_refinement in sorted(refined.items()):
            if refined_arm != arm:
                continue
            kept = sum(1 for x in with_refinement.values() if x.refinement == "kept")
            dropped = sum(1 for x in with_refinement.values() if x.refinement == "dropped")
            by = f" by {refiner}" if refiner else ""
            helped = sum(x.passed and not x.unrefined_passed for x in with_refinement.values())
            hurt = sum(x.unrefined_passed and not x.passed for x in with_refinement.values())
            out.append(
                f"{arm} with refinement{by}: before {rate(x.unrefined_passed for x in with_refinement.values())}, "
                f"after {rate(x.passed for x in with_refinement.values())}; {timing(with_refinement)}; "
                f"kept {kept}, dropped {dropped}, skipped {len(with_refinement) - kept - dropped}; "
                f"helped {helped}, hurt {hurt}"
            )
            out += gain_lines(with_refinement, greedy_lines, "passed")
    return out + common_lines(plain)


def common_lines(plain: Mapping[str, Mapping[str, Line]]) -> list[str]:
    """Every arm on the problems all of them answered, when an arm covers fewer (the arms that
    ran on as many problems as fitted compare with the others on the same problems)."""
    arms = [arm for arm in ARMS if plain.get(arm)]
    common = set.intersection(*(set(plain[arm]) for arm in arms)) if len(arms) > 1 else set()
    if not common or all(len(plain[arm]) == len(common) for arm in arms):
        return []
    rates = ", ".join(f"{arm} {rate(plain[arm][t].unrefined_passed for t in sorted(common))}" for arm in arms)
    oracles = ", ".join(
        f"{arm} {rate(any(plain[arm][t].swarm_passed) for t in sorted(common))}" for arm in arms if arm != "greedy"
    )
    return [f"on the {len(common)} problems every arm answered: {rates}; oracles {oracles}"]


def growth(done: Mapping[str, Line]) -> str:
    """The adaptive arm's cost: answers and rounds a problem, against the answers of its limit
    (``sizing.MAX_AUTO_SIZE``, the size a request that leaves it to the server may grow to)."""
    answered = [line for line in done.values() if line.swarm_passed]
    if not answered:
        return "no run answered"
    answers = statistics.mean(len(line.swarm_passed) for line in answered)
    rounds = statistics.mean(line.rounds for line in answered)
    settled_first = sum(line.rounds == 1 for line in answered)
    return (
        f"answers a problem {answers:.2f} ({answers / MAX_AUTO_SIZE:.0%} of a fixed {MAX_AUTO_SIZE}'s), "
        f"rounds {rounds:.2f}; "
        f"settled in the first round {settled_first} of {len(answered)}"
    )


def timing(done: Mapping[str, Line]) -> str:
    walls = [line.wall_s for line in done.values()]
    return f"time per problem median {statistics.median(walls):.1f}s, mean {statistics.mean(walls):.1f}s"


def oracle_lines(done: Mapping[str, Line], greedy_lines: Mapping[str, Line]) -> list[str]:
    """What no selection can beat: a problem where none of the swarm's answers passes is lost whatever
    is picked, so (problems with a passing answer) / (greedy's passes) bounds the gain."""
    missed = sum(any(line.swarm_passed) and not line.unrefined_passed for line in done.values())
    both = sorted(set(done) & set(greedy_lines))
    base = sum(greedy_lines[t].passed for t in both)
    bound = sum(any(done[t].swarm_passed) for t in both)
    lines = [
        f"  oracle (some answer passes): {rate(any(x.swarm_passed) for x in done.values())}; picked a failing answer "
        f"where one passed: {missed}"
    ]
    if base:
        lines.append(f"  the most any selection could gain on those {len(both)} problems: {bound / base:.2f} x greedy")
        # A swarm whose first member runs at temperature 0 holds greedy's answer: its oracle, with the
        # answers of the other members as recorded, bounds what that lever could give.
        sizes = {len(done[t].swarm_passed) for t in both}
        # The adaptive arm's runs have as many answers as their rounds asked: greedy's answer beside
        # every answer a run got bounds such a swarm from above (it would have replaced one).
        size = sizes.pop() if len(sizes) == 1 else None
        kept = size - 1 if size else None
        with_greedy = [greedy_lines[t].passed or any(done[t].swarm_passed[:kept]) for t in both]
        label = (
            f"with greedy's answer as one of the {size} (greedy + the first {kept} answers)"
            if size
            else "greedy's answer beside every answer of the run"
        )
        lines.append(f"  {label}: oracle {rate(with_greedy)}, at most {sum(with_greedy) / base:.2f} x greedy")
    return lines


def gain_lines(done: Mapping[str, Line], greedy_lines: Mapping[str, Line], pick: str) -> list[str]:
    """The arm's passes against greedy's on the problems both answered."""
    both = sorted(set(done) & set(greedy_lines))
    if not both:
        return []
    base = sum(greedy_lines[t].passed for t in both)
    wins = sum(bool(getattr(done[t], pick)) for t in both)
    gain = f"{wins / base:.2f} x greedy" if base else "n/a (greedy passed none)"
    return [f"  gain on the {len(both)} problems both answered: {wins} against greedy's {base} = {gain} (target 1.25)"]


# -- the loop ------------------------------------------------------------------------------------


@dataclass
class Progress:
    started: float
    total: int
    done_before: int
    walls: list[float] = field(default_factory=list)

    def line(self, line: Line) -> str:
        self.walls.append(line.wall_s)
        done = self.done_before + len(self.walls)
        left = (self.total - done) * statistics.mean(self.walls)
        verdict = "pass" if line.passed else "fail"
        extra = f" unrefined={'pass' if line.unrefined_passed else 'fail'}" if line.arm != "greedy" else ""
        extra += f" answers {sum(line.swarm_passed)}/{len(line.swarm_passed)}" if line.swarm_passed else ""
        error = f" error: {line.error}" if line.error else ""
        return (
            f"[{done}/{self.total}] {line.arm} {line.task_id} {line.wall_s:.1f}s {verdict}{extra}"
            f" (about {left / 60:.0f} min left){error}"
        )


async def run_arms(
    stack: LocalStack, settings: StackSettings, args: argparse.Namespace, problems: Sequence[Problem]
) -> None:
    """Start the stack, then every (problem, arm) not yet in the file, in task order."""
    started = time.perf_counter()
    latest = {line.key: line for line in read_lines(args.out)}
    done = {key for key, line in latest.items() if not (args.retry_errors and line.error)}
    todo = [(p, arm) for p in problems for arm in args.arms if key_of(args, arm, p.task_id) not in done]
    if not todo:
        return
    scorer = await Scorer.create()
    targets = await stack.start(stack_env(settings))
    print(f"stack up in {time.perf_counter() - started:.1f}s; {len(todo)} to do", file=sys.stderr, flush=True)
    base_url = instances_document(settings, MODEL)[0]["base_url"]
    endpoint = Endpoint("qwen-greedy", str(base_url), MODEL)
    progress = Progress(started, len(problems) * len(args.arms), len(problems) * len(args.arms) - len(todo))
    budget_s = args.budget_min * 60
    args.out.parent.mkdir(parents=True, exist_ok=True)
    keyed = bearer_interceptors(stack.cli_key)
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(300.0)) as http,
        grpc.aio.insecure_channel(targets["orchestrator"], options=_CHANNEL_OPTIONS, interceptors=keyed) as channel,
    ):
        client = ChatClient(http)
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        with args.out.open("a", encoding="utf-8") as handle:
            for problem, arm in todo:
                expected = statistics.mean(progress.walls) if progress.walls else 0.0
                if time.perf_counter() - started + expected > budget_s:
                    print(f"time budget of {args.budget_min:.0f} min reached", file=sys.stderr, flush=True)
                    return
                if arm == "greedy":
                    line = await greedy(client, endpoint, scorer, problem)
                else:
                    _, refined, refiner, _ = key_of(args, arm, problem.task_id)
                    line = await swarm(stub, scorer, problem, arm, refined, refiner)
                handle.write(json.dumps(asdict(line)) + "\n")
                handle.flush()
                print(progress.line(line), file=sys.stderr, flush=True)


def key_of(args: argparse.Namespace, arm: str, task_id: str) -> tuple[str, bool, str, str]:
    """The ``Line.key`` this start writes for ``arm`` on ``task_id``."""
    refined = args.refine and arm != "greedy"
    return arm, refined, (args.refine_model or "") if refined else "", task_id


def stack_env(settings: StackSettings) -> dict[str, str]:
    """The caller's environment without its ``SWARM_*`` settings (sandbox ones kept), plus this bench's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_") or k.startswith("SWARM_SANDBOX")}
    env["SWARM_INSTANCES"] = json.dumps(instances_document(settings, MODEL))
    env.update(refine_env(settings))
    env["SWARM_REFINE"] = "true"
    env["SWARM_REPUTATION"] = "false"
    env["SWARM_INSTANCE_TIMEOUT_S"] = "300"
    env["SWARM_STAGE_TIMEOUT_S"] = "300"
    env["SWARM_REFINER_LLM_TIMEOUT_S"] = "300"
    env["SWARM_REFINE_BUDGET_S"] = "600"
    return env


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", default="greedy,swarm3", help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--refine", choices=("on", "off"), default="on", help="refinement in the swarm arms (on)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/swarm-bench/live.jsonl"), help="results, resumable")
    parser.add_argument("--budget-min", type=float, default=600.0, help="time budget in minutes (default 600)")
    parser.add_argument("--start", type=int, default=0, help="first problem's index, 0-163 (default 0)")
    parser.add_argument("--limit", type=int, help="at most N problems")
    parser.add_argument(
        "--refine-model",
        choices=sorted(name for name in RECIPES if name != MODEL),
        help="refine on a model server of its own (SWARM_REFINE_INSTANCE) instead of the best answer's instance",
    )
    parser.add_argument("--threads", type=int, default=0, help="model server threads (default: every core)")
    parser.add_argument("--summary", action="store_true", help="only print the summary of --out")
    parser.add_argument(
        "--retry-errors",
        action="store_true",
        help="run again, for every arm alike, what ended without an answer (the later line counts)",
    )
    args = parser.parse_args()
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    args.refine = args.refine == "on"
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown or not args.arms:
        parser.error(f"--arms: unknown {', '.join(unknown) or '(none given)'}; use some of {', '.join(ARMS)}")
    if args.refine_model and not args.refine:
        parser.error("--refine-model needs --refine on")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    if not 0 <= args.start < HUMANEVAL_SIZE:
        parser.error(f"--start must be in 0..{HUMANEVAL_SIZE - 1}")
    return args


async def main() -> int:
    args = parse_args()
    if args.summary:
        print("\n".join(summary_lines(read_lines(args.out))))
        return 0
    problems = load_problems(args.start, args.limit)
    loop = asyncio.get_running_loop()
    with model_stack("swarm-live-", INSTANCES, MODEL, args.threads, args.refine_model) as (stack, settings):
        work = asyncio.create_task(run_arms(stack, settings, args, problems))
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, work.cancel)
        try:
            await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            print("stopped by a signal", file=sys.stderr)
        except RuntimeError as exc:
            print(f"bench/live.py: {exc}", file=sys.stderr)
            return 1
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await stack.stop()
    print("\n".join(summary_lines(read_lines(args.out))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
