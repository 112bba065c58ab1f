"""Identity and tenants at the orchestrator: API keys on every RPC, roles, service keys acting for
their users, tenants that never see each other's runs (docs/identity.md). Real servers, real
channels; the keys are added to the running orchestrator's keys file, as ``swarm keys add`` does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc
import pytest
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import Orchestrator, Stages, instances_json, orchestrator
from swarm_orchestrator.config import OrchestratorConfig
from swarm_orchestrator.server import create_server
from swarm_orchestrator.store import RunStore
from swarmlib import ConfigError
from swarmlib.api_keys import add_key, load_keys, revoke_key
from tests.fakes.openai_server import Behaviour
from tests.fakes.replies import FIB_REPLY
from tests.fuzz.rpc import invoke, rpcs
from tests.orchestrator.keys import Metadata, bearer, keyless_channel, new_key
from tests.orchestrator.older_schema import as_before
from tests.orchestrator.test_quality import gated
from tests.orchestrator.test_swarm import FIB_TASK, fakes, named

RPCS = rpcs(pb.DESCRIPTOR.services_by_name["OrchestratorService"])
HELD = pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True)  # one answer: no consensus, held


def _empty(rpc_input: object) -> object:
    return message_factory.GetMessageClass(rpc_input)()  # type: ignore[arg-type]


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value


async def test_every_rpc_refuses_a_call_without_a_valid_key(stages: Stages, sqlite_url: str) -> None:
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), sqlite_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        revoked = new_key(orch, "gone")
        revoke_key(orch.keys_file, revoked.split("_")[1])
        real = new_key(orch, "dana")
        wrong_secret = real[:-6] + ("A" * 6 if not real.endswith("A" * 6) else "B" * 6)
        unknown_id = "swk_zzzzzzzzzzzz_" + real.split("_", 2)[2]
        cases: dict[str, Metadata] = {
            "no key": (),
            "not bearer": (("authorization", f"Basic {real}"),),
            "malformed": (("authorization", "Bearer hunter2"),),
            "unknown id": bearer(unknown_id),
            "wrong secret": bearer(wrong_secret),
            "revoked": bearer(revoked),
            "two keys": (*bearer(real), *bearer(real)),
        }
        assert len(RPCS) >= 11
        async with keyless_channel(orch) as channel:
            for rpc in RPCS:
                for case, metadata in cases.items():
                    outcome = await invoke(channel, rpc, _empty(rpc.input), metadata, timeout=10.0)  # type: ignore[arg-type]
                    assert outcome.code == grpc.StatusCode.UNAUTHENTICATED, (rpc.name, case, outcome)
                    assert "authorization: Bearer <key>" in outcome.details and "swarm keys add" in outcome.details
                    assert "SWARM_API_KEY" in outcome.details
                    for shown in (real, revoked, wrong_secret, real.split("_", 2)[2]):
                        assert shown not in outcome.details
                    assert not outcome.responses
            # Health and reflection stay open: probes and tools carry no key.
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            answers = [
                a
                async for a in reflection.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")])
                )
            ]
            names = {s.name for s in answers[0].list_services_response.service}
            assert "swarm.v1.OrchestratorService" in names
        assert (await orch.stub.ListRuns(pb.ListRunsRequest())).runs == []  # nothing was started


async def test_tenants_see_only_their_own_runs(stages: Stages, database_url: str) -> None:
    async with (
        gated(stages) as wired,
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(wired, named(servers), database_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        a_member, a_approver = bearer(new_key(orch, "ann", tenant="a")), bearer(new_key(orch, "ada", "approver", "a"))
        b_member, b_approver = bearer(new_key(orch, "ben", tenant="b")), bearer(new_key(orch, "bo", "approver", "b"))
        stub = orch.stub
        a_run, _ = await _finished_as(orch, a_member, HELD)
        b_run, _ = await _finished_as(orch, b_member, HELD)
        b_other, _ = await _finished_as(orch, b_member, HELD)
        assert a_run.status == b_run.status == pb.RUN_STATUS_NEEDS_APPROVAL

        missing = await _refused(stub.GetRun(pb.GetRunRequest(run_id="nosuchrun"), metadata=a_member))
        foreign = await _refused(stub.GetRun(pb.GetRunRequest(run_id=b_run.id), metadata=a_member))
        assert missing.code() == foreign.code() == grpc.StatusCode.NOT_FOUND
        assert foreign.details() == (missing.details() or "").replace("nosuchrun", b_run.id)  # nothing leaks
        for call in (
            stub.GetRunReport(pb.GetRunReportRequest(run_id=b_run.id), metadata=a_member),
            stub.SubmitFeedback(pb.SubmitFeedbackRequest(run_id=b_run.id, rating=5), metadata=a_member),
            stub.ApproveRun(pb.ApproveRunRequest(run_id=b_run.id), metadata=a_approver),
            stub.RejectRun(pb.RejectRunRequest(run_id=b_run.id), metadata=a_approver),
        ):
            assert (await _refused(call)).code() == grpc.StatusCode.NOT_FOUND
        missing_approval = await _refused(
            stub.ApproveRun(pb.ApproveRunRequest(run_id="nosuchrun"), metadata=a_approver)
        )
        foreign_approval = await _refused(stub.ApproveRun(pb.ApproveRunRequest(run_id=b_run.id), metadata=a_approver))
        assert foreign_approval.details() == (missing_approval.details() or "").replace("nosuchrun", b_run.id)

        # Listings, the approval queue and the quality report see one tenant each.
        assert [r.id for r in (await stub.ListRuns(pb.ListRunsRequest(), metadata=a_member)).runs] == [a_run.id]
        assert {r.id for r in (await stub.ListRuns(pb.ListRunsRequest(), metadata=b_member)).runs} == {
            b_run.id,
            b_other.id,
        }
        assert (await stub.ListRuns(pb.ListRunsRequest(), metadata=())).runs == []  # the stack's tenant: local
        pending_a = await stub.ListPendingApprovals(pb.ListPendingApprovalsRequest(), metadata=a_member)
        assert [p.run.id for p in pending_a.runs] == [a_run.id]
        report = await stub.GetQualityReport(
            pb.GetQualityReportRequest(format=pb.REPORT_FORMAT_JSON), metadata=a_member
        )
        assert json.loads(report.content)["runs"] == 1

        # A member may not approve; the approver of the run's tenant may; it keeps who acted.
        member = await _refused(stub.ApproveRun(pb.ApproveRunRequest(run_id=a_run.id), metadata=a_member))
        assert member.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "ann may not approve runs: only approver keys of tenant a may" in (member.details() or "")
        approved = (await stub.ApproveRun(pb.ApproveRunRequest(run_id=a_run.id), metadata=a_approver)).run
        assert approved.status == pb.RUN_STATUS_SUCCEEDED and approved.audit[-1].actor == "ada"
        assert (await stub.GetRun(pb.GetRunRequest(run_id=b_run.id), metadata=b_approver)).run.status == (
            pb.RUN_STATUS_NEEDS_APPROVAL
        )

        # Reputation is per tenant: a's feedback moves a's, not b's.
        b_before = (await stub.ListReputation(pb.ListReputationRequest(), metadata=b_member)).reputation
        a_before = (await stub.ListReputation(pb.ListReputationRequest(), metadata=a_member)).reputation
        feedback = pb.SubmitFeedbackRequest(run_id=a_run.id, rating=1, preferred_candidate_id="c1")
        reply = await stub.SubmitFeedback(feedback, metadata=a_member)
        assert reply.feedback.user == "ann"
        a_after = (await stub.ListReputation(pb.ListReputationRequest(), metadata=a_member)).reputation
        b_after = (await stub.ListReputation(pb.ListReputationRequest(), metadata=b_member)).reputation
        assert list(b_after) == list(b_before)
        assert sum(r.observations for r in a_after) > sum(r.observations for r in a_before)
        local = (await stub.ListReputation(pb.ListReputationRequest())).reputation
        assert list(local) == []  # tenant local has no runs


async def _finished_as(
    orch: Orchestrator, metadata: Metadata, request: pb.RunSwarmRequest
) -> tuple[pb.Run, list[pb.RunSwarmResponse]]:
    events = [e async for e in orch.stub.RunSwarm(request, metadata=metadata)]
    return events[-1].done, events


async def test_a_service_key_acts_for_its_users_who_may_not_approve_through_it(stages: Stages, sqlite_url: str) -> None:
    async with (
        gated(stages) as wired,
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(wired, named(servers), sqlite_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        service = new_key(orch, "worker", "service", "web")
        approver = new_key(orch, "erin", "approver", "web")
        member = new_key(orch, "mia", tenant="web")
        held, _ = await _finished_as(orch, bearer(service, "erin"), HELD)
        assert held.status == pb.RUN_STATUS_NEEDS_APPROVAL
        stub = orch.stub
        # The service's user is erin, who holds an approver key; through the service she may not approve.
        through = await _refused(
            stub.ApproveRun(pb.ApproveRunRequest(run_id=held.id), metadata=bearer(service, "erin"))
        )
        assert through.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "erin may not approve runs through a service" in (through.details() or "")
        own = (await stub.ApproveRun(pb.ApproveRunRequest(run_id=held.id), metadata=bearer(approver))).run
        assert own.audit[-1].actor == "erin"
        reply = await stub.SubmitFeedback(
            pb.SubmitFeedbackRequest(run_id=held.id, rating=4), metadata=bearer(service, "frank@example.com")
        )
        assert reply.feedback.user == "frank@example.com"
        stored = (await stub.GetRun(pb.GetRunRequest(run_id=held.id), metadata=bearer(service))).run
        assert [f.user for f in stored.feedback] == ["frank@example.com"]
        # Members and approvers are who their key says; naming themselves is fine.
        other = await _refused(stub.ListRuns(pb.ListRunsRequest(), metadata=bearer(member, "erin")))
        assert other.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "only service keys may act for another user" in (other.details() or "")
        same = await stub.ListRuns(pb.ListRunsRequest(), metadata=bearer(member, "mia"))
        assert [r.id for r in same.runs] == [held.id]
        garbled = await _refused(stub.ListRuns(pb.ListRunsRequest(), metadata=bearer(service, "two words")))
        assert garbled.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_keys_file_holds_no_secret_and_a_broken_one_fails_start_up(
    stages: Stages, sqlite_url: str, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    key, record = add_key(keys_file, "acme", "dana", "approver")
    assert keys_file.stat().st_mode & 0o777 == 0o600
    body = keys_file.read_text()
    assert key not in body and key.split("_", 2)[2] not in body and record.sha256 in body
    assert load_keys(keys_file)[record.id].principal == "dana"
    base = {
        "SWARM_INSTANCES": instances_json([("x", "http://127.0.0.1:9/v1")]),
        "SWARM_DATABASE_URL": sqlite_url,
        "SWARM_PLAINTEXT": "true",
    }
    with pytest.raises(ConfigError, match="approver key for each") as approvers:
        OrchestratorConfig.from_env({**base, "SWARM_APPROVERS": "alice"})
    assert "swarm keys add" in str(approvers.value)

    broken = json.loads(body)
    broken["keys"].append({**broken["keys"][0], "id": "second000000", "role": "admin"})
    keys_file.write_text(json.dumps(broken))
    config = OrchestratorConfig.from_env({**base, "SWARM_API_KEYS_FILE": str(keys_file)})
    with pytest.raises(ConfigError) as raised:
        await create_server(config)
    message = str(raised.value)
    assert str(keys_file) in message and "record 1" in message and "second000000" in message and "admin" in message


async def test_an_older_database_gets_the_tenant_column_and_its_runs_go_to_default(database_url: str) -> None:
    store = await RunStore.open(database_url)
    old = pb.Run(id="oldrun000001", task="t", status=pb.RUN_STATUS_SUCCEEDED, swarm_size=1, quorum=1)
    old.created_at.GetCurrentTime()
    await store.create_run(old)
    await store.close()
    # The runs table as it was before tenants.
    await as_before(database_url, "DROP INDEX ix_runs_tenant_created", "ALTER TABLE runs DROP COLUMN tenant")
    store = await RunStore.open(database_url)
    try:
        assert (await store.get_run(old.id, "default")).id == old.id
        assert [r.id for r in (await store.list_runs(10, "", "default"))[0]] == [old.id]
        assert (await store.list_runs(10, "", "acme"))[0] == []
    finally:
        await store.close()


def test_local_stack_keys_are_made_once_and_kept_private(tmp_path: Path) -> None:
    from swarm_cli.localstack import stack_keys, worker_key

    keys_file, key = stack_keys(tmp_path, {"USER": "robin"})
    assert keys_file == tmp_path / "api-keys.json"
    assert (tmp_path / "cli-key").read_text().strip() == key
    assert os.stat(tmp_path / "cli-key").st_mode & 0o777 == 0o600
    assert stack_keys(tmp_path, {"USER": "robin"}) == (keys_file, key)  # the second start reuses it
    service = worker_key(tmp_path, keys_file)
    records = {r.principal: r for r in load_keys(keys_file).values()}
    assert (records["robin"].role, records["robin"].tenant) == ("approver", "local")
    assert (records["worker"].role, records["worker"].tenant) == ("service", "local")
    assert service not in keys_file.read_text() and key not in keys_file.read_text()
    revoke_key(keys_file, records["robin"].id)
    assert stack_keys(tmp_path, {"USER": "robin"})[1] != key  # a revoked local key is replaced
