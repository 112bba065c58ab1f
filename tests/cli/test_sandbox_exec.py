"""``swarm sandbox exec`` as a user runs it: a subprocess, a file, one JSON object on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SWARM = [sys.executable, "-m", "swarm_cli.main"]


def _exec(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SWARM, "sandbox", "exec", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_program_result_is_reported_and_exit_status_is_zero(tmp_path: Path) -> None:
    program = tmp_path / "p.py"
    program.write_text("import sys\nprint('out')\nprint('err', file=sys.stderr)\nraise SystemExit(3)\n")
    done = _exec(str(program))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"backend", "exit_code", "timed_out", "reason", "stdout", "stderr", "duration_ms", "limit"}
    assert report["backend"] == "bubblewrap"
    assert report["exit_code"] == 3
    assert report["stdout"] == "out\n"
    assert report["stderr"] == "err\n"
    assert report["timed_out"] is False
    assert report["reason"] == ""
    assert report["limit"] == "none"


def test_timeout_is_reported_with_its_reason() -> None:
    done = _exec("-", "--timeout", "1", stdin="while True:\n    pass\n")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["timed_out"] is True
    assert report["reason"] == "timed out after 1s"
    assert report["limit"] == "wall_time"


def test_secrets_in_the_callers_environment_do_not_reach_the_program() -> None:
    done = _exec("-", stdin="import os\nprint(sorted(os.environ))\n", env={"SWARM_TEST_SECRET": "hunter2"})
    report = json.loads(done.stdout)
    assert "SWARM_TEST_SECRET" not in report["stdout"]


def test_unreadable_file_and_bad_config_are_usage_errors(tmp_path: Path) -> None:
    missing = _exec(str(tmp_path / "nope.py"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    bad = _exec("-", stdin="pass\n", env={"SWARM_SANDBOX_MEMORY_MB": "1"})
    assert bad.returncode == 2
    assert "SWARM_SANDBOX_MEMORY_MB=1" in bad.stderr


def test_missing_bubblewrap_is_reported_as_unavailable() -> None:
    done = _exec("-", stdin="pass\n", env={"SWARM_SANDBOX_BWRAP": "/nonexistent/bwrap"})
    assert done.returncode == 3
    assert "bubblewrap not found at /nonexistent/bwrap" in done.stderr
    assert done.stdout == ""
