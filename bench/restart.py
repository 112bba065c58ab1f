"""Kill the orchestrator with runs in flight: how soon does it serve again, and what becomes of the runs?

Usage: .venv/bin/python bench/restart.py [--runs 20] [--lease 30] [--db sqlite|postgres]
       [--mode restart|replica]

The orchestrator runs as a real process (``python -m swarm_orchestrator``). Its two instances are
served by this script: ``fast`` answers at once, ``held`` never does, so every run has one answer
stored and waits for the other when the orchestrator is SIGKILLed. Then either

* ``restart``: the same orchestrator is started again on the same database, or
* ``replica``: a second orchestrator that was already serving the same PostgreSQL database
  (``--db postgres``) carries on alone.

Printed: seconds from the kill until the orchestrator serves again (health SERVING; ``replica``:
0, it never stopped), and for the runs that were in flight, how long until each was no longer
RUNNING (median and max, from the kill), their statuses and errors, and how many kept their
answer. With a lease of L the bound is L + L/3 after the last renewal; the renewal before the
kill is up to L/3 old, so a run ends between L and 4L/3 after the kill.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from swarm.v1 import orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarm_bench.http1 import HttpRequest, HttpServer, send_json
from swarm_bench.openai_wire import ChatReply, error_body, estimate_tokens, model_list, send_reply
from swarm_bench.runs import database
from swarm_cli.local_keys import ensure_key
from swarmlib import bearer_interceptors

ROOT = Path(__file__).resolve().parent.parent
TASK = "Write a Python function add(a, b) that returns the sum of a and b.\n\n>>> add(2, 3)\n5\n"
ANSWER = "```python\ndef add(a, b):\n    return a + b\n```\n"


@dataclass
class Instances(HttpServer):
    """``/i/fast/v1`` answers every chat request at once; ``/i/held/v1`` holds it until stop."""

    host: str = "127.0.0.1"
    port: int = 0

    async def handle(self, request: HttpRequest, writer: asyncio.StreamWriter) -> bool:
        name = request.path.split("/")[2] if request.path.startswith("/i/") else ""
        if request.path.endswith("/models"):
            await send_json(writer, 200, model_list("bench", "bench"), request.keep_alive)
            return request.keep_alive
        if name == "held":
            await self._stopping.wait()
            return False
        if name != "fast" or not request.path.endswith("/chat/completions"):
            await send_json(writer, 404, error_body(f"no route {request.path}", "not_found"), request.keep_alive)
            return request.keep_alive
        body: dict[str, Any] = json.loads(request.body)
        reply = ChatReply(f"chatcmpl-{uuid.uuid4().hex[:12]}", "bench", ANSWER, estimate_tokens(TASK), "fp_bench")
        await send_reply(writer, reply, body, request.keep_alive)
        return request.keep_alive


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


@contextmanager
def orchestrator(home: Path, name: str, database_url: str, instances_port: int, lease_s: float) -> Iterator[Process]:
    port = free_port()
    instances = [
        {"name": "fast", "base_url": f"http://127.0.0.1:{instances_port}/i/fast/v1", "model": "bench"},
        {"name": "held", "base_url": f"http://127.0.0.1:{instances_port}/i/held/v1", "model": "bench"},
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "OTEL_"))}
    keys_file = home / "api-keys.json"
    ensure_key(keys_file, home / "cli-key", "local", "approver")
    env.update(
        PYTHONUNBUFFERED="1",
        SWARM_API_KEYS_FILE=str(keys_file),
        SWARM_ORCHESTRATOR_ADDR=f"127.0.0.1:{port}",
        SWARM_DATABASE_URL=database_url,
        SWARM_INSTANCES=json.dumps(instances),
        SWARM_RUN_LEASE_S=str(lease_s),
        SWARM_TEST_WRITERS="0",
        SWARM_INSTANCE_TIMEOUT_S="3600",
        # Nothing listens there: the runs never get past the held instance.
        SWARM_COLLATOR_TARGET=f"127.0.0.1:{free_port()}",
        SWARM_ASSESSOR_TARGET=f"127.0.0.1:{free_port()}",
        SWARM_REFINER_TARGET=f"127.0.0.1:{free_port()}",
    )
    log = home / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "swarm_orchestrator"], env=env, cwd=ROOT, stdout=out, stderr=out)
    try:
        yield Process(proc, port, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def wait_serving(process: Process, limit_s: float = 60.0) -> float:
    """Seconds until ``process`` answers its health check with SERVING."""
    started = time.monotonic()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{process.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() - started < limit_s:
            if process.proc.poll() is not None:
                raise SystemExit(f"the orchestrator exited:\n{process.log.read_text()[-2000:]}")
            with suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - started
            await asyncio.sleep(0.05)
    raise SystemExit(f"not serving within {limit_s} s:\n{process.log.read_text()[-2000:]}")


def keyed_channel(process: Process) -> grpc.aio.Channel:
    """A channel to ``process`` that sends the key ``orchestrator`` made beside its log."""
    key = (process.log.parent / "cli-key").read_text().strip()
    return grpc.aio.insecure_channel(f"127.0.0.1:{process.port}", interceptors=bearer_interceptors(key))


async def start_runs(process: Process, count: int) -> tuple[list[str], list[grpc.aio.Channel]]:
    """``count`` runs, each with its fast answer arrived (stored before it is streamed)."""
    channel = keyed_channel(process)
    stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)

    async def one() -> str:
        call = stub.RunSwarm(pb.RunSwarmRequest(task=TASK, swarm_size=2, skip_refine=True))
        run_id: str = (await call.read()).run_id
        while not (await call.read()).HasField("instance_finished"):
            pass
        return run_id

    return list(await asyncio.gather(*(one() for _ in range(count)))), [channel]


async def follow(
    process: Process, run_ids: list[str], killed: float, limit_s: float
) -> dict[str, tuple[float, pb.Run]]:
    """Each run once it is no longer RUNNING, with seconds from the kill."""
    closed: dict[str, tuple[float, pb.Run]] = {}
    async with keyed_channel(process) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        while len(closed) < len(run_ids) and time.monotonic() - killed < limit_s:
            for run_id in run_ids:
                if run_id in closed:
                    continue
                run = (await stub.GetRun(pb.GetRunRequest(run_id=run_id))).run
                if run.status != pb.RUN_STATUS_RUNNING:
                    closed[run_id] = (time.monotonic() - killed, run)
            await asyncio.sleep(0.1)
    return closed


def report(
    args: argparse.Namespace, serving_s: float, run_ids: list[str], closed: dict[str, tuple[float, pb.Run]]
) -> None:
    print(f"mode {args.mode}, {args.db}, lease {args.lease:g} s, {len(run_ids)} runs in flight at the SIGKILL")
    print(f"serving again after the kill: {serving_s:.2f} s")
    if closed:
        times = [t for t, _ in closed.values()]
        median, worst = statistics.median(times), max(times)
        print(f"runs closed: {len(closed)}/{len(run_ids)}, after the kill: median {median:.2f} s, max {worst:.2f} s")
    statuses = collections.Counter(pb.RunStatus.Name(run.status) for _, run in closed.values())
    print(f"statuses: {dict(statuses)}; still RUNNING: {len(run_ids) - len(closed)}")
    interrupted = sum("interrupted" in run.error for _, run in closed.values())
    kept = sum(len(run.candidates) == 1 and bool(run.candidates[0].code) for _, run in closed.values())
    print(f"error says 'interrupted': {interrupted}; kept the answer that had arrived: {kept}")
    if closed:
        print(f"e.g.: {next(iter(closed.values()))[1].error}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--lease", type=float, default=30.0, help="SWARM_RUN_LEASE_S (default 30, the default)")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--mode", choices=["restart", "replica"], default="restart")
    args = parser.parse_args()
    if args.mode == "replica" and args.db != "postgres":
        parser.error("--mode replica needs --db postgres (replicas share a database server)")
    home = Path(tempfile.mkdtemp(prefix="swarm-restart-"))
    limit_s = args.lease * 4 / 3 + 30.0
    async with Instances() as instances, database(args.db, home, prefix="swarm") as url:
        with orchestrator(home, "first", url, instances.port, args.lease) as first:
            await wait_serving(first)
            if args.mode == "replica":
                with orchestrator(home, "second", url, instances.port, args.lease) as second:
                    await wait_serving(second)
                    run_ids, channels = await start_runs(first, args.runs)
                    first.proc.send_signal(signal.SIGKILL)
                    killed = time.monotonic()
                    closed = await follow(second, run_ids, killed, limit_s)
                    report(args, 0.0, run_ids, closed)
                    for channel in channels:
                        await channel.close()
                    return 0 if len(closed) == len(run_ids) else 1
            run_ids, channels = await start_runs(first, args.runs)
            first.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            first.proc.wait()
        for channel in channels:
            await channel.close()
        with orchestrator(home, "restarted", url, instances.port, args.lease) as restarted:
            await wait_serving(restarted)
            serving_s = time.monotonic() - killed
            closed = await follow(restarted, run_ids, killed, limit_s)
            restarted.proc.send_signal(signal.SIGTERM)
            restarted.proc.wait()
    report(args, serving_s, run_ids, closed)
    return 0 if len(closed) == len(run_ids) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
