"""The contracts stay lint-clean and every field stays documented (buf's STANDARD + COMMENTS rules)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _buf() -> str:
    local = Path(sys.executable).parent / "buf"
    found = str(local) if local.exists() else shutil.which("buf")
    assert found, "buf is missing: it ships in the dev extra (buf-bin); run `make install`"
    return found


def test_buf_lint_is_clean() -> None:
    result = subprocess.run([_buf(), "lint"], cwd=ROOT / "protos", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_rejects_an_undocumented_field(tmp_path: Path) -> None:
    """Guards the guard: the COMMENTS rules are really on."""
    module = tmp_path / "swarm" / "v1"
    module.mkdir(parents=True)
    (tmp_path / "buf.yaml").write_text((ROOT / "protos" / "buf.yaml").read_text())
    (module / "probe.proto").write_text(
        'syntax = "proto3";\n\npackage swarm.v1;\n\n// A probe.\nmessage Probe {\n  string undocumented = 1;\n}\n'
    )
    result = subprocess.run([_buf(), "lint"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "undocumented" in result.stdout + result.stderr
