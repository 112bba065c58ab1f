import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { toJson } from "@bufbuild/protobuf";

import {
  RunSchema,
  type RunSwarmResponseJson,
  RunSwarmResponseSchema,
} from "../src/gen/swarm/v1/orchestrator_pb.js";
import { lineDiff } from "../src/page/diff.js";
import { candidateChoices, diffPair, duration, enumLabel, paneStatusLabel, parseTests, rankingRows, score } from "../src/page/format.js";
import { EMPTY_CHAT, EMPTY_RUN, type RunView, reduce, reduceChat, viewOfRun } from "../src/page/run_state.js";
import { queuedText, runStatusText } from "../src/page/view_run.js";
import { finishedRun, runEvents } from "./fakes/orchestrator.js";

/** The events exactly as the Worker sends them: proto JSON of each RunSwarmResponse. */
function wire(events: ReturnType<typeof runEvents>): RunSwarmResponseJson[] {
  return events.map((event) => toJson(RunSwarmResponseSchema, event, { alwaysEmitImplicit: true }) as RunSwarmResponseJson);
}

function fold(events: RunSwarmResponseJson[], from: RunView = EMPTY_RUN): RunView {
  return events.reduce(reduce, from);
}

const request = { task: "Write fib" } as Parameters<typeof runEvents>[1];

describe("run view reducer", () => {
  it("accepted opens one waiting pane per slot", () => {
    const [accepted] = wire(runEvents("r1", request));
    const view = fold(accepted === undefined ? [] : [accepted]);
    assert.equal(view.runId, "r1");
    assert.equal(view.status, "RUN_STATUS_RUNNING");
    assert.deepEqual(view.panes.map((p) => p.status), ["waiting", "waiting", "waiting"]);
  });

  it("an adaptive run opens its first round's panes, and each grown round opens its own", () => {
    const first = fold([{ runId: "r2", accepted: { swarmSize: 7, adaptiveStart: 3, status: "RUN_STATUS_RUNNING" } }]);
    assert.equal(first.panes.length, 3);
    const grown = reduce(first, { grown: { round: 2, added: 2, size: 5, reason: "no tested consensus (largest group 1 of 3)" } });
    assert.deepEqual(grown.panes.map((p) => [p.slot, p.status]), [[0, "waiting"], [1, "waiting"], [2, "waiting"], [3, "waiting"], [4, "waiting"]]);
  });

  it("a pane goes waiting -> generating with its text -> answered with latency and tokens", () => {
    const slot0: RunSwarmResponseJson[] = [
      { runId: "r1", accepted: { swarmSize: 2, status: "RUN_STATUS_RUNNING" } },
      { instanceStarted: { slot: 0, instance: "qwen-1", attempt: 1 } },
      { instanceOutput: { slot: 0, instance: "qwen-1", attempt: 1, delta: "def f", length: 5 } },
      { instanceOutput: { slot: 0, instance: "qwen-1", attempt: 1, delta: "(): pass", length: 13 } },
    ];
    const generating = fold(slot0);
    assert.deepEqual(
      generating.panes.map((p) => [p.status, p.instance, p.text]),
      [["generating", "qwen-1", "def f(): pass"], ["waiting", "", ""]],
    );
    assert.equal(generating.panes[0]?.gap, false);
    const answered = reduce(generating, {
      instanceFinished: { slot: 0, instance: "qwen-1", candidateId: "c1", latencyMs: 812.5, usage: { promptTokens: "10", completionTokens: "7" } },
    });
    const pane = answered.panes[0];
    assert.deepEqual(
      [pane?.status, pane?.latencyMs, pane?.promptTokens, pane?.completionTokens, pane?.candidateId],
      ["answered", 812.5, 10, 7, "c1"],
    );
    assert.equal(pane === undefined ? "" : paneStatusLabel(pane), "answered");
  });

  it("a failed attempt shows its reason; the retry starts afresh and says why", () => {
    const view = fold([
      { accepted: { swarmSize: 1 } },
      { instanceStarted: { slot: 0, instance: "qwen-1", attempt: 1 } },
      { instanceOutput: { slot: 0, instance: "qwen-1", attempt: 1, delta: "par", length: 3 } },
      { instanceFailed: { slot: 0, instance: "qwen-1", attempt: 1, kind: "FAILURE_KIND_TIMEOUT", reason: "no answer in 30 s", willRetry: true } },
    ]);
    const first = view.panes[0];
    assert.ok(first !== undefined);
    assert.equal(paneStatusLabel(first), "failed, retrying elsewhere");
    assert.deepEqual(first.failure, { kind: "timeout", reason: "no answer in 30 s", willRetry: true });
    const retried = fold(
      [
        { instanceStarted: { slot: 0, instance: "qwen-2", attempt: 2 } },
        { instanceOutput: { slot: 0, instance: "qwen-1", attempt: 1, delta: "late", length: 7 } },
        { instanceOutput: { slot: 0, instance: "qwen-2", attempt: 2, delta: "def", length: 3 } },
      ],
      view,
    );
    const pane = retried.panes[0];
    assert.deepEqual([pane?.status, pane?.instance, pane?.text, pane?.failure, pane?.retriedAfter], ["generating", "qwen-2", "def", null, "no answer in 30 s"]);
  });

  it("notices text lost between batches", () => {
    const view = fold([
      { accepted: { swarmSize: 1 } },
      { instanceOutput: { slot: 0, instance: "q", attempt: 1, delta: "abc", length: 3 } },
      { instanceOutput: { slot: 0, instance: "q", attempt: 1, delta: "xyz", length: 9 } },
    ]);
    assert.equal(view.panes[0]?.gap, true);
  });

  it("the whole stream of a run ends with the stored run and every pane answered", () => {
    const view = fold(wire(runEvents("r1", request)));
    assert.equal(view.status, "RUN_STATUS_SUCCEEDED");
    assert.equal(view.run?.final?.candidateId, "c1");
    assert.deepEqual(view.panes.map((p) => [p.status, p.candidateId]), [["answered", "c1"], ["answered", "c2"], ["answered", "c3"]]);
  });

  it("a queued run shows its place until its first instance starts", () => {
    const queued = fold([
      { accepted: { swarmSize: 2 } },
      { queued: { position: 3, depth: 5, waitedMs: 1500, timeoutMs: 600000 } },
      { queued: { position: 2, depth: 4, waitedMs: 12400, timeoutMs: 600000 } },
    ]);
    assert.equal(queuedText(queued), "queued: 2 of 4 waiting for capacity (12 s)");
    assert.equal(runStatusText(queued), "queued: 2 of 4 waiting for capacity (12 s)");
    const started = reduce(queued, { instanceStarted: { slot: 0, instance: "q", attempt: 1 } });
    assert.equal(started.queued, null);
    assert.equal(runStatusText(started), "running: 0 of 2 answered");
  });

  it("stage events are kept for the progress list", () => {
    const view = fold([
      { collated: { clusterCount: 2, consensus: { reached: false } } },
      { assessed: { bestCandidateId: "c2", bestOverall: 0.7 } },
      { refined: { outcome: "REFINEMENT_OUTCOME_KEPT" } },
      { gated: { outcome: "GATE_OUTCOME_NEEDS_APPROVAL" } },
    ]);
    assert.equal(view.collated?.clusterCount, 2);
    assert.equal(view.assessed?.bestCandidateId, "c2");
    assert.equal(view.refined?.outcome, "REFINEMENT_OUTCOME_KEPT");
    assert.equal(view.gated?.outcome, "GATE_OUTCOME_NEEDS_APPROVAL");
  });

  it("a stored run opened from the history shows its candidates as answered panes", () => {
    const view = viewOfRun(toJson(RunSchema, finishedRun("r1", "t")));
    assert.equal(view.runId, "r1");
    assert.equal(view.panes.length, 3);
    assert.deepEqual(view.panes.map((p) => [p.instance, p.latencyMs, p.completionTokens]), [["qwen-1", 100, 20], ["qwen-2", 101, 20], ["qwen-3", 102, 20]]);
  });
});

