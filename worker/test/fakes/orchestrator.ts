/**
 * Canned orchestrator behaviour for the tests: a three-instance run that streams, finishes and
 * is stored, plus the unary RPCs reading that store. Only the orchestrator's wire contract is
 * imitated (messages, statuses, metadata); its selection logic is not.
 */
import { type MessageInitShape, create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";

import { GateOutcome } from "../../src/gen/swarm/v1/common_pb.js";
import {
  CandidateOrigin,
  RefinementOutcome,
  type Run,
  RunSchema,
  RunStatus,
  type RunSwarmRequest,
  type RunSwarmResponse,
  RunSwarmResponseSchema,
} from "../../src/gen/swarm/v1/orchestrator_pb.js";
import type { OrchestratorImpl } from "./gateway.js";

export const INSTANCES = ["qwen-1", "qwen-2", "qwen-3"];

const FIB = "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n";
const FIB_RECURSIVE = "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n";

export function finishedRun(id: string, task: string, status = RunStatus.SUCCEEDED): Run {
  const held = status === RunStatus.NEEDS_APPROVAL;
  return create(RunSchema, {
    id,
    task,
    status,
    swarmSize: 3,
    quorum: 2,
    createdAt: timestampFromMs(1_700_000_000_000),
    finishedAt: timestampFromMs(1_700_000_005_000),
    candidates: INSTANCES.map((instance, i) => ({
      id: `c${i + 1}`,
      origin: CandidateOrigin.SWARM,
      instance,
      model: "qwen",
      text: `Here is fib:\n${i === 2 ? FIB_RECURSIVE : FIB}`,
      code: i === 2 ? FIB_RECURSIVE : FIB,
      rank: i + 1,
      latencyMs: 100 + i,
      clusterId: i === 2 ? 1 : 0,
      reputation: 1,
      scores: {
        overall: 0.9 - i / 10,
        correctness: 1,
        completeness: 1,
        style: 0.8,
        consensus: 0.7,
        testsPassed: 2,
        testsTotal: 2,
        generatedPassed: 5 - i,
        generatedTotal: 5,
        dualAgreement: 1 - i / 5,
        behaviourClusterSize: i === 2 ? 1 : 2,
      },
      usage: { promptTokens: 10n, completionTokens: 20n },
    })),
    final: { candidateId: "c1", code: FIB, text: `Here is fib:\n${FIB}`, overall: 0.9, origin: CandidateOrigin.SWARM },
    consensus: { reached: true, share: 2 / 3, clusterCount: 2, majorityClusterId: 0, confidence: 0.6, basis: "behaviour" },
    clusters: [
      { id: 0, candidateIds: ["c1", "c2"], representativeId: "c1", cohesion: 0.97 },
      { id: 1, candidateIds: ["c3"], representativeId: "c3", cohesion: 1 },
    ],
    analysis: "2 clusters: c1, c2 loop; c3 recurses (same outputs on the probes, slower on fib(30)).",
    refinement: { outcome: RefinementOutcome.SKIPPED, reason: "the best answer is settled", rounds: 0 },
    gate: {
      outcome: held ? GateOutcome.NEEDS_APPROVAL : GateOutcome.PASS,
      summary: held ? "needs approval: min_overall (overall 0.90 < 0.95)" : "every rule passed",
      rules: [
        { name: "visible_tests_pass", kind: "visible_tests_pass", passed: true, detail: "2/2 visible tests pass" },
        { name: "min_overall", kind: "min_overall", passed: !held, detail: held ? "overall 0.90 < 0.95" : "overall 0.90 >= 0.50" },
      ],
    },
  });
}

function event(runId: string, fields: MessageInitShape<typeof RunSwarmResponseSchema>): RunSwarmResponse {
  return create(RunSwarmResponseSchema, { runId, time: timestampFromMs(1_700_000_000_000), ...fields });
}

/** The events of one successful run, in the order the orchestrator streams them. */
export function runEvents(runId: string, request: RunSwarmRequest): RunSwarmResponse[] {
  const accepted = create(RunSchema, { id: runId, task: request.task, status: RunStatus.RUNNING, swarmSize: 3 });
  const events = [event(runId, { event: { case: "accepted", value: accepted } })];
  INSTANCES.forEach((instance, slot) => {
    events.push(event(runId, { event: { case: "instanceStarted", value: { slot, instance, attempt: 1 } } }));
  });
  INSTANCES.forEach((instance, slot) => {
    events.push(
      event(runId, {
        event: { case: "instanceOutput", value: { slot, instance, attempt: 1, delta: "def fib", length: 7 } },
      }),
    );
    events.push(
      event(runId, {
        event: {
          case: "instanceFinished",
          value: { slot, instance, candidateId: `c${slot + 1}`, latencyMs: 100 + slot },
        },
      }),
    );
  });
  events.push(event(runId, { event: { case: "done", value: finishedRun(runId, request.task) } }));
  return events;
}

/** What the fake saw of each call, for assertions. */
export interface Seen {
  requests: RunSwarmRequest[];
  users: (string | null)[];
}

export function orchestratorImpl(seen: Seen, store = new Map<string, Run>()): OrchestratorImpl {
  const user = (context: HandlerContext): string | null => {
    const value = context.requestHeader.get("x-swarm-user");
    seen.users.push(value);
    return value;
  };
  return {
    async *runSwarm(request, context) {
      user(context);
      seen.requests.push(request);
      if (request.instances.includes("missing")) {
        throw new ConnectError("unknown instance(s) ['missing']; configured instances: ['qwen-1']", Code.InvalidArgument);
      }
      const runId = `run${store.size + 1}`;
      for (const item of runEvents(runId, request)) {
        await Promise.resolve();
        yield item;
      }
      store.set(runId, finishedRun(runId, request.task));
    },
    getRun(request, context) {
      user(context);
      const run = store.get(request.runId);
      if (run === undefined) {
        throw new ConnectError(`no run ${request.runId}`, Code.NotFound);
      }
      return { run };
    },
    listRuns(request, context) {
      user(context);
      const runs = [...store.values()].map((run) => ({ id: run.id, task: run.task, status: run.status }));
      return { runs: runs.slice(0, request.pageSize || 20), nextPageToken: request.pageToken === "" ? "next" : "" };
    },
    listInstances(_request, context) {
      user(context);
      return {
        instances: INSTANCES.map((name, i) => ({
          instance: { name, baseUrl: `http://10.0.0.${i}:8081/v1`, model: "qwen", apiKeyEnv: "QWEN_KEY" },
          healthy: i !== 2,
          lastError: i === 2 ? "connect refused" : "",
        })),
      };
    },
    approveRun(request, context) {
      const who = user(context);
      if (who !== "alice") {
        throw new ConnectError(`${who ?? "nobody"} is not an approver (SWARM_APPROVERS)`, Code.PermissionDenied);
      }
      const run = store.get(request.runId);
      if (run?.status !== RunStatus.NEEDS_APPROVAL) {
        throw new ConnectError(`run ${request.runId} does not wait for approval`, Code.FailedPrecondition);
      }
      run.status = RunStatus.SUCCEEDED;
      return { run };
    },
    rejectRun(request, context) {
      user(context);
      const run = store.get(request.runId);
      if (run === undefined) {
        throw new ConnectError(`no run ${request.runId}`, Code.NotFound);
      }
      run.status = RunStatus.REJECTED;
      return { run };
    },
    listPendingApprovals(_request, context) {
      user(context);
      const runs = [...store.values()].filter((run) => run.status === RunStatus.NEEDS_APPROVAL);
      return { runs: runs.map((run) => ({ run: { id: run.id, task: run.task, status: run.status } })) };
    },
    submitFeedback(request, context) {
      const who = user(context) ?? "";
      if (!store.has(request.runId)) {
        throw new ConnectError(`no run ${request.runId}`, Code.NotFound);
      }
      return {
        feedback: { user: who, rating: request.rating, preferredCandidateId: request.preferredCandidateId, comment: request.comment },
      };
    },
  };
}
