"""What a benchmark run is judged by: the draw of recorded candidates, the hidden reference test run
in the assessor's sandbox, and CodeT's dual agreement as the baseline on the same draws."""

from __future__ import annotations

import os
import random
import re
from dataclasses import replace
from typing import TYPE_CHECKING

from swarm.v1 import common_pb2, orchestrator_pb2 as pb

from .data import Record

if TYPE_CHECKING:
    from swarmlib import Sandbox

SCORE_TIMEOUT_S = 10.0


def draw(record: Record, per_task: int | None, seed: int, repeat: int) -> list[int]:
    """Indices of the candidates drawn for one run: seeded, without replacement; None = all."""
    pool = len(record.candidates)
    if per_task is None or per_task >= pool:
        return list(range(pool))
    return random.Random(f"{seed}:{record.task_id}:{repeat}").sample(range(pool), per_task)


def scoring_program(program: str, reference_test: str, entry_point: str) -> str:
    """The program followed by the reference test; ``check(entry_point)`` added when it is never called."""
    script = program + "\n" + reference_test
    defines_check = re.search(r"^def check\(", reference_test, re.MULTILINE) is not None
    calls_check = re.search(r"^check\(", reference_test, re.MULTILINE) is not None
    if defines_check and not calls_check and entry_point:
        script += f"\n\ncheck({entry_point})\n"
    return script


class Scorer:
    """Runs program + reference test in the assessor's sandbox; one execution per distinct program."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._cache: dict[tuple[str, str], bool] = {}

    @classmethod
    async def create(cls) -> Scorer:
        from swarmlib import SandboxConfig, open_sandbox

        # The reference test always runs on this host: a benchmark must not spend devbox time.
        sandbox = open_sandbox(replace(SandboxConfig.from_env(os.environ), backend="local"))
        await sandbox.probe()
        return cls(sandbox)

    async def passes(self, record: Record, program: str) -> bool:
        if not program.strip() or record.reference_test is None:
            return False
        key = (record.task_id, program)
        if key not in self._cache:
            script = scoring_program(program, record.reference_test, record.entry_point)
            result = await self._sandbox.run(script, SCORE_TIMEOUT_S)
            self._cache[key] = result.exit_code == 0 and not result.timed_out
        return self._cache[key]


def codet_choice(run: pb.Run) -> pb.Candidate | None:
    """CodeT's dual agreement on the run's generated tests: None when the run reports none.

    Candidates with identical sets of passed generated tests form a cluster; a cluster scores its
    size times the number of tests it passes; the first candidate of the best cluster is chosen.
    """
    swarm = [c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_SWARM]
    if not any(t.origin == common_pb2.TEST_ORIGIN_GENERATED for c in swarm for t in c.tests):
        return None
    clusters: dict[frozenset[str], list[pb.Candidate]] = {}
    for candidate in swarm:
        passed = frozenset(t.name for t in candidate.tests if t.origin == common_pb2.TEST_ORIGIN_GENERATED and t.passed)
        clusters.setdefault(passed, []).append(candidate)
    best = max(clusters.items(), key=lambda item: len(item[1]) * len(item[0]))
    return best[1][0]
