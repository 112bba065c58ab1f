"""The OrchestratorService RPCs: validation, streaming, run lookup."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import uuid
from collections.abc import AsyncIterator

import grpc

from swarm.v1 import common_pb2, orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarmlib import InvalidArgumentError, SwarmError

from .config import OrchestratorConfig
from .pipeline import Pipeline, RunOptions
from .pool import InstancePool
from .sizing import auto_swarm_size, quorum_for
from .store import RunStore

MAX_PAGE_SIZE = 100
MAX_INSTANCE_TIMEOUT_S = 3600.0
DEFAULT_PAGE_SIZE = 20


def validate(request: pb.RunSwarmRequest, config: OrchestratorConfig, known: list[str]) -> list[str]:
    """Reject bad input before anything is stored; returns the instances the run may use."""
    if not request.task.strip():
        raise InvalidArgumentError("task is empty: send the coding task in the `task` field")
    if len(request.task) > config.max_task_chars:
        raise InvalidArgumentError(
            f"task is {len(request.task)} characters; the limit is {config.max_task_chars} "
            "(shorten it, or raise SWARM_MAX_TASK_CHARS on the orchestrator)"
        )
    if not 0 <= request.swarm_size <= config.max_swarm_size:
        raise InvalidArgumentError(
            f"swarm_size is {request.swarm_size}; use 1..{config.max_swarm_size}, "
            "or 0 to size the swarm by task complexity"
        )
    blank = [i for i, test in enumerate(request.tests) if not test.strip()]
    if blank:
        raise InvalidArgumentError(f"tests{blank} are empty: attach assert statements, or leave tests out")
    timeout = request.instance_timeout_seconds
    if not math.isfinite(timeout) or not 0 <= timeout <= MAX_INSTANCE_TIMEOUT_S:
        raise InvalidArgumentError(
            f"instance_timeout_seconds is {timeout}; use 0..{MAX_INSTANCE_TIMEOUT_S:.0f} (0 uses the server default)"
        )
    unknown = sorted({name for name in request.instances if name not in known})
    if unknown:
        raise InvalidArgumentError(f"unknown instance(s) {unknown}; configured instances: {known}")
    return list(dict.fromkeys(request.instances)) or list(known)


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """Accepts runs and streams their progress; runs outlive a disconnected client and are stored."""

    def __init__(self, config: OrchestratorConfig, pool: InstancePool, pipeline: Pipeline, store: RunStore) -> None:
        self._config = config
        self._pool = pool
        self._pipeline = pipeline
        self._store = store
        self._running: set[asyncio.Task[tuple[pb.Run, SwarmError | None]]] = set()

    async def cancel_running(self) -> None:
        """On shutdown: interrupt runs in flight (each stores itself as FAILED)."""
        for task in list(self._running):
            task.cancel()
        for task in list(self._running):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def RunSwarm(
        self, request: pb.RunSwarmRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RunSwarmResponse]:
        allowed = validate(request, self._config, self._pool.names)
        size = request.swarm_size or auto_swarm_size(request.task)
        run = pb.Run(
            id=uuid.uuid4().hex[:16],
            task=request.task,
            status=pb.RUN_STATUS_RUNNING,
            swarm_size=size,
            quorum=quorum_for(size, self._config.quorum_fraction),
            usage=common_pb2.Usage(),
        )
        run.created_at.FromDatetime(dt.datetime.now(dt.UTC))
        try:
            await self._store.create_run(run)
        except asyncio.CancelledError:
            # The caller went away mid-insert: the row may exist, so close it rather than leave it RUNNING.
            run.status = pb.RUN_STATUS_FAILED
            run.error = "cancelled by the client before the run started"
            run.finished_at.FromDatetime(dt.datetime.now(dt.UTC))
            await asyncio.shield(self._store.finish_run(run))
            raise
        queue: asyncio.Queue[pb.RunSwarmResponse | None] = asyncio.Queue()

        def stamp(event: pb.RunSwarmResponse) -> pb.RunSwarmResponse:
            event.run_id = run.id
            event.time.GetCurrentTime()
            return event

        async def emit(event: pb.RunSwarmResponse) -> None:
            await queue.put(stamp(event))

        async def drive() -> tuple[pb.Run, SwarmError | None]:
            try:
                options = RunOptions(
                    allowed=allowed,
                    refine=self._config.refine and not request.skip_refine,
                    timeout_s=request.instance_timeout_seconds or self._config.instance_timeout_s,
                    attached_tests=list(request.tests),
                )
                return await self._pipeline.execute(run, options, emit)
            finally:
                queue.put_nowait(None)

        accepted = pb.Run()
        accepted.CopyFrom(run)
        # The run is driven by its own task, started before the first write to the client, so a
        # client that goes away at any point from here on never leaves a RUNNING row behind.
        task = asyncio.create_task(drive(), name=f"run-{run.id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        yield stamp(pb.RunSwarmResponse(accepted=accepted))
        while (event := await queue.get()) is not None:
            yield event
        final, error = await task
        yield stamp(pb.RunSwarmResponse(done=final))
        if error is not None:
            raise error

    async def GetRun(self, request: pb.GetRunRequest, context: grpc.aio.ServicerContext) -> pb.GetRunResponse:
        if not request.run_id.strip():
            raise InvalidArgumentError("run_id is empty: pass the id printed by `swarm run` or `swarm runs list`")
        return pb.GetRunResponse(run=await self._store.get_run(request.run_id))

    async def ListRuns(self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext) -> pb.ListRunsResponse:
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgumentError(f"page_size is {request.page_size}; use 1..{MAX_PAGE_SIZE} (0 means 20)")
        runs, token = await self._store.list_runs(request.page_size or DEFAULT_PAGE_SIZE, request.page_token)
        return pb.ListRunsResponse(runs=runs, next_page_token=token)

    async def ListInstances(
        self, request: pb.ListInstancesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInstancesResponse:
        statuses = []
        for state in self._pool.states():
            statuses.append(
                pb.InstanceStatus(
                    instance=self._pool.instance_ref(state.spec.name),
                    healthy=state.healthy,
                    consecutive_failures=state.consecutive_failures,
                    last_error=state.last_error,
                )
            )
        return pb.ListInstancesResponse(instances=statuses)
