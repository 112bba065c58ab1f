"""Swarm size from task complexity: 3 for a one-liner, up to 7 for a multi-part task.

More instances buy more diversity (and a better chance that one is right) at a linear cost; the
signals below are cheap proxies for how many ways a task can go wrong.
"""

from __future__ import annotations

import math
import re

MIN_AUTO_SIZE = 3
MAX_AUTO_SIZE = 7

_HARD_WORDS = re.compile(
    r"\b(concurren\w*|thread\w*|async\w*|parse\w*|pars(?:er|ing)|optimi[sz]\w*|edge cases?|efficient\w*|"
    r"algorithm\w*|graph|dynamic programming|recurs\w*|regex|class(?:es)?|api|protocol|cache|distributed)\b",
    re.IGNORECASE,
)


def complexity_points(task: str) -> int:
    """0..4 points: length, number of requirements, functions asked for, hard topics."""
    points = 0
    words = len(task.split())
    points += 1 if words > 60 else 0
    points += 1 if words > 200 else 0
    requirements = len(re.findall(r"^\s*(?:[-*•]|\d+[.)])\s+", task, re.MULTILINE))
    points += 1 if requirements >= 3 else 0
    points += 1 if len(set(_HARD_WORDS.findall(task))) >= 2 else 0
    functions = len(re.findall(r"^\s*def\s+\w+", task, re.MULTILINE))
    points += 1 if functions >= 2 else 0
    return min(points, MAX_AUTO_SIZE - MIN_AUTO_SIZE)


def auto_swarm_size(task: str) -> int:
    """The swarm size for a task when the caller leaves it to us."""
    return MIN_AUTO_SIZE + complexity_points(task)


def quorum_for(size: int, fraction: float) -> int:
    """Responses needed to go on: at least one, at least ``fraction`` of the swarm (rounded up)."""
    needed = math.ceil(size * fraction - 1e-9)  # 10 x 0.7 is 7.000000000000001 in floating point
    return max(1, min(size, needed))
