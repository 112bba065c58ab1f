"""A local sandbox with small limits, and ways to look for sandbox processes in the host's process table.

Programs under test announce their pid namespace (``NS_PRELUDE``): every process a sandbox ever
starts, forked, exec'd, setsid'd or daemonised, lives in that namespace, so "no live process in it"
after ``run`` returns means nothing was left behind. Forked children also inherit the name a
program gives itself (``comm``), which lets a test count a fork bomb's processes while it runs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest_asyncio

from swarmlib import Sandbox, SandboxConfig, open_sandbox

LIMITS = SandboxConfig(memory_mb=128, max_processes=16, output_cap_bytes=8192, tmp_size_mb=4, max_slots=3)

# Prints "ns <inode>" first thing, so even a program that is killed later has said where it ran.
NS_PRELUDE = "import os as _os, sys as _sys\nprint('ns', _os.stat('/proc/self/ns/pid').st_ino, flush=True)\n"


def name_prelude(token: str) -> str:
    """Set the program's ``comm`` to ``token`` (15 bytes at most); forked children inherit it."""
    return f"import ctypes as _ct\n_ct.CDLL(None).prctl(15, {token.encode()!r}, 0, 0, 0)\n"


def namespace_of(stdout: str) -> int:
    for line in stdout.splitlines():
        if line.startswith("ns "):
            return int(line.split()[1])
    raise AssertionError(f"the program did not report its pid namespace: {stdout[:200]!r}")


def _state(pid: str) -> str:
    with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def live_in_namespace(inode: int) -> list[int]:
    """Host pids of live (not zombie) processes in the pid namespace ``inode``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") == f"pid:[{inode}]" and _state(entry) != "Z":
                found.append(int(entry))
        except OSError:
            continue
    return found


def live_named(token: str) -> list[int]:
    """Host pids of live processes whose ``comm`` is ``token``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", encoding="utf-8", errors="replace") as comm:
                if comm.read().strip() == token and _state(entry) != "Z":
                    found.append(int(entry))
        except OSError:
            continue
    return found


def live_descendants(root: int) -> set[int]:
    """Live processes below ``root`` in the host's process tree."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sandbox() -> AsyncIterator[Sandbox]:
    """The sandbox the service would open (warm pool included), with limits small enough to hit fast."""
    box = open_sandbox(LIMITS)
    await box.probe()
    yield box
    await box.aclose()
