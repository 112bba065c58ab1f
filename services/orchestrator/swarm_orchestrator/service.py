"""The OrchestratorService RPCs: validation, streaming, run lookup, approvals, feedback, reports.

A run is ``pipeline.Pipeline.execute``, its stages in order. Where its decisions are made: the
ranking in ``ranking.rank``, the consensus claim in ``consensus.consensus_for``, refinement's
keep-or-drop in ``refinement.keep_or_drop``, and why a run was held, failed or used in
``gating.verdict`` (the rules and their reasons: docs/selection.md, docs/quality-gates.md).

Every call is authenticated before a handler runs (``identity.AuthInterceptor``: an API key, and
for the Worker's service key the end user it names); the handlers take the caller from
``identity.current()`` and see only the caller's tenant. A run of another tenant is answered
exactly as a missing one. Roles and tenants: docs/identity.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import grpc
from google.protobuf import timestamp_pb2
from opentelemetry import trace

from swarm.v1 import common_pb2, orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarmlib import InvalidArgumentError, PermissionDeniedError, SwarmError

from . import identity, quality_report, report
from .admission import Admitted
from .config import OrchestratorConfig
from .growth import Growth, limited, plan
from .pipeline import Emit, Pipeline, RunOptions
from .pool import InstancePool
from .reputation import Event, Tally, approval_events, entry, feedback_events, touched
from .run_queue import RunQueue
from .run_request import check_text as _check_text, validate
from .sizing import auto_swarm_size, quorum_for
from .spending import Spending
from .store import RunStore

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_COMMENT_CHARS = 2000
MAX_RUN_ID_CHARS = 128


def _check_run_id(run_id: str) -> None:
    if not run_id.strip():
        raise InvalidArgumentError("run_id is empty: pass the id printed by `swarm run` or `swarm runs list`")
    if len(run_id) > MAX_RUN_ID_CHARS:
        raise InvalidArgumentError(
            f"run_id is {len(run_id)} characters; run ids are at most {MAX_RUN_ID_CHARS} "
            "(pass the id printed by `swarm run` or `swarm runs list`)"
        )
    _check_text("run_id", run_id)


def _check_comment(comment: str) -> None:
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidArgumentError(f"comment is {len(comment)} characters; keep it to {MAX_COMMENT_CHARS}")
    _check_text("comment", comment)


def _check_page_size(page_size: int) -> int:
    if not 0 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(f"page_size is {page_size}; use 1..{MAX_PAGE_SIZE} (0 means 20)")
    return page_size or DEFAULT_PAGE_SIZE


# What a google.protobuf.Timestamp may hold: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def _time(name: str, stamp: timestamp_pb2.Timestamp, present: bool) -> dt.datetime | None:
    if not present:
        return None
    if not (_MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS and 0 <= stamp.nanos <= 999_999_999):
        raise InvalidArgumentError(
            f"{name} is not a valid time (seconds={stamp.seconds}, nanos={stamp.nanos}): use a time between "
            "0001-01-01 and 9999-12-31 UTC, nanos 0..999999999, or leave it unset"
        )
    return stamp.ToDatetime(tzinfo=dt.UTC)


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """Accepts runs and streams their progress; runs outlive a disconnected client and are stored."""

    def __init__(
        self,
        config: OrchestratorConfig,
        pool: InstancePool,
        pipeline: Pipeline,
        store: RunStore,
        queue: RunQueue,
        spending: Spending,
    ) -> None:
        self._config = config
        self._spending = spending
        self._pool = pool
        self._pipeline = pipeline
        self._store = store
        self._queue = queue
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
        principal = identity.current()
        tenant = principal.tenant
        allowed = validate(request, self._config, self._pool.names)
        run_id = uuid.uuid4().hex[:16]
        # An adaptive run holds and reserves the most it may grow to (docs/adaptive.md).
        growth = self._growth(request)
        wanted = growth.limit if growth is not None else request.swarm_size or auto_swarm_size(request.task)
        # Before anything is stored or called: refused (RESOURCE_EXHAUSTED) or shrunk to fit.
        size = await self._spending.reserve(run_id, principal, request, allowed, wanted)
        growth = limited(growth, size) if growth is not None else None
        run = pb.Run(
            id=run_id,
            task=request.task,
            status=pb.RUN_STATUS_RUNNING,
            swarm_size=size,
            quorum=quorum_for(growth.start if growth is not None else size, self._config.quorum_fraction),
            usage=common_pb2.Usage(),
            adaptive_start=growth.start if growth is not None else 0,
        )
        run.created_at.FromDatetime(dt.datetime.now(dt.UTC))
        # The SRE's way from an alert or a report to this run's trace in Jaeger (docs/tracing.md).
        trace.get_current_span().set_attribute("swarm.run_id", run.id)
        try:
            # Stored and queued at once, or refused with RESOURCE_EXHAUSTED and not stored at all.
            await self._queue.join(run, principal.tenant, f"{principal.tenant}/{principal.user}", allowed)
        except asyncio.CancelledError:
            # The caller went away mid-insert: the row may exist, so close it rather than leave it RUNNING.
            run.status = pb.RUN_STATUS_FAILED
            run.error = "cancelled by the client before the run started"
            run.finished_at.FromDatetime(dt.datetime.now(dt.UTC))
            await asyncio.shield(self._store.finish_run(run))
            await asyncio.shield(self._spending.settle(run.id, 0.0))
            raise
        except BaseException:
            await asyncio.shield(self._spending.settle(run.id, 0.0))  # nothing was called
            raise
        queue: asyncio.Queue[pb.RunSwarmResponse | None] = asyncio.Queue()

        def stamp(event: pb.RunSwarmResponse) -> pb.RunSwarmResponse:
            event.run_id = run.id
            event.time.GetCurrentTime()
            return event

        async def emit(event: pb.RunSwarmResponse) -> None:
            await queue.put(stamp(event))

        async def admit(emit: Emit) -> Admitted:
            async def queued(place: pb.RunQueued) -> None:
                await emit(pb.RunSwarmResponse(queued=place))

            return await self._queue.wait(run.id, queued)

        async def drive() -> tuple[pb.Run, SwarmError | None]:
            try:
                options = RunOptions(
                    allowed=allowed,
                    refine=self._config.refine and not request.skip_refine,
                    timeout_s=request.instance_timeout_seconds or self._config.instance_timeout_s,
                    attached_tests=list(request.tests),
                    stream_output=request.stream_output,
                    tenant=tenant,
                    admit=admit,
                    growth=growth,
                )
                return await self._pipeline.execute(run, options, emit)
            finally:
                await self._queue.leave(run.id)
                await self._spending.settle(run.id, run.usage.cost_usd)
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

    def _growth(self, request: pb.RunSwarmRequest | pb.EstimateRunRequest) -> Growth | None:
        """An adaptive run's growth: asked for, or the server's default for a run of size 0."""
        config = self._config
        if not (request.adaptive or (not request.swarm_size and config.default_sizing == "adaptive")):
            return None
        return plan(request.swarm_size, config.max_swarm_size, config.adaptive_start, config.adaptive_step)

    async def EstimateRun(
        self, request: pb.EstimateRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.EstimateRunResponse:
        allowed = validate(request, self._config, self._pool.names)
        growth = self._growth(request)
        if growth is None:
            size = request.swarm_size or auto_swarm_size(request.task)
            return await self._spending.estimate(identity.current(), request, allowed, size)
        return await self._spending.estimate(identity.current(), request, allowed, growth.limit, growth.start)

    async def GetBudget(self, request: pb.GetBudgetRequest, context: grpc.aio.ServicerContext) -> pb.GetBudgetResponse:
        return pb.GetBudgetResponse(budgets=await self._spending.uses(identity.current()))

    async def GetRun(self, request: pb.GetRunRequest, context: grpc.aio.ServicerContext) -> pb.GetRunResponse:
        _check_run_id(request.run_id)
        return pb.GetRunResponse(run=await self._store.get_run(request.run_id, identity.current().tenant))

    async def ListRuns(self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext) -> pb.ListRunsResponse:
        page_size = _check_page_size(request.page_size)
        runs, token = await self._store.list_runs(page_size, request.page_token, identity.current().tenant)
        return pb.ListRunsResponse(runs=runs, next_page_token=token)

    @staticmethod
    def _approver(verb: str) -> identity.Principal:
        """The caller, if their own approver key lets them approve and reject in their tenant;
        checked before the run is looked up, so who may not decide learns nothing about runs."""
        caller = identity.current()
        if caller.asserted:
            raise PermissionDeniedError(
                f"{caller.user} may not {verb} runs through a service: approvers use their own approver key "
                "(`swarm approve` with it)"
            )
        if not caller.may_approve:
            raise PermissionDeniedError(
                f"{caller.user} may not {verb} runs: only approver keys of tenant {caller.tenant} may "
                "(`swarm keys add --role approver`)"
            )
        return caller

    async def _decide(self, run_id: str, comment: str, approve: bool) -> pb.Run:
        _check_run_id(run_id)
        _check_comment(comment)
        caller = self._approver("approve" if approve else "reject")
        return await self._store.decide(
            run_id,
            caller.user,
            approve,
            comment.strip(),
            lambda run: approval_events(run, approved=approve),
            caller.tenant,
        )

    async def ApproveRun(
        self, request: pb.ApproveRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApproveRunResponse:
        return pb.ApproveRunResponse(run=await self._decide(request.run_id, request.comment, approve=True))

    async def RejectRun(self, request: pb.RejectRunRequest, context: grpc.aio.ServicerContext) -> pb.RejectRunResponse:
        return pb.RejectRunResponse(run=await self._decide(request.run_id, request.comment, approve=False))

    async def ListPendingApprovals(
        self, request: pb.ListPendingApprovalsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPendingApprovalsResponse:
        page_size = _check_page_size(request.page_size)
        pending, token = await self._store.list_pending(page_size, request.page_token, identity.current().tenant)
        return pb.ListPendingApprovalsResponse(
            runs=[pb.PendingApproval(run=summary, gate=gate) for summary, gate in pending], next_page_token=token
        )

    async def SubmitFeedback(
        self, request: pb.SubmitFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitFeedbackResponse:
        _check_run_id(request.run_id)
        _check_comment(request.comment)
        if not 1 <= request.rating <= 5:
            raise InvalidArgumentError(f"rating is {request.rating}; rate the answer 1 (useless) to 5 (use as is)")
        _check_text("preferred_candidate_id", request.preferred_candidate_id)
        caller = identity.current()
        preferred = request.preferred_candidate_id.strip()

        def events(run: pb.Run) -> list[Event]:
            ids = [c.id for c in run.candidates]
            if preferred and preferred not in ids:
                raise InvalidArgumentError(
                    f"preferred_candidate_id {preferred!r} is not a candidate of run {run.id}; its candidates: "
                    f"{', '.join(ids)}"
                )
            return feedback_events(run, request.rating, preferred)

        feedback = pb.Feedback(
            user=caller.user, rating=request.rating, preferred_candidate_id=preferred, comment=request.comment.strip()
        )
        stored, new_events, before = await self._store.submit_feedback(request.run_id, feedback, events, caller.tenant)
        now = await self._store.reputation(caller.tenant)
        return pb.SubmitFeedbackResponse(
            feedback=stored,
            reputation=[entry(key, now.get(key, Tally()), before.get(key, Tally())) for key in touched(new_events)],
        )

    async def ListReputation(
        self, request: pb.ListReputationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReputationResponse:
        tenant = identity.current().tenant
        now = await self._store.reputation(tenant)
        since = _time("since", request.since, request.HasField("since"))
        before = await self._store.reputation(tenant, since) if since is not None else {}
        return pb.ListReputationResponse(
            reputation=[entry(key, now[key], before.get(key, Tally())) for key in sorted(now)]
        )

    async def GetRunReport(
        self, request: pb.GetRunReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRunReportResponse:
        _check_run_id(request.run_id)
        run = await self._store.get_run(request.run_id, identity.current().tenant)
        if request.format == pb.REPORT_FORMAT_JSON:
            return pb.GetRunReportResponse(format=request.format, content=report.render(report.run_document(run)))
        return pb.GetRunReportResponse(format=pb.REPORT_FORMAT_MARKDOWN, content=report.run_markdown(run))

    async def GetQualityReport(
        self, request: pb.GetQualityReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetQualityReportResponse:
        since = _time("since", request.since, request.HasField("since"))
        until = _time("until", request.until, request.HasField("until"))
        if since is not None and until is not None and until <= since:
            raise InvalidArgumentError(f"until ({until.isoformat()}) must be after since ({since.isoformat()})")
        tenant = identity.current().tenant
        runs = await self._store.runs_between(since, until, tenant)
        now = await self._store.reputation(tenant, until)
        before = await self._store.reputation(tenant, since) if since is not None else {}
        metrics = quality_report.quality_metrics(runs, now, before, since, until)
        if request.format == pb.REPORT_FORMAT_JSON:
            return pb.GetQualityReportResponse(format=request.format, content=report.render(metrics))
        return pb.GetQualityReportResponse(
            format=pb.REPORT_FORMAT_MARKDOWN, content=quality_report.quality_markdown(metrics)
        )

    async def GetCapacity(
        self, request: pb.GetCapacityRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCapacityResponse:
        state = await self._queue.state()
        capacity = self._queue.capacity()
        in_use = state.in_use()
        now = dt.datetime.now(dt.UTC)
        oldest = min(state.enqueued_at.values(), default=now)
        return pb.GetCapacityResponse(
            active_runs=len(state.started),
            max_active_runs=capacity.max_active,
            queued_runs=state.depth,
            max_queued_runs=self._config.queue_size,
            oldest_wait_ms=max(0.0, (now - oldest).total_seconds() * 1000),
            queue_timeout_ms=self._config.queue_timeout_s * 1000,
            instances=[
                pb.InstanceSlots(instance=name, slots=slots, in_use=in_use.get(name, 0))
                for name, slots in capacity.slots.items()
            ],
        )

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
                    refine_only=state.spec.name == self._config.refine_instance,
                )
            )
        return pb.ListInstancesResponse(instances=statuses)
