import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { create } from "@bufbuild/protobuf";

import { RunSchema, RunStatus } from "../src/gen/swarm/v1/orchestrator_pb.js";
import type { Fetch } from "../src/worker/gateway.js";
import { handle } from "../src/worker/router.js";
import { fakeGateway } from "./fakes/gateway.js";
import { ENV, ORIGIN, bearer, errorOf, events, harness, postJson } from "./harness.js";

type Json = Record<string, unknown>;

describe("swarm mode", () => {
  it("relays every RunSwarm event as proto JSON, in order, as the caller", async () => {
    const h = harness();
    const response = await h.fetch("/api/chat", postJson({ task: "Write fib(n)", swarm: true }));
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
    const received = await events(response);
    assert.ok(received.every((e) => e.event === "progress"));
    const kinds = received.map((e) => Object.keys(e.data as Json).find((k) => !["runId", "time"].includes(k)));
    assert.deepEqual(kinds, [
      "accepted",
      "instanceStarted",
      "instanceStarted",
      "instanceStarted",
      "instanceOutput",
      "instanceFinished",
      "instanceOutput",
      "instanceFinished",
      "instanceOutput",
      "instanceFinished",
      "done",
    ]);
    const done = (received.at(-1)?.data as Json)["done"] as Json;
    assert.equal(done["status"], "RUN_STATUS_SUCCEEDED");
    assert.equal((done["candidates"] as Json[]).length, 3);
    assert.deepEqual(h.seen.users, ["alice"]);
    const [request] = h.seen.requests;
    assert.equal(request?.streamOutput, true);
    assert.equal(request.swarmSize, 0);
    assert.equal(request.skipRefine, false);
  });

  it("turns on with X-Swarm-Mode: on, and passes the options", async () => {
    const h = harness();
    const body = { task: "t", size: 5, instances: ["qwen-1", "qwen-2", "qwen-1"], refine: false, timeoutSeconds: 30, tests: ["assert f(1) == 1"] };
    const response = await h.fetch("/api/chat", postJson(body, { ...bearer(), "x-swarm-mode": "on" }));
    assert.equal(response.status, 200);
    await events(response);
    const [request] = h.seen.requests;
    assert.equal(request?.swarmSize, 5);
    assert.deepEqual(request.instances, ["qwen-1", "qwen-2"]);
    assert.equal(request.skipRefine, true);
    assert.equal(request.instanceTimeoutSeconds, 30);
    assert.deepEqual(request.tests, ["assert f(1) == 1"]);
  });

  it("POST /api/runs is swarm mode without asking", async () => {
    const h = harness();
    const received = await events(await h.fetch("/api/runs", postJson({ task: "t" })));
    assert.equal(received.length, 11);
    const refused = await errorOf(await h.fetch("/api/runs", postJson({ task: "t", swarm: false })));
    assert.equal(refused.status, 400);
  });

  it("refuses bad options with 400 before anything reaches the orchestrator", async () => {
    const h = harness();
    const cases: [Json, RegExp][] = [
      [{ task: "t", swarm: true, size: 9 }, /size is 9; use "auto" or a whole number from 3 to 7/],
      [{ task: "t", swarm: true, size: 2 }, /size is 2/],
      [{ task: "t", swarm: true, size: "big" }, /size is "big"/],
      [{ task: "t", swarm: true, timeoutSeconds: 0 }, /timeoutSeconds is 0; use seconds from 5 to 600/],
      [{ task: "t", swarm: true, instances: ["bad name"] }, /are not instance names/],
      [{ task: "t", swarm: true, instances: "qwen-1" }, /instances must be a list/],
      [{ task: "t", swarm: true, refine: "no" }, /refine is "no"/],
      [{ task: "t", swarm: true, tests: [" "] }, /tests \[0\] are empty/],
      [{ task: " ", swarm: true }, /task is empty/],
      [{ swarm: true }, /task is missing/],
      [{ task: "t", swarm: true, sise: 3 }, /unknown field\(s\) "sise"/],
      [{ task: "t", swarm: "yes" }, /swarm is "yes"/],
      [{ task: "t", size: 5 }, /size apply to swarm mode only/],
    ];
    for (const [body, message] of cases) {
      const error = await errorOf(await h.fetch("/api/chat", postJson(body)));
      assert.deepEqual([error.status, error.code], [400, "invalid_argument"], JSON.stringify(body));
      assert.match(error.message, message);
    }
    const both = await errorOf(await h.fetch("/api/chat", postJson({ task: "t", swarm: true, size: 1, refine: 3 })));
    assert.match(both.message, /size is 1.*; refine is 3/);
    const header = await h.fetch("/api/chat", postJson({ task: "t", swarm: false }, { ...bearer(), "x-swarm-mode": "on" }));
    assert.equal(header.status, 400);
    const badHeader = await h.fetch("/api/chat", postJson({ task: "t" }, { ...bearer(), "x-swarm-mode": "maybe" }));
    assert.equal(badHeader.status, 400);
    assert.equal(h.gateway.calls.length, 0);
  });

  it("refuses bodies that are not JSON objects", async () => {
    const h = harness();
    const notJson = await h.fetch("/api/chat", { method: "POST", headers: { ...bearer(), "content-type": "application/json" }, body: "{" });
    assert.equal((await errorOf(notJson)).code, "invalid_json");
    const array = await h.fetch("/api/chat", postJson([1]));
    assert.equal((await errorOf(array)).code, "invalid_json");
    const text = await h.fetch("/api/chat", { method: "POST", headers: bearer(), body: "task" });
    assert.equal(text.status, 415);
  });

  it("maps the orchestrator's refusal to its HTTP status with its message", async () => {
    const h = harness();
    const error = await errorOf(await h.fetch("/api/runs", postJson({ task: "t", instances: ["missing"] })));
    assert.deepEqual([error.status, error.code], [400, "invalid_argument"]);
    assert.match(error.message, /^unknown instance\(s\) \['missing'\]/);
  });

  it("sends the gateway gRPC-web, with the caller's identity and no browser-only fetch fields", async () => {
    const h = harness();
    await events(await h.fetch("/api/runs", postJson({ task: "t" }, bearer("bob-key-456"))));
    const [call] = h.gateway.calls;
    assert.equal(call?.url, "http://gateway.test:8080/swarm.v1.OrchestratorService/RunSwarm");
    assert.equal(call.headers.get("content-type"), "application/grpc-web+proto");
    assert.equal(call.headers.get("x-swarm-user"), "bob");
    assert.equal(call.headers.get("authorization"), null);
    // The Worker starts the run's trace: a W3C traceparent, a new one per run.
    assert.match(call.headers.get("traceparent") ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    await events(await h.fetch("/api/runs", postJson({ task: "t" }, bearer("bob-key-456"))));
    assert.notEqual(h.gateway.calls[1]?.headers.get("traceparent"), call.headers.get("traceparent"));
    assert.equal(call.init?.redirect, "manual");
    assert.equal(call.init.mode, undefined);
    assert.equal(call.init.credentials, undefined);
  });

  it("sends GATEWAY_TOKEN to the gateway when set, never the caller's key", async () => {
    const h = harness({ GATEWAY_TOKEN: "gw-token" });
    await h.fetch("/api/instances", { headers: bearer() });
    assert.equal(h.gateway.calls[0]?.headers.get("authorization"), "Bearer gw-token");
  });

  it("an unreachable gateway is a 503 that does not name its address", async () => {
    const down = harnessWithGateway(() => Promise.reject(new TypeError("connect ECONNREFUSED 10.1.2.3:8080")));
    const error = await errorOf(await down.fetch("/api/runs", postJson({ task: "t" })));
    assert.deepEqual([error.status, error.code], [503, "gateway_unavailable"]);
    assert.doesNotMatch(error.message, /10\.1\.2\.3|gateway\.test/);
    const html = harnessWithGateway(() => Promise.resolve(new Response("<html>", { status: 404 })));
    const bad = await errorOf(await html.fetch("/api/instances", { headers: bearer() }));
    assert.deepEqual([bad.status, bad.code], [502, "bad_gateway"]);
  });
});

function harnessWithGateway(gatewayFetch: Fetch): { fetch(path: string, init?: RequestInit): Promise<Response> } {
  return {
    fetch: (path, init) =>
      handle(new Request(new URL(path, ORIGIN), init), {
        env: ENV,
        gatewayFetch,
        chatFetch: () => Promise.reject(new Error("unused")),
        now: () => 0,
        sleep: () => Promise.resolve(),
      }),
  };
}

describe("swarm endpoints", () => {
  async function withRun(): Promise<ReturnType<typeof harness>> {
    const h = harness();
    await events(await h.fetch("/api/runs", postJson({ task: "Write fib" })));
    return h;
  }

  it("GET /api/runs/{id} is GetRunResponse as proto JSON; an unknown id is 404", async () => {
    const h = await withRun();
    const body = (await (await h.fetch("/api/runs/run1", { headers: bearer() })).json()) as { run: Json };
    assert.equal(body.run["id"], "run1");
    assert.equal(body.run["status"], "RUN_STATUS_SUCCEEDED");
    assert.equal(body.run["error"], "", "implicit fields are present");
    const missing = await errorOf(await h.fetch("/api/runs/run9", { headers: bearer() }));
    assert.deepEqual([missing.status, missing.code, missing.message], [404, "not_found", "no run run9"]);
    const bad = await errorOf(await h.fetch("/api/runs/a%20b", { headers: bearer() }));
    assert.equal(bad.status, 400);
  });

  it("GET /api/runs pages", async () => {
    const h = await withRun();
    const body = (await (await h.fetch("/api/runs?pageSize=5", { headers: bearer() })).json()) as Json;
    assert.equal((body["runs"] as Json[]).length, 1);
    assert.equal(body["nextPageToken"], "next");
    for (const query of ["pageSize=0", "pageSize=101", "pageSize=x", "page=2"]) {
      assert.equal((await h.fetch(`/api/runs?${query}`, { headers: bearer() })).status, 400, query);
    }
  });

  it("GET /api/instances hides where the instances live", async () => {
    const h = harness();
    const body = (await (await h.fetch("/api/instances", { headers: bearer() })).json()) as { instances: Json[] };
    assert.equal(body.instances.length, 3);
    for (const status of body.instances) {
      const instance = status["instance"] as Json;
      assert.equal(instance["baseUrl"], "");
      assert.equal(instance["apiKeyEnv"], "");
      assert.match(instance["name"] as string, /^qwen-\d$/);
    }
    assert.equal(body.instances[2]?.["healthy"], false);
  });

  it("approve and reject: the orchestrator decides who may (403, 409)", async () => {
    const h = await withRun();
    const notApprover = await errorOf(await h.fetch("/api/runs/run1/approve", postJson({ comment: "ok" }, bearer("bob-key-456"))));
    assert.deepEqual([notApprover.status, notApprover.code], [403, "permission_denied"]);
    const notHeld = await errorOf(await h.fetch("/api/runs/run1/approve", postJson({ comment: "ok" })));
    assert.deepEqual([notHeld.status, notHeld.code], [409, "failed_precondition"]);
    const rejected = await h.fetch("/api/runs/run1/reject", postJson({ comment: "no input checks" }));
    assert.equal(((await rejected.json()) as { run: Json }).run["status"], "RUN_STATUS_REJECTED");
    const long = await h.fetch("/api/runs/run1/reject", postJson({ comment: "x".repeat(2001) }));
    assert.equal(long.status, 400);
    const approvals = (await (await h.fetch("/api/approvals", { headers: bearer() })).json()) as Json;
    assert.deepEqual(approvals["runs"], []);
  });

  it("feedback: rating 1..5, preferred candidate, comment, as the caller", async () => {
    const h = await withRun();
    const response = await h.fetch("/api/runs/run1/feedback", postJson({ rating: 4, preferredCandidateId: "c2", comment: "good" }, bearer("bob-key-456")));
    const body = (await response.json()) as { feedback: Json };
    assert.deepEqual(
      [body.feedback["user"], body.feedback["rating"], body.feedback["preferredCandidateId"]],
      ["bob", 4, "c2"],
    );
    for (const rating of [0, 6, 2.5, "4", undefined]) {
      const error = await errorOf(await h.fetch("/api/runs/run1/feedback", postJson({ rating })));
      assert.equal(error.status, 400, String(rating));
      assert.match(error.message, /rate the answer 1 \(useless\) to 5/);
    }
  });

  it("GET /api/runs/{id}/events sends the run until it is no longer running", async () => {
    const h = await withRun();
    const received = await events(await h.fetch("/api/runs/run1/events", { headers: bearer() }));
    assert.deepEqual(received.map((e) => e.event), ["run"]);
    assert.equal((received[0]?.data as Json)["status"], "RUN_STATUS_SUCCEEDED");
    const missing = await h.fetch("/api/runs/nope/events", { headers: bearer() });
    assert.equal(missing.status, 404);
  });

  it("GET /api/runs/{id}/events follows a running run through each change", async () => {
    const statuses = [RunStatus.RUNNING, RunStatus.RUNNING, RunStatus.RUNNING, RunStatus.NEEDS_APPROVAL];
    let polls = 0;
    const gateway = fakeGateway({
      getRun(request) {
        const status = statuses[Math.min(polls, statuses.length - 1)] ?? RunStatus.RUNNING;
        polls += 1;
        return { run: create(RunSchema, { id: request.runId, status }) };
      },
    });
    const received = await events(await harnessWithGateway(gateway.fetch).fetch("/api/runs/r1/events", { headers: bearer() }));
    assert.equal(polls, 4);
    assert.deepEqual(
      received.map((e) => (e.data as Json)["status"]),
      ["RUN_STATUS_RUNNING", "RUN_STATUS_NEEDS_APPROVAL"],
      "an unchanged run is not sent again",
    );
  });
});

describe("deadlines", () => {
  it("unary calls carry a grpc-timeout; the RunSwarm stream does not", async () => {
    const h = harness();
    await events(await h.fetch("/api/runs", postJson({ task: "t" })));
    await h.fetch("/api/runs/run1", { headers: bearer() });
    const [stream, unary] = h.gateway.calls;
    assert.equal(stream?.headers.get("grpc-timeout"), null);
    assert.match(unary?.headers.get("grpc-timeout") ?? "", /^\d+m$/);
  });
});
