import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Code, ConnectError } from "@connectrpc/connect";

import { apiErrorFromGateway, errorCodeFor, httpStatusFor } from "../src/worker/grpc_status.js";
import { ROUTES, handle } from "../src/worker/router.js";
import { ENV, ORIGIN, errorOf, harness } from "./harness.js";

describe("routing", () => {
  it("every route but the session's refuses an anonymous caller with 401, touching nothing", async () => {
    const h = harness();
    for (const route of ROUTES.filter((r) => r.authenticated)) {
      const path = `/${route.path.map((part) => (part.startsWith(":") ? "run1" : part)).join("/")}`;
      const init: RequestInit = { method: route.method };
      if (route.method === "POST") {
        init.headers = { "content-type": "application/json" };
        init.body = JSON.stringify({ task: "t", swarm: true });
      }
      const error = await errorOf(await h.fetch(path, init));
      assert.deepEqual([error.status, error.code], [401, "unauthenticated"], `${route.method} ${path}`);
    }
    assert.equal(h.gateway.calls.length, 0);
  });

  it("an unknown path is 404 and a wrong method 405 with Allow", async () => {
    const h = harness();
    const missing = await errorOf(await h.fetch("/api/nothing"));
    assert.deepEqual([missing.status, missing.code], [404, "not_found"]);
    const wrong = await h.fetch("/api/instances", { method: "DELETE" });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get("allow"), "GET");
    const both = await h.fetch("/api/runs", { method: "PUT" });
    assert.equal(both.headers.get("allow"), "POST, GET");
  });

  it("anything outside /api is the page's, served from the assets binding", async () => {
    const asked: string[] = [];
    const env = {
      ...ENV,
      ASSETS: {
        fetch: (request: Request) => {
          asked.push(new URL(request.url).pathname);
          return Promise.resolve(new Response("<!doctype html>"));
        },
      },
    };
    const deps = {
      env,
      gatewayFetch: () => Promise.reject(new Error("unused")),
      chatFetch: () => Promise.reject(new Error("unused")),
      now: () => 0,
      sleep: () => Promise.resolve(),
    };
    const page = await handle(new Request(`${ORIGIN}/`), deps);
    assert.equal(await page.text(), "<!doctype html>");
    await handle(new Request(`${ORIGIN}/app.js`), deps);
    await handle(new Request(`${ORIGIN}/apifoo`), deps);
    assert.deepEqual(asked, ["/", "/app.js", "/apifoo"]);
  });
});

describe("gRPC status -> HTTP", () => {
  it("maps the statuses the orchestrator uses", () => {
    const table: [Code, number, string][] = [
      [Code.InvalidArgument, 400, "invalid_argument"],
      [Code.NotFound, 404, "not_found"],
      [Code.PermissionDenied, 403, "permission_denied"],
      [Code.Unauthenticated, 401, "unauthenticated"],
      [Code.FailedPrecondition, 409, "failed_precondition"],
      [Code.ResourceExhausted, 429, "resource_exhausted"],
      [Code.Unavailable, 503, "unavailable"],
      [Code.DeadlineExceeded, 504, "deadline_exceeded"],
      [Code.Internal, 500, "internal"],
      [Code.Unimplemented, 501, "unimplemented"],
    ];
    for (const [code, status, name] of table) {
      assert.equal(httpStatusFor(code), status, Code[code]);
      assert.equal(errorCodeFor(code), name);
    }
  });

  it("keeps the message of a status the server sent", () => {
    const sent = new ConnectError("no quorum: 1 of 3 answered", Code.Unavailable, { "grpc-status": "14" });
    const error = apiErrorFromGateway(sent);
    assert.deepEqual([error.status, error.code, error.message], [503, "unavailable", "no quorum: 1 of 3 answered"]);
  });

  it("gives transport failures a fixed message", () => {
    assert.equal(apiErrorFromGateway(new TypeError("fetch failed: 10.0.0.1")).code, "gateway_unavailable");
    assert.equal(apiErrorFromGateway(new ConnectError("x", Code.Canceled)).status, 499);
    assert.equal(apiErrorFromGateway(new ConnectError("x", Code.DeadlineExceeded)).status, 504);
  });
});
