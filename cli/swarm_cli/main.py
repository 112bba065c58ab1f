"""The ``swarm`` command line."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from swarm.v1 import orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarmlib import ConfigError

from . import (
    attached_tests,
    budget as budget_cli,
    connection,
    keys as keys_cli,
    local_commands,
    quality as quality_cli,
    status as status_cli,
    tracing,
)
from .connection import Connection
from .render import StreamedText, progress_line, render_run

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NEEDS_APPROVAL = 0, 1, 2, 3, 4


def _connection(args: argparse.Namespace) -> Connection:
    """Set by ``main`` once the address and TLS settings are checked."""
    value = args.connection
    assert isinstance(value, Connection)
    return value


def _as_dict(message: Message) -> dict[str, object]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _rpc_error(exc: grpc.aio.AioRpcError, conn: Connection | None = None) -> int:
    if exc.code() == grpc.StatusCode.UNAUTHENTICATED and conn is not None:
        print(conn.unauthenticated_fix(), file=sys.stderr)
        return EXIT_FAILED
    print(f"swarm: {exc.code().name}: {exc.details()}", file=sys.stderr)
    if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return EXIT_USAGE
    if exc.code() == grpc.StatusCode.UNAVAILABLE and "failed to connect" in (exc.details() or "").lower():
        return EXIT_UNAVAILABLE
    return EXIT_FAILED


async def _run(args: argparse.Namespace) -> int:
    task = args.task_text
    request = pb.RunSwarmRequest(
        task=task,
        swarm_size=args.size,
        instances=args.instance or [],
        skip_refine=args.no_refine,
        instance_timeout_seconds=args.timeout,
        stream_output=args.stream,
        max_cost_usd=args.max_cost,
        allow_shrink=args.allow_shrink,
        tests=args.tests,
        adaptive=args.adaptive,
    )
    if args.estimate:
        return await _estimate(args, request)
    streamed = StreamedText()
    final: pb.Run | None = None
    with tracing.first_hop("swarm run") as span:
        async with _connection(args).channel() as channel:
            stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
            try:
                async for event in stub.RunSwarm(request):
                    if event.HasField("accepted"):
                        span.set_attribute("swarm.run_id", event.run_id)
                    if event.HasField("done"):
                        final = event.done
                    elif not args.json:
                        for line in [*streamed.lines(event), progress_line(event)]:
                            if line is not None:
                                print(line, file=sys.stderr, flush=True)
            except grpc.aio.AioRpcError as exc:
                if final is None:
                    return _rpc_error(exc, _connection(args))
    if final is None:
        print("swarm run: the stream ended without a result", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(_as_dict(final), indent=2))
    else:
        render_run(final, sys.stdout)
    if final.status == pb.RUN_STATUS_NEEDS_APPROVAL:
        return EXIT_NEEDS_APPROVAL
    return EXIT_OK if final.status == pb.RUN_STATUS_SUCCEEDED else EXIT_FAILED


async def _estimate(args: argparse.Namespace, request: pb.RunSwarmRequest) -> int:
    async with _connection(args).channel() as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        try:
            reply = await stub.EstimateRun(budget_cli.estimate_request(request))
        except grpc.aio.AioRpcError as exc:
            return _rpc_error(exc, _connection(args))
    if args.json:
        print(json.dumps(_as_dict(reply), indent=2))
    else:
        budget_cli.render_estimate(reply, sys.stdout)
    return EXIT_OK


async def _budget(args: argparse.Namespace) -> int:
    async with _connection(args).channel() as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        try:
            reply = await stub.GetBudget(pb.GetBudgetRequest())
        except grpc.aio.AioRpcError as exc:
            return _rpc_error(exc, _connection(args))
    if args.json:
        print(json.dumps(_as_dict(reply), indent=2))
    else:
        budget_cli.render_budget(reply, sys.stdout)
    return EXIT_OK


async def _runs(args: argparse.Namespace) -> int:
    async with _connection(args).channel() as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        try:
            if args.runs_command == "show":
                run = (await stub.GetRun(pb.GetRunRequest(run_id=args.run_id))).run
                if args.json:
                    print(json.dumps(_as_dict(run), indent=2))
                else:
                    render_run(run, sys.stdout)
                return EXIT_OK
            page = await stub.ListRuns(pb.ListRunsRequest(page_size=args.page_size, page_token=args.page_token))
        except grpc.aio.AioRpcError as exc:
            return _rpc_error(exc, _connection(args))
    if args.json:
        print(json.dumps(_as_dict(page), indent=2))
        return EXIT_OK
    for summary in page.runs:
        status = pb.RunStatus.Name(summary.status).removeprefix("RUN_STATUS_").lower()
        created = summary.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
        task = summary.task.splitlines()[0][:60] if summary.task else ""
        print(f"{summary.id}  {created}  {status:<9} n={summary.swarm_size}  {summary.final_overall:.3f}  {task}")
    if page.next_page_token:
        print(f"more: swarm runs list --page-token {page.next_page_token}")
    return EXIT_OK


async def _instances(args: argparse.Namespace) -> int:
    async with _connection(args).channel() as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        try:
            reply = await stub.ListInstances(pb.ListInstancesRequest())
        except grpc.aio.AioRpcError as exc:
            return _rpc_error(exc, _connection(args))
    if args.json:
        print(json.dumps(_as_dict(reply), indent=2))
        return EXIT_OK
    for status in reply.instances:
        health = "healthy" if status.healthy else f"UNHEALTHY ({status.last_error})"
        ref = status.instance
        role = " refines only" if status.refine_only else ""
        print(f"{ref.name:<12} {ref.model:<32} {ref.base_url:<32} t={ref.temperature:.2f} {health}{role}")
    return EXIT_OK


async def _capacity(args: argparse.Namespace) -> int:
    async with _connection(args).channel() as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        try:
            reply = await stub.GetCapacity(pb.GetCapacityRequest())
        except grpc.aio.AioRpcError as exc:
            return _rpc_error(exc)
    if args.json:
        print(json.dumps(_as_dict(reply), indent=2))
        return EXIT_OK
    print(f"runs driven: {reply.active_runs} of {reply.max_active_runs}")
    oldest = f", the oldest for {reply.oldest_wait_ms / 1000:.1f}s" if reply.queued_runs else ""
    print(
        f"runs waiting: {reply.queued_runs} of {reply.max_queued_runs}{oldest} (each waits at most "
        f"{reply.queue_timeout_ms / 1000:.0f}s)"
    )
    for slots in reply.instances:
        print(f"  {slots.instance:<12} {slots.in_use}/{slots.slots} slots in use")
    return EXIT_OK


async def _status(args: argparse.Namespace) -> int:
    async with _connection(args).channel() as channel:
        try:
            status = await status_cli.gather(channel, dt.datetime.now(dt.UTC))
        except grpc.aio.AioRpcError as exc:
            return _rpc_error(exc, _connection(args))
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        status_cli.render(status, print)
    return EXIT_OK


async def _wait(args: argparse.Namespace) -> int:
    """Block until the orchestrator reports SERVING (used by `make run` after `swarm up`)."""
    deadline = time.monotonic() + args.timeout
    async with _connection(args).channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return EXIT_OK
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.5)
    target = _connection(args).target
    print(f"swarm wait: orchestrator at {target} not SERVING after {args.timeout:.0f}s", file=sys.stderr)
    return EXIT_UNAVAILABLE


def _size(value: str) -> int:
    size = int(value)
    if not 1 <= size <= 16:
        raise argparse.ArgumentTypeError("swarm size must be 1..16")
    return size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swarm", description="Send one coding task to a swarm of LLM instances.")
    connection.add_arguments(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a task through the swarm")
    run.add_argument("task", nargs="?", help="the coding task")
    run.add_argument("-f", "--file", help="read the task from FILE")
    run.add_argument("--size", type=_size, default=0, help="instances to use, 1..16 (default: the server's sizing)")
    run.add_argument("--instance", action="append", help="restrict to this instance (repeatable)")
    run.add_argument("--no-refine", action="store_true", help="skip the refinement stage")
    run.add_argument("--timeout", type=float, default=0.0, help="per-instance deadline in seconds")
    run.add_argument("--estimate", action="store_true", help="print what the run would cost, without running it")
    run.add_argument("--max-cost", type=float, default=0.0, help="refuse the run if it may cost more (USD)")
    run.add_argument("--allow-shrink", action="store_true", help="run with fewer instances rather than be refused")
    attached_tests.add_arguments(run)
    run.add_argument(
        "--adaptive",
        action="store_true",
        help="start with 3 instances and add 2 a round while the answer is not settled, up to --size (default 7); "
        "without --size the server does this by default",
    )
    shown = run.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print the final run as JSON (no progress)")
    shown.add_argument(
        "--stream",
        action="store_true",
        help="also show each instance's answer as it is written, with the progress on stderr: whole lines "
        "prefixed by the slot ('  slot 2 | ...'), because several instances write at once and prefixed lines "
        "stay readable interleaved, in a terminal or a log (grep 'slot 2 |' picks one answer out)",
    )

    runs = sub.add_parser("runs", help="stored runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    listing = runs_sub.add_parser("list", help="list runs, newest first")
    listing.add_argument("--page-size", type=int, default=20)
    listing.add_argument("--page-token", default="")
    listing.add_argument("--json", action="store_true")
    show = runs_sub.add_parser("show", help="show one run")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")

    quality_cli.add_commands(sub)
    keys_cli.add_commands(sub)
    local_commands.add_commands(sub)

    instances = sub.add_parser("instances", help="configured instances and their health")
    instances.add_argument("--json", action="store_true")

    capacity = sub.add_parser("capacity", help="the run queue: runs driven and waiting, instance slots in use")
    capacity.add_argument("--json", action="store_true")

    status = sub.add_parser("status", help="instances' health, the run queue, recent throughput and today's spend")
    status.add_argument("--json", action="store_true")

    budget = sub.add_parser("budget", help="your spend against your daily and monthly budgets")
    budget.add_argument("--json", action="store_true")

    wait = sub.add_parser("wait", help="wait until the orchestrator is serving")
    wait.add_argument("--timeout", type=float, default=240.0)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    quality = bench_sub.add_parser(
        "quality", help="selection quality on recorded model outputs (replay instances, reference tests)"
    )
    from swarm_bench.quality_options import add_arguments as add_bench_quality_arguments

    add_bench_quality_arguments(quality)

    sandbox = sub.add_parser("sandbox", help="the code sandbox")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    execute = sandbox_sub.add_parser(
        "exec", help="run one Python program in the configured sandbox and print what happened as JSON"
    )
    from .sandbox_exec import add_arguments as add_sandbox_exec_arguments

    add_sandbox_exec_arguments(execute)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "up":
        return local_commands.run_up(args)
    if args.command == "model":
        return local_commands.run_model(args)
    if args.command == "keys":
        return keys_cli.run(args)
    if args.command == "sandbox":
        from .sandbox_exec import run_cli as sandbox_exec

        return sandbox_exec(args)
    if args.command == "bench":
        from swarm_bench.quality import run_cli  # imports the four services: only for this command

        return run_cli(args)
    if args.command == "run":
        if args.file:
            try:
                args.task_text = Path(args.file).read_text()
            except OSError as exc:
                print(f"swarm run: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
                return EXIT_USAGE
        elif args.task:
            args.task_text = args.task
        else:
            print("swarm run: give the task as an argument or with -f FILE", file=sys.stderr)
            return EXIT_USAGE
        try:
            args.tests = attached_tests.collect(args.test, args.tests_file)
        except attached_tests.AttachedTestsError as exc:
            print(f"swarm run: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        args.connection = Connection.from_args(args, os.environ)
    except ConfigError as exc:
        print(f"swarm: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command in quality_cli.COMMANDS:
        conn = args.connection
        return asyncio.run(quality_cli.run_command(conn.channel, args, lambda exc: _rpc_error(exc, conn)))
    handlers = {
        "run": _run,
        "runs": _runs,
        "instances": _instances,
        "capacity": _capacity,
        "status": _status,
        "wait": _wait,
        "budget": _budget,
    }
    try:
        return asyncio.run(handlers[args.command](args))
    finally:
        tracing.flush()


if __name__ == "__main__":
    sys.exit(main())
