/** Pure helpers that turn run data into what the page shows (text, rows, which pair to diff). */
import type { CandidateJson, RunJson, RunStatusJson } from "../gen/swarm/v1/orchestrator_pb.js";
import type { Pane } from "./run_state.js";

/** "RUN_STATUS_NEEDS_APPROVAL" with prefix "RUN_STATUS_" -> "needs approval". */
export function enumLabel(value: string | undefined, prefix: string): string {
  if (value === undefined || value.endsWith("_UNSPECIFIED")) {
    return "";
  }
  return value.slice(value.startsWith(prefix) ? prefix.length : 0).toLowerCase().replace(/_/g, " ");
}

export function statusLabel(status: RunStatusJson | undefined): string {
  return enumLabel(status, "RUN_STATUS_") || "unknown";
}

/** A double in proto JSON: a number, or "NaN" / "Infinity" / "-Infinity" as strings. */
export type JsonDouble = number | string | undefined;

export function score(value: JsonDouble): string {
  const n = Number(value ?? 0);
  return Number.isFinite(n) ? n.toFixed(2) : "–";
}

export function duration(ms: JsonDouble | null): string {
  const n = ms === null || ms === undefined ? Number.NaN : Number(ms);
  if (!Number.isFinite(n)) {
    return "";
  }
  return n < 1000 ? `${Math.round(n)} ms` : `${(n / 1000).toFixed(1)} s`;
}

export function tokens(prompt: number | null, completion: number | null): string {
  if (prompt === null && completion === null) {
    return "";
  }
  return `${prompt ?? 0} in / ${completion ?? 0} out tokens`;
}

export function paneStatusLabel(pane: Pane): string {
  switch (pane.status) {
    case "waiting":
      return "waiting";
    case "generating":
      return pane.attempt > 1 ? `generating (attempt ${pane.attempt})` : "generating";
    case "answered":
      return "answered";
    case "failed":
      return pane.failure?.willRetry === true ? "failed, retrying elsewhere" : "failed";
  }
}

export function paneMeta(pane: Pane): string {
  return [duration(pane.latencyMs), tokens(pane.promptTokens, pane.completionTokens)].filter((s) => s !== "").join(" · ");
}

export interface RankingRow {
  readonly rank: string;
  readonly id: string;
  readonly instance: string;
  readonly origin: string;
  readonly overall: string;
  readonly correctness: string;
  readonly completeness: string;
  readonly style: string;
  readonly consensus: string;
  readonly dualAgreement: string;
  readonly tests: string;
  readonly generated: string;
  readonly cluster: string;
  readonly reputation: string;
  readonly latency: string;
  readonly isFinal: boolean;
  readonly error: string;
}

function ranked(run: RunJson): CandidateJson[] {
  const order = (c: CandidateJson): number => (c.rank === undefined || c.rank === 0 ? Number.MAX_SAFE_INTEGER : c.rank);
  return [...(run.candidates ?? [])].sort((x, y) => order(x) - order(y));
}

/** One row per candidate, best first (unranked last), every score the run holds. */
export function rankingRows(run: RunJson): RankingRow[] {
  const finalId = run.final?.candidateId ?? "";
  return ranked(run).map((c) => {
    const s = c.scores ?? {};
    return {
      rank: c.rank === undefined || c.rank === 0 ? "–" : String(c.rank),
      id: c.id ?? "",
      instance: c.instance ?? "",
      origin: enumLabel(c.origin, "CANDIDATE_ORIGIN_"),
      overall: score(s.overall),
      correctness: score(s.correctness),
      completeness: score(s.completeness),
      style: score(s.style),
      consensus: score(s.consensus),
      dualAgreement: score(s.dualAgreement),
      tests: `${s.testsPassed ?? 0}/${s.testsTotal ?? 0}`,
      generated: `${s.generatedPassed ?? 0}/${s.generatedTotal ?? 0}`,
      cluster: c.clusterId === undefined || c.clusterId < 0 ? "–" : String(c.clusterId),
      reputation: Number(c.reputation ?? 0) === 0 ? "–" : score(c.reputation),
      latency: duration(c.latencyMs),
      isFinal: c.id !== undefined && c.id === finalId,
      error: c.error ?? "",
    };
  });
}

/**
 * The two programs worth diffing: the final answer against the best candidate that behaves
 * differently (another cluster), else against the runner-up.
 */
export function diffPair(run: RunJson): { left: CandidateJson; right: CandidateJson } | null {
  const candidates = ranked(run).filter((c) => (c.code ?? "") !== "");
  const finalId = run.final?.candidateId;
  const first = candidates.find((c) => c.id === finalId) ?? candidates[0];
  if (first === undefined) {
    return null;
  }
  const others = candidates.filter((c) => c !== first && c.code !== first.code);
  const other = others.find((c) => c.clusterId !== first.clusterId) ?? others[0];
  return other === undefined ? null : { left: other, right: first };
}

export function canDecide(run: RunJson | null): boolean {
  return run?.status === "RUN_STATUS_NEEDS_APPROVAL";
}

/** The swarm candidates a user may prefer in feedback. */
export function candidateChoices(run: RunJson): string[] {
  return ranked(run).flatMap((c) => (c.id === undefined || c.id === "" ? [] : [c.id]));
}

/** Attached tests: one assert statement per non-blank line. */
export function parseTests(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.trimEnd())
    .filter((line) => line.trim() !== "");
}

export function shortTime(iso: string | undefined): string {
  if (iso === undefined || iso === "") {
    return "";
  }
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString().replace("T", " ").slice(0, 16);
}
