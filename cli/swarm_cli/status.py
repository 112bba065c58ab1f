"""``swarm status``: the swarm at a glance for whoever operates it, from the orchestrator's own
RPCs: each instance's health, the run queue at the door, the last 15 minutes' throughput and
outcomes, and today's spend (UTC), all within the caller's tenant except the shared queue."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import json_format

from swarm.v1 import orchestrator_pb2 as pb, orchestrator_pb2_grpc

WINDOW = dt.timedelta(minutes=15)


async def _metrics(stub: orchestrator_pb2_grpc.OrchestratorServiceStub, since: dt.datetime) -> dict[str, Any]:
    request = pb.GetQualityReportRequest(format=pb.REPORT_FORMAT_JSON)
    request.since.FromDatetime(since)
    reply = await stub.GetQualityReport(request)
    document: dict[str, Any] = json.loads(reply.content)
    return document


async def gather(channel: grpc.aio.Channel, now: dt.datetime) -> dict[str, Any]:
    """Everything ``swarm status`` shows, as one document (``--json`` prints it as is)."""
    stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
    instances = await stub.ListInstances(pb.ListInstancesRequest())
    capacity = await stub.GetCapacity(pb.GetCapacityRequest())
    recent = await _metrics(stub, now - WINDOW)
    today = await _metrics(stub, now.replace(hour=0, minute=0, second=0, microsecond=0))
    finished = sum(count for status, count in recent["status"].items() if status != "running")
    return {
        "instances": [
            {"name": s.instance.name, "healthy": s.healthy, "last_error": s.last_error} for s in instances.instances
        ],
        "queue": json_format.MessageToDict(
            capacity, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        ),
        "last_15_min": {
            "runs": recent["runs"],
            "finished": finished,
            "runs_per_min": round(finished / (WINDOW.total_seconds() / 60), 2),
            "status": recent["status"],
            "success_rate": recent["success_rate"],
        },
        "today": {"runs": today["runs"], "cost_usd": today["cost_usd"]},
    }


def render(status: dict[str, Any], out: Callable[[str], None]) -> None:
    healthy = [i for i in status["instances"] if i["healthy"]]
    out(f"instances: {len(healthy)} of {len(status['instances'])} healthy")
    for instance in status["instances"]:
        state = "healthy" if instance["healthy"] else f"UNHEALTHY ({instance['last_error']})"
        out(f"  {instance['name']:<16} {state}")
    queue = status["queue"]
    out(
        f"queue: {queue['active_runs']} of {queue['max_active_runs']} runs driven, {queue['queued_runs']} waiting "
        f"(the oldest for {queue['oldest_wait_ms'] / 1000:.1f}s)"
    )
    recent = status["last_15_min"]
    rate = "-" if recent["success_rate"] is None else f"{recent['success_rate']:.0%}"
    outcomes = ", ".join(f"{count} {name}" for name, count in sorted(recent["status"].items())) or "none"
    throughput = f"{recent['finished']} runs finished ({recent['runs_per_min']:.2f}/min)"
    out(f"last 15 min: {throughput}, {outcomes}; success {rate}")
    out(f"today (UTC): {status['today']['runs']} runs, ${status['today']['cost_usd']:.4f} spent")
