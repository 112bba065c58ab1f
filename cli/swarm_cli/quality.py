"""``swarm approve | reject | approvals | feedback | reputation | report``: people's side of quality.

Who acts is the API key's principal (the connection sends the key). ``--user`` or ``$SWARM_USER``
is for service keys only: it names the end user the service acts for, sent as the
``x-swarm-user`` metadata (docs/identity.md). Reports are rendered by the orchestrator, so every
client prints the same numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from swarm.v1 import orchestrator_pb2 as pb, orchestrator_pb2_grpc

USER_METADATA = "x-swarm-user"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
Stub = orchestrator_pb2_grpc.OrchestratorServiceStub
COMMANDS = ("approve", "reject", "approvals", "feedback", "reputation", "report")


def parse_when(value: str) -> dt.datetime:
    """``2026-11-01`` or an ISO date-time; without a zone it is UTC."""
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (use 2026-11-01 or 2026-11-01T08:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _rating(value: str) -> int:
    try:
        rating = int(value)
    except ValueError:
        rating = 0
    if not 1 <= rating <= 5:
        raise argparse.ArgumentTypeError(f"rating must be 1..5, got {value!r}")
    return rating


def _add_user(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--user", help=f"with a service key: the user it acts for, sent as {USER_METADATA} (default $SWARM_USER)"
    )


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the quality commands on the ``swarm`` parser."""
    for verb, what in (("approve", "approve a run the quality gates hold"), ("reject", "reject a held run")):
        command = sub.add_parser(verb, help=what)
        command.add_argument("run_id")
        command.add_argument("--comment", default="", help="why; kept in the run's audit trail")
        _add_user(command)
        command.add_argument("--json", action="store_true", help="print the run as JSON")

    approvals = sub.add_parser("approvals", help="runs waiting for approval, oldest first")
    approvals.add_argument("--page-size", type=int, default=20)
    approvals.add_argument("--page-token", default="")
    approvals.add_argument("--json", action="store_true")

    feedback = sub.add_parser("feedback", help="rate a run's answer; feeds the reputation of its instances")
    feedback.add_argument("run_id")
    feedback.add_argument("--rating", type=_rating, required=True, help="1 (useless) to 5 (use as is)")
    feedback.add_argument("--prefer", default="", metavar="CANDIDATE", help="the candidate you preferred, e.g. c2")
    feedback.add_argument("--comment", default="")
    _add_user(feedback)
    feedback.add_argument("--json", action="store_true")

    reputation = sub.add_parser("reputation", help="reputation of each instance and model (the ranking prior)")
    reputation.add_argument("--since", type=parse_when, help="show how it moved since this date")
    reputation.add_argument("--json", action="store_true")

    report = sub.add_parser(
        "report", help="report of one run, or quality metrics over the runs in a window (without RUN_ID)"
    )
    report.add_argument("run_id", nargs="?", help="the run; leave out for metrics over many runs")
    report.add_argument("--format", choices=["md", "json"], default="md")
    report.add_argument("--since", type=parse_when, help="runs created from this date (metrics)")
    report.add_argument("--until", type=parse_when, help="runs created before this date (metrics)")


def _as_json(message: Message) -> str:
    return json.dumps(
        json_format.MessageToDict(
            message,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        ),
        indent=2,
    )


