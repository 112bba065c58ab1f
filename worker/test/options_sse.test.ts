import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { checkSwarmOptions } from "../src/shared/options.js";
import { SseParser, formatEvent } from "../src/shared/sse.js";

describe("swarm options", () => {
  it("defaults: automatic size, every instance, refinement on, the server's timeout", () => {
    assert.deepEqual(checkSwarmOptions({ task: "t" }), {
      ok: true,
      value: { task: "t", size: "auto", instances: [], refine: true, timeoutSeconds: null, tests: [] },
    });
  });

  it("accepts the bounds and refuses just outside them", () => {
    for (const size of [3, 7, "auto"]) {
      assert.equal(checkSwarmOptions({ task: "t", size }).ok, true, String(size));
    }
    for (const size of [2, 8, 3.5, null, "3"]) {
      assert.equal(checkSwarmOptions({ task: "t", size }).ok, false, String(size));
    }
    for (const timeoutSeconds of [5, 600, 30.5]) {
      assert.equal(checkSwarmOptions({ task: "t", timeoutSeconds }).ok, true);
    }
    for (const timeoutSeconds of [4.9, 601, Number.NaN, "30"]) {
      assert.equal(checkSwarmOptions({ task: "t", timeoutSeconds }).ok, false);
    }
  });

  it("reports every problem, each with its field", () => {
    const checked = checkSwarmOptions({ task: "", size: 1, tests: Array(21).fill("assert 1") });
    assert.ok(!checked.ok);
    assert.deepEqual(
      checked.problems.map((p) => p.field),
      ["task", "size", "tests"],
    );
  });
});

describe("SSE", () => {
  it("parses events cut anywhere, with CRLF, comments and multi-line data", () => {
    const text = ": hi\r\nevent: progress\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: plain\n\n";
    for (let size = 1; size <= text.length; size++) {
      const parser = new SseParser();
      const out = [];
      for (let i = 0; i < text.length; i += size) {
        out.push(...parser.push(text.slice(i, i + size)));
      }
      out.push(...parser.end());
      assert.deepEqual(out, [
        { event: "progress", data: '{"a":\n1}' },
        { event: "message", data: "plain" },
      ], `chunk size ${size}`);
    }
  });

  it("formatEvent round-trips through the parser, newlines included", () => {
    const parser = new SseParser();
    assert.deepEqual(parser.push(formatEvent("delta", "a\nb")), [{ event: "delta", data: "a\nb" }]);
  });

  it("an event without its blank line is delivered at the end", () => {
    const parser = new SseParser();
    assert.deepEqual(parser.push("data: x"), []);
    assert.deepEqual(parser.end(), [{ event: "message", data: "x" }]);
  });
});
