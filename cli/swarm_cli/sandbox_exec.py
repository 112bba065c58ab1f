"""``swarm sandbox exec``: run one Python program in the configured sandbox and print what it did.

It is the quickest way to check a host's sandbox (or a Runloop account) before starting the
assessor, and to see exactly how a program is stopped. The exit status says whether the sandbox
worked, never what the program did: that is in the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path

from swarmlib import BACKENDS, ConfigError, SandboxConfig, SandboxUnavailableError, open_sandbox

EXIT_OK, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 2, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``swarm sandbox exec``."""
    parser.add_argument("file", help="the Python program to run (- reads standard input)")
    parser.add_argument("--timeout", type=_positive, default=10.0, help="wall-clock limit in seconds (default 10)")
    parser.add_argument("--backend", choices=BACKENDS, help="sandbox backend (default $SWARM_SANDBOX or local)")


def _positive(value: str) -> float:
    seconds = float(value)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("--timeout must be > 0")
    return seconds


def run_cli(args: argparse.Namespace) -> int:
    """Read the program, run it once, print one JSON object."""
    try:
        program = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"swarm sandbox exec: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = SandboxConfig.from_env(os.environ)
        if args.backend:
            config = dataclasses.replace(config, backend=args.backend)
    except ConfigError as exc:
        print(f"swarm sandbox exec: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_exec(config, program, args.timeout))


async def _exec(config: SandboxConfig, program: str, timeout_s: float) -> int:
    try:
        sandbox = open_sandbox(config)
    except ConfigError as exc:
        print(f"swarm sandbox exec: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        await sandbox.probe()
        result = await sandbox.run(program, timeout_s)
    except SandboxUnavailableError as exc:
        print(f"swarm sandbox exec: sandbox unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        await sandbox.aclose()
    report = {"backend": sandbox.backend, **dataclasses.asdict(result)}
    report["duration_ms"] = round(result.duration_ms, 1)
    print(json.dumps(report, indent=2))
    return EXIT_OK