def _identity(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """The end user a service key acts for, if one is named; none: the key's own principal acts."""
    user = (args.user or os.environ.get("SWARM_USER", "")).strip()
    return ((USER_METADATA, user),) if user else ()


async def _decide(stub: Stub, args: argparse.Namespace) -> int:
    metadata = _identity(args)
    if args.command == "approve":
        run = (
            await stub.ApproveRun(pb.ApproveRunRequest(run_id=args.run_id, comment=args.comment), metadata=metadata)
        ).run
    else:
        run = (
            await stub.RejectRun(pb.RejectRunRequest(run_id=args.run_id, comment=args.comment), metadata=metadata)
        ).run
    if args.json:
        print(_as_json(run))
        return EXIT_OK
    status = pb.RunStatus.Name(run.status).removeprefix("RUN_STATUS_").lower()
    done = run.audit[-1] if run.audit else None
    by = f" by {done.actor}" if done is not None else ""
    print(f"run {run.id}: {status}{by}")
    return EXIT_OK


async def _approvals(stub: Stub, args: argparse.Namespace) -> int:
    page = await stub.ListPendingApprovals(
        pb.ListPendingApprovalsRequest(page_size=args.page_size, page_token=args.page_token)
    )
    if args.json:
        print(_as_json(page))
        return EXIT_OK
    if not page.runs:
        print("no runs are waiting for approval")
    now = dt.datetime.now(dt.UTC)
    for pending in page.runs:
        created = pending.run.created_at.ToDatetime(tzinfo=dt.UTC)
        waited = now - created
        hours = waited.total_seconds() / 3600
        task = pending.run.task.splitlines()[0][:50] if pending.run.task else ""
        print(f"{pending.run.id}  {created:%Y-%m-%d %H:%M}  waiting {hours:.1f}h  {pending.gate.summary}  | {task}")
    if page.next_page_token:
        print(f"more: swarm approvals --page-token {page.next_page_token}")
    return EXIT_OK


async def _feedback(stub: Stub, args: argparse.Namespace) -> int:
    metadata = _identity(args)
    request = pb.SubmitFeedbackRequest(
        run_id=args.run_id, rating=args.rating, preferred_candidate_id=args.prefer, comment=args.comment
    )
    reply = await stub.SubmitFeedback(request, metadata=metadata)
    if args.json:
        print(_as_json(reply))
        return EXIT_OK
    prefer = f", preferred {reply.feedback.preferred_candidate_id}" if reply.feedback.preferred_candidate_id else ""
    print(f"feedback stored for run {args.run_id}: {reply.feedback.rating}/5{prefer}")
    for entry in reply.reputation:
        scope = pb.ReputationScope.Name(entry.scope).removeprefix("REPUTATION_SCOPE_").lower()
        print(f"  {scope} {entry.name}: vote multiplier {entry.multiplier_before:.3f} -> {entry.multiplier:.3f}")
    return EXIT_OK


async def _reputation(stub: Stub, args: argparse.Namespace) -> int:
    request = pb.ListReputationRequest()
    if args.since is not None:
        request.since.FromDatetime(args.since)
    reply = await stub.ListReputation(request)
    if args.json:
        print(_as_json(reply))
        return EXIT_OK
    if not reply.reputation:
        print("no reputation yet: every instance and model votes with weight 1.0")
        return EXIT_OK
    print(f"{'scope':<9} {'name':<32} {'obs':>4} {'mean':>6} {'multiplier':>10} {'moved':>7}")
    for entry in reply.reputation:
        scope = pb.ReputationScope.Name(entry.scope).removeprefix("REPUTATION_SCOPE_").lower()
        moved = entry.multiplier - entry.multiplier_before
        print(
            f"{scope:<9} {entry.name[:32]:<32} {entry.observations:>4} {entry.mean:>6.3f} "
            f"{entry.multiplier:>10.3f} {moved:>+7.3f}"
        )
    return EXIT_OK


async def _report(stub: Stub, args: argparse.Namespace) -> int:
    fmt = pb.REPORT_FORMAT_JSON if args.format == "json" else pb.REPORT_FORMAT_MARKDOWN
    if args.run_id:
        if args.since is not None or args.until is not None:
            print("swarm report: --since/--until are for metrics over many runs; leave out RUN_ID", file=sys.stderr)
            return EXIT_USAGE
        reply = await stub.GetRunReport(pb.GetRunReportRequest(run_id=args.run_id, format=fmt))
        sys.stdout.write(reply.content)
        return EXIT_OK
    request = pb.GetQualityReportRequest(format=fmt)
    if args.since is not None:
        request.since.FromDatetime(args.since)
    if args.until is not None:
        request.until.FromDatetime(args.until)
    quality = await stub.GetQualityReport(request)
    sys.stdout.write(quality.content)
    return EXIT_OK


HANDLERS: dict[str, Callable[[Stub, argparse.Namespace], Awaitable[int]]] = {
    "approve": _decide,
    "reject": _decide,
    "approvals": _approvals,
    "feedback": _feedback,
    "reputation": _reputation,
    "report": _report,
}


async def run_command(
    open_channel: Callable[[], grpc.aio.Channel],
    args: argparse.Namespace,
    on_error: Callable[[grpc.aio.AioRpcError], int],
) -> int:
    """Run one quality command against the orchestrator ``open_channel`` reaches."""
    async with open_channel() as channel:
        try:
            return await HANDLERS[args.command](Stub(channel), args)
        except grpc.aio.AioRpcError as exc:
            return on_error(exc)