describe("normal mode reducer", () => {
  it("appends deltas, then takes the done event's figures", () => {
    const streaming = reduceChat(reduceChat(EMPTY_CHAT, "delta", { delta: "a" }), "delta", { delta: "b" });
    assert.deepEqual([streaming.status, streaming.text], ["streaming", "ab"]);
    const done = reduceChat(streaming, "done", { text: "ab", model: "m", latencyMs: 20, usage: { promptTokens: 1, completionTokens: 2 } });
    assert.deepEqual([done.status, done.model, done.latencyMs, done.promptTokens, done.completionTokens], ["done", "m", 20, 1, 2]);
  });
});

describe("rendering helpers", () => {
  const run = wire(runEvents("r1", request)).at(-1)?.done ?? {};

  it("ranking rows: best first, every score, the final answer marked", () => {
    const rows = rankingRows(run);
    assert.deepEqual(rows.map((r) => [r.rank, r.id, r.overall, r.isFinal]), [["1", "c1", "0.90", true], ["2", "c2", "0.80", false], ["3", "c3", "0.70", false]]);
    assert.deepEqual(
      [rows[0]?.correctness, rows[0]?.completeness, rows[0]?.style, rows[0]?.tests, rows[0]?.latency],
      ["1.00", "1.00", "0.80", "2/2", "100 ms"],
    );
    const unranked = rankingRows({ candidates: [{ id: "r1", rank: 0 }, { id: "c1", rank: 1 }] });
    assert.deepEqual(unranked.map((r) => [r.id, r.rank]), [["c1", "1"], ["r1", "–"]]);
  });

  it("diffPair: the final answer against the best answer that behaves differently", () => {
    const pair = diffPair({
      final: { candidateId: "c2" },
      candidates: [
        { id: "c2", rank: 1, code: "a\n", clusterId: 0 },
        { id: "c1", rank: 2, code: "b\n", clusterId: 0 },
        { id: "c3", rank: 3, code: "c\n", clusterId: 1 },
      ],
    });
    assert.deepEqual([pair?.left.id, pair?.right.id], ["c3", "c2"]);
    assert.equal(diffPair({ candidates: [{ id: "c1", code: "x" }, { id: "c2", code: "x" }] }), null);
  });

  it("lineDiff marks removed and added lines around the common ones", () => {
    assert.deepEqual(lineDiff("a\nb\nc\n", "a\nx\nc\n"), [
      { kind: "same", text: "a" },
      { kind: "removed", text: "b" },
      { kind: "added", text: "x" },
      { kind: "same", text: "c" },
    ]);
    assert.equal(lineDiff("x\n".repeat(500), "y"), null);
  });

  it("labels and numbers", () => {
    assert.equal(enumLabel("RUN_STATUS_NEEDS_APPROVAL", "RUN_STATUS_"), "needs approval");
    assert.equal(enumLabel("GATE_OUTCOME_UNSPECIFIED", "GATE_OUTCOME_"), "");
    assert.equal(score("NaN"), "–");
    assert.equal(score(undefined), "0.00");
    assert.equal(duration(1530), "1.5 s");
    assert.equal(duration(null), "");
    assert.deepEqual(parseTests("assert f(1) == 1\n\n  \nassert f(2) == 2  \n"), ["assert f(1) == 1", "assert f(2) == 2"]);
    assert.deepEqual(candidateChoices(run), ["c1", "c2", "c3"]);
  });
});
