"""The shell commands the Runloop sandbox runs on a devbox, and the one line an execution reports.

The run script runs the program with the sandbox's limits and prints a single trailer line,
``TRAILER``: exit status, milliseconds, and the two output sizes. The program's output goes to
files, not through the execution's own stdout, because the API returns only the last ``last_n``
lines of that. ``ulimit -f`` just over the cap bounds what a program can write (Python then gets
EFBIG), so reading back is bounded too. Directories live under the devbox user's home, not /tmp,
because a suspended devbox keeps its disk and nothing else.
"""

from __future__ import annotations

import math
import re
import shlex
import uuid

from ._sandbox import SandboxConfig

OUT, ERR = ".swarm-stdout", ".swarm-stderr"
NO_WORKDIR = 97  # the script's exit status when its working directory is gone
TRAILER = re.compile(r"swarm-exit (\d+) (\d+) (\d+) (\d+)\s*$")


def new_workdir() -> str:
    """A fresh directory name, relative to the devbox user's home (where API paths start)."""
    return f"swarm-exec-{uuid.uuid4().hex}"


def workdir_command(*, make: str, remove: str | None = None) -> str:
    """Make the directory ``make``, first removing ``remove`` whatever the program did to its modes."""
    old = shlex.quote(remove) if remove else ""
    script = f"chmod -R u+rwX -- {old} 2>/dev/null; rm -rf -- {old}; " if remove else ""
    return f"{script}mkdir -p -- {shlex.quote(make)}"


def run_script(workdir: str, timeout_s: float, config: SandboxConfig) -> str:
    """The bash script of one execution; its only stdout is the trailer ``TRAILER`` parses."""
    limits = " && ".join(
        [
            f"ulimit -f {config.output_cap_bytes // 1024 + 1}",  # 1 KiB blocks in bash: just over the cap
            f"ulimit -t {math.ceil(timeout_s) + 1}",
            f"ulimit -v {config.memory_mb * 1024}",
        ]
    )
    program = f'env -i PATH="$PATH" HOME="$PWD" LANG=C.UTF-8 timeout -s KILL {timeout_s:.3f} python3 -I main.py'
    return "\n".join(
        [
            f"cd -- {shlex.quote(workdir)} || exit {NO_WORKDIR}",
            "start=$(date +%s%N)",
            f"({limits} && exec {program}) </dev/null >{OUT} 2>{ERR}",
            "rc=$?",
            "end=$(date +%s%N)",
            f"printf 'swarm-exit %s %s %s %s\\n' \"$rc\" $(( (end - start) / 1000000 )) "
            f'"$(wc -c <{OUT})" "$(wc -c <{ERR})"',
        ]
    )
