import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { parseChunk } from "../src/worker/chat.js";
import { bearer, errorOf, events, harness, postJson } from "./harness.js";

/** An OpenAI-style SSE body, cut into chunks at awkward places. */
function openAiStream(parts: string[], usage = true, done = true): Response {
  const lines = parts.map(
    (content, i) =>
      `data: ${JSON.stringify({ model: "qwen-served", choices: [{ index: 0, delta: { content }, finish_reason: i === parts.length - 1 ? "stop" : null }] })}\n\n`,
  );
  if (usage) {
    lines.push(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 12, completion_tokens: 34 } })}\n\n`);
  }
  if (done) {
    lines.push("data: [DONE]\n\n");
  }
  const text = lines.join("");
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < text.length; i += 7) {
        controller.enqueue(encoder.encode(text.slice(i, i + 7)));
      }
      controller.close();
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}

describe("normal mode", () => {
  it("streams one instance's answer as delta events, then done with usage and latency", async () => {
    const h = harness({ CHAT_API_KEY: "sk-chat" });
    const seen: { sent?: { url: string; body: Record<string, unknown>; auth: string | null } } = {};
    h.chatFetch = async (input, init) => {
      const request = new Request(input, init);
      seen.sent = { url: request.url, body: (await request.json()) as Record<string, unknown>, auth: request.headers.get("authorization") };
      h.clock += 250;
      return openAiStream(["def fib(n):", "\n    return n"]);
    };
    const response = await h.fetch("/api/chat", postJson({ task: "Write fib" }));
    assert.equal(response.status, 200);
    const received = await events(response);
    assert.deepEqual(received.slice(0, 2), [
      { event: "delta", data: { delta: "def fib(n):" } },
      { event: "delta", data: { delta: "\n    return n" } },
    ]);
    assert.deepEqual(received[2], {
      event: "done",
      data: {
        text: "def fib(n):\n    return n",
        latencyMs: 250,
        model: "qwen-served",
        finishReason: "stop",
        usage: { promptTokens: 12, completionTokens: 34 },
      },
    });
    assert.ok(seen.sent !== undefined);
    const { url, body, auth } = seen.sent;
    assert.equal(url, "http://chat.test/v1/chat/completions");
    assert.equal(auth, "Bearer sk-chat");
    assert.equal(body["model"], "qwen-test");
    assert.equal(body["stream"], true);
    assert.deepEqual(body["messages"], [{ role: "user", content: "Write fib" }]);
    assert.deepEqual(h.gateway.calls, [], "normal mode never calls the orchestrator");
  });

  it("an upstream refusal keeps its status class and reason, not the instance's address", async () => {
    const h = harness();
    h.chatFetch = () => Promise.resolve(Response.json({ error: { message: "model overloaded" } }, { status: 500 }));
    const failed = await errorOf(await h.fetch("/api/chat", postJson({ task: "t" })));
    assert.deepEqual([failed.status, failed.code], [502, "chat_failed"]);
    assert.equal(failed.message, "the chat instance answered HTTP 500: model overloaded");
    h.chatFetch = () => Promise.resolve(new Response("slow down", { status: 429, statusText: "Too Many Requests" }));
    assert.equal((await errorOf(await h.fetch("/api/chat", postJson({ task: "t" })))).status, 429);
    h.chatFetch = () => Promise.reject(new TypeError("connect ECONNREFUSED chat.test"));
    const down = await errorOf(await h.fetch("/api/chat", postJson({ task: "t" })));
    assert.deepEqual([down.status, down.code], [503, "chat_unavailable"]);
    assert.doesNotMatch(down.message, /chat\.test/);
  });

  it("a stream cut before the answer ends becomes an error event", async () => {
    const h = harness();
    // No finish_reason and no [DONE]: the instance stopped mid-answer.
    h.chatFetch = () =>
      Promise.resolve(new Response(`data: ${JSON.stringify({ choices: [{ delta: { content: "par" } }] })}\n\n`));
    const received = await events(await h.fetch("/api/chat", postJson({ task: "t" })));
    assert.deepEqual(received.map((e) => e.event), ["delta", "error"]);
    assert.deepEqual(received[1]?.data, {
      error: { code: "chat_failed", message: "the chat instance's stream ended before the answer did" },
    });
  });

  it("refuses a task that is missing or too long", async () => {
    const h = harness();
    assert.match((await errorOf(await h.fetch("/api/chat", postJson({})))).message, /task is missing/);
    const long = await errorOf(await h.fetch("/api/chat", postJson({ task: "x".repeat(20_001) })));
    assert.match(long.message, /task is 20001 characters; shorten it to at most 20000/);
  });

  it("needs a caller", async () => {
    const h = harness();
    const response = await h.fetch("/api/chat", postJson({ task: "t" }, {}));
    assert.equal(response.status, 401);
    assert.equal((await h.fetch("/api/chat", postJson({ task: "t" }, bearer("wrong")))).status, 401);
  });

  it("parseChunk reads content, finish reason and usage, and refuses non-JSON", () => {
    assert.deepEqual(parseChunk('{"choices":[{"delta":{"content":"x"},"finish_reason":null}]}'), {
      delta: "x",
      finishReason: null,
      model: null,
      usage: null,
    });
    assert.equal(parseChunk("not json"), null);
    assert.equal(parseChunk("[1]"), null);
  });
});
