/**
 * The Worker under `wrangler dev` (workerd from npm), started by scripts/dev.sh exactly as
 * `swarm up` starts it, against a fake gRPC-web gateway and a fake chat instance on real ports.
 * What only the real runtime can tell: workerd accepts the transport's fetch, streams responses
 * as they are produced, serves the page with its headers.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { readEvents } from "../src/shared/sse.js";
import { fakeGateway } from "./fakes/gateway.js";
import { type Seen, orchestratorImpl } from "./fakes/orchestrator.js";
import { type Served, serve } from "./fakes/serve.js";

const WORKER_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const STARTUP_MS = 90_000;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => {
        resolve(port);
      });
    });
  });
}

/** An OpenAI-compatible chat endpoint that streams its answer in three chunks, 150 ms apart. */
function chatInstance(request: Request): Promise<Response> {
  if (!new URL(request.url).pathname.endsWith("/chat/completions")) {
    return Promise.resolve(new Response("not found", { status: 404 }));
  }
  const encoder = new TextEncoder();
  const parts = ["def fib(n):", "\n    return n", ""];
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      for (const [i, content] of parts.entries()) {
        const finish = i === parts.length - 1 ? "stop" : null;
        const chunk = { model: "fake", choices: [{ index: 0, delta: { content }, finish_reason: finish }] };
        controller.enqueue(encoder.encode(`data: ${JSON.stringify(chunk)}\n\n`));
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
      controller.enqueue(encoder.encode("data: [DONE]\n\n"));
      controller.close();
    },
  });
  return Promise.resolve(new Response(body, { headers: { "content-type": "text/event-stream" } }));
}

async function waitUntilServing(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + STARTUP_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`dev.sh exited with ${child.exitCode}:\n${log()}`);
    }
    try {
      if ((await fetch(url)).ok) {
        return;
      }
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`wrangler dev did not serve ${url} within ${STARTUP_MS} ms:\n${log()}`);
}

describe("the Worker under wrangler dev", () => {
  const seen: Seen = { requests: [], users: [] };
  let gateway: Served;
  let chat: Served;
  let child: ChildProcess;
  let base = "";
  let output = "";

  before(async () => {
    const fake = fakeGateway(orchestratorImpl(seen));
    gateway = await serve((request) => fake.fetch(request));
    chat = await serve(chatInstance);
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    child = spawn(`${WORKER_ROOT}scripts/dev.sh`, [String(port)], {
      cwd: WORKER_ROOT,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        PATH: process.env["PATH"] ?? "/usr/bin:/bin",
        HOME: process.env["HOME"] ?? "/tmp",
        GATEWAY_URL: gateway.url,
        CHAT_BASE_URL: `${chat.url}/v1`,
        CHAT_MODEL: "fake",
        SWARM_API_KEYS: "alice:alice-key-123,bob:bob-key-456",
        SESSION_SECRET: "a-session-secret-of-some-length",
      },
    });
    child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    await waitUntilServing(`${base}/`, child, () => output);
  });

  after(async () => {
    if (child.pid !== undefined && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      process.kill(-child.pid, "SIGTERM");
      const timer = setTimeout(() => {
        if (child.pid !== undefined) {
          process.kill(-child.pid, "SIGKILL");
        }
      }, 10_000);
      await exited;
      clearTimeout(timer);
    }
    await Promise.all([gateway.close(), chat.close()]);
  });

  it("serves the page, its script and its security headers", async () => {
    const page = await fetch(`${base}/`);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.match(html, /data-testid="swarm-toggle"/);
    assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'.*connect-src 'self'/);
    assert.equal(page.headers.get("x-content-type-options"), "nosniff");
    const script = await fetch(`${base}/app.js`);
    assert.equal(script.status, 200);
    assert.match(script.headers.get("content-type") ?? "", /javascript/);
  });

  it("refuses an anonymous API call", async () => {
    const response = await fetch(`${base}/api/runs`);
    assert.equal(response.status, 401);
    assert.equal(((await response.json()) as { error: { code: string } }).error.code, "unauthenticated");
  });

  it("normal mode streams the instance's chunks as they come", async () => {
    const started = Date.now();
    const response = await fetch(`${base}/api/chat`, {
      method: "POST",
      headers: { authorization: "Bearer alice-key-123", "content-type": "application/json" },
      body: JSON.stringify({ task: "Write fib" }),
    });
    assert.equal(response.status, 200);
    assert.ok(response.body !== null);
    const arrivals: [string, number][] = [];
    for await (const event of readEvents(response.body)) {
      arrivals.push([event.event, Date.now() - started]);
    }
    assert.deepEqual(arrivals.map(([event]) => event), ["delta", "delta", "done"]);
    const [first, second] = arrivals;
    assert.ok(first !== undefined && second !== undefined);
    assert.ok(second[1] - first[1] >= 100, `the second delta came ${second[1] - first[1]} ms after the first: buffered?`);
  });

  it("swarm mode goes through the gateway with gRPC-web and relays every event", async () => {
    const opened = await fetch(`${base}/api/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key: "bob-key-456" }),
    });
    const cookie = (opened.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    const response = await fetch(`${base}/api/chat`, {
      method: "POST",
      headers: { cookie, "content-type": "application/json", "x-swarm-mode": "on" },
      body: JSON.stringify({ task: "Write fib", size: 3 }),
    });
    assert.equal(response.status, 200);
    assert.ok(response.body !== null);
    const events = [];
    for await (const event of readEvents(response.body)) {
      events.push(JSON.parse(event.data) as Record<string, unknown>);
    }
    assert.equal(events.length, 11);
    assert.ok("accepted" in (events[0] ?? {}));
    assert.ok("done" in (events.at(-1) ?? {}));
    assert.equal(seen.users.at(-1), "bob");
    assert.equal(seen.requests.at(-1)?.streamOutput, true);
    const stored = await fetch(`${base}/api/runs/run1`, { headers: { cookie } });
    assert.equal(((await stored.json()) as { run: { status: string } }).run.status, "RUN_STATUS_SUCCEEDED");
  });
});
