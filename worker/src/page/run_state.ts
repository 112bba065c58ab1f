/**
 * What the page knows of a swarm run, folded from the Worker's progress events: one pane per
 * slot (waiting, generating with its text so far, answered, failed), the stages that finished,
 * and the stored run once it is done. Pure, so the tests drive it without a browser.
 */
import type {
  AssessedJson,
  CollatedJson,
  InstanceFailureJson,
  RefinedJson,
  RunJson,
  RunQueuedJson,
  RunStatusJson,
  RunSwarmResponseJson,
} from "../gen/swarm/v1/orchestrator_pb.js";
import type { GateDecisionJson } from "../gen/swarm/v1/common_pb.js";

export type PaneStatus = "waiting" | "generating" | "answered" | "failed";

export interface Pane {
  readonly slot: number;
  readonly instance: string;
  readonly attempt: number;
  readonly status: PaneStatus;
  readonly text: string;
  /** True when an instance_output's length said some text was lost on the way. */
  readonly gap: boolean;
  readonly latencyMs: number | null;
  readonly promptTokens: number | null;
  readonly completionTokens: number | null;
  readonly candidateId: string | null;
  readonly failure: { readonly kind: string; readonly reason: string; readonly willRetry: boolean } | null;
  /** Why the previous attempt of this slot failed, when this one is its retry on another instance. */
  readonly retriedAfter: string | null;
}

export interface RunView {
  readonly runId: string | null;
  readonly status: RunStatusJson;
  readonly panes: readonly Pane[];
  readonly collated: CollatedJson | null;
  readonly assessed: AssessedJson | null;
  readonly refined: RefinedJson | null;
  readonly gated: GateDecisionJson | null;
  /** The run waits in the queue at the door: its place, until its first instance starts. */
  readonly queued: RunQueuedJson | null;
  /** The stored run: from `done`, or from GET /api/runs/{id}. */
  readonly run: RunJson | null;
  readonly error: string | null;
}

export const EMPTY_RUN: RunView = {
  runId: null,
  status: "RUN_STATUS_RUNNING",
  panes: [],
  collated: null,
  assessed: null,
  refined: null,
  gated: null,
  queued: null,
  run: null,
  error: null,
};

export function waitingPane(slot: number): Pane {
  return {
    slot,
    instance: "",
    attempt: 0,
    status: "waiting",
    text: "",
    gap: false,
    latencyMs: null,
    promptTokens: null,
    completionTokens: null,
    candidateId: null,
    failure: null,
    retriedAfter: null,
  };
}

/** int64 fields arrive as strings in proto JSON, doubles may be "NaN": a finite number or null. */
export function count(value: string | number | undefined): number | null {
  if (value === undefined) {
    return null;
  }
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

function withPane(view: RunView, slot: number, change: (pane: Pane) => Pane): RunView {
  const panes = [...view.panes];
  while (panes.length <= slot) {
    panes.push(waitingPane(panes.length));
  }
  panes[slot] = change(panes[slot] ?? waitingPane(slot));
  return { ...view, panes };
}

function failed(pane: Pane, failure: InstanceFailureJson): Pane {
  return {
    ...pane,
    instance: failure.instance ?? pane.instance,
    attempt: failure.attempt ?? pane.attempt,
    status: "failed",
    failure: {
      kind: (failure.kind ?? "FAILURE_KIND_UNSPECIFIED").replace(/^FAILURE_KIND_/, "").toLowerCase(),
      reason: failure.reason ?? "",
      willRetry: failure.willRetry ?? false,
    },
  };
}

/** Panes that streamed no text (stream_output off, or a stored run) show the candidate's reply. */
/** ``size`` panes: those there are, then waiting ones. */
function withPanes(panes: readonly Pane[], size: number): Pane[] {
  return Array.from({ length: size }, (_, slot) => panes[slot] ?? waitingPane(slot));
}

function fillFromRun(panes: readonly Pane[], run: RunJson): Pane[] {
  const byId = new Map((run.candidates ?? []).map((candidate) => [candidate.id ?? "", candidate]));
  return panes.map((pane) => {
    const candidate = pane.candidateId === null ? undefined : byId.get(pane.candidateId);
    return candidate !== undefined && pane.text === "" ? { ...pane, text: candidate.text ?? "" } : pane;
  });
}

/** Panes for a stored run opened from the history: one per swarm candidate, answered. */
export function panesOfRun(run: RunJson): Pane[] {
  const swarm = (run.candidates ?? []).filter((candidate) => candidate.origin !== "CANDIDATE_ORIGIN_REFINED");
  return swarm.map((candidate, slot) => ({
    ...waitingPane(slot),
    instance: candidate.instance ?? "",
    attempt: 1,
    status: "answered",
    text: candidate.text ?? "",
    latencyMs: count(candidate.latencyMs),
    promptTokens: count(candidate.usage?.promptTokens),
    completionTokens: count(candidate.usage?.completionTokens),
    candidateId: candidate.id ?? null,
  }));
}

export function viewOfRun(run: RunJson): RunView {
  return { ...EMPTY_RUN, runId: run.id ?? null, status: run.status ?? "RUN_STATUS_UNSPECIFIED", panes: panesOfRun(run), run };
}

export function reduce(view: RunView, event: RunSwarmResponseJson): RunView {
  const runId = event.runId ?? view.runId;
  const next = { ...view, runId };
  if (event.accepted !== undefined) {
    // An adaptive run asks its first round only; a `grown` event opens the panes of the next.
    const first = event.accepted.adaptiveStart ?? 0;
    const panes = withPanes(view.panes, first > 0 ? first : (event.accepted.swarmSize ?? 0));
    return { ...next, status: event.accepted.status ?? "RUN_STATUS_RUNNING", panes };
  }
  if (event.grown !== undefined) {
    return { ...next, panes: withPanes(next.panes, Math.max(next.panes.length, event.grown.size ?? 0)) };
  }
  if (event.queued !== undefined) {
    return { ...next, queued: event.queued };
  }
  if (event.instanceStarted !== undefined) {
    const { slot = 0, instance = "", attempt = 1 } = event.instanceStarted;
    return withPane({ ...next, queued: null }, slot, (pane) => ({
      ...waitingPane(slot),
      instance,
      attempt,
      status: "generating",
      retriedAfter: attempt > 1 ? (pane.failure?.reason ?? pane.retriedAfter) : null,
    }));
  }
  if (event.instanceOutput !== undefined) {
    const { slot = 0, instance = "", attempt = 1, delta = "", length } = event.instanceOutput;
    return withPane(next, slot, (pane) => {
      const base = attempt > pane.attempt ? { ...waitingPane(slot), instance, attempt } : pane;
      if (attempt < base.attempt || base.status === "answered") {
        return base;
      }
      const text = base.text + delta;
      const gap = base.gap || (length !== undefined && length !== text.length);
      return { ...base, instance, status: "generating", text, gap };
    });
  }
  if (event.instanceFinished !== undefined) {
    const finished = event.instanceFinished;
    return withPane(next, finished.slot ?? 0, (pane) => ({
      ...pane,
      instance: finished.instance ?? pane.instance,
      status: "answered",
      latencyMs: count(finished.latencyMs),
      promptTokens: count(finished.usage?.promptTokens),
      completionTokens: count(finished.usage?.completionTokens),
      candidateId: finished.candidateId ?? null,
      failure: null,
    }));
  }
  if (event.instanceFailed !== undefined) {
    const failure = event.instanceFailed;
    return withPane(next, failure.slot ?? 0, (pane) => failed(pane, failure));
  }
  if (event.collated !== undefined) {
    return { ...next, collated: event.collated };
  }
  if (event.assessed !== undefined) {
    return { ...next, assessed: event.assessed };
  }
  if (event.refined !== undefined) {
    return { ...next, refined: event.refined };
  }
  if (event.gated !== undefined) {
    return { ...next, gated: event.gated };
  }
  if (event.done !== undefined) {
    const run = event.done;
    const panes = fillFromRun(next.panes, run);
    return { ...next, status: run.status ?? "RUN_STATUS_UNSPECIFIED", run, panes, queued: null };
  }
  return next;
}

/** The stream broke off or was refused: the run's view keeps what arrived, with the reason. */
export function withError(view: RunView, message: string): RunView {
  return { ...view, error: message };
}

/** Normal mode: one instance's answer as it streams. */
export interface ChatView {
  readonly status: "streaming" | "done" | "failed";
  readonly text: string;
  readonly latencyMs: number | null;
  readonly promptTokens: number | null;
  readonly completionTokens: number | null;
  readonly model: string | null;
  readonly error: string | null;
}

export const EMPTY_CHAT: ChatView = {
  status: "streaming",
  text: "",
  latencyMs: null,
  promptTokens: null,
  completionTokens: null,
  model: null,
  error: null,
};

export interface ChatDoneJson {
  readonly text?: string;
  readonly model?: string;
  readonly latencyMs?: number;
  readonly usage?: { readonly promptTokens?: number; readonly completionTokens?: number } | null;
}

export function reduceChat(view: ChatView, event: string, data: unknown): ChatView {
  if (event === "delta") {
    const delta = (data as { delta?: string }).delta ?? "";
    return { ...view, text: view.text + delta };
  }
  if (event === "done") {
    const done = data as ChatDoneJson;
    return {
      ...view,
      status: "done",
      text: done.text ?? view.text,
      model: done.model ?? null,
      latencyMs: done.latencyMs ?? null,
      promptTokens: done.usage?.promptTokens ?? null,
      completionTokens: done.usage?.completionTokens ?? null,
    };
  }
  return view;
}
