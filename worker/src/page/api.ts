/**
 * The page's calls to the Worker (same origin, the session cookie authenticates). Errors arrive
 * as {"error": {"code", "message"}}; ApiFailure carries them to the view as they are.
 */
import type {
  ListInstancesResponseJson,
  ListPendingApprovalsResponseJson,
  ListRunsResponseJson,
  RunJson,
} from "../gen/swarm/v1/orchestrator_pb.js";
import { readEvents } from "../shared/sse.js";

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiFailure";
  }
}

export interface WhoAmI {
  readonly user: string;
  readonly via: string;
  readonly expiresAt: string | null;
}

async function failure(response: Response): Promise<ApiFailure> {
  try {
    const body = (await response.json()) as { error?: { code?: string; message?: string } };
    return new ApiFailure(response.status, body.error?.code ?? "error", body.error?.message ?? `HTTP ${response.status}`);
  } catch {
    return new ApiFailure(response.status, "error", `the Worker answered HTTP ${response.status}`);
  }
}

async function call(path: string, init: RequestInit = {}): Promise<Response> {
  const response = await fetch(path, { credentials: "same-origin", ...init });
  if (!response.ok) {
    throw await failure(response);
  }
  return response;
}

function post(body: unknown): RequestInit {
  return { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
}

async function getJson<T>(path: string): Promise<T> {
  return (await (await call(path)).json()) as T;
}

export async function whoAmI(): Promise<WhoAmI | null> {
  const response = await fetch("/api/session", { credentials: "same-origin" });
  if (response.status === 401) {
    return null;
  }
  if (!response.ok) {
    throw await failure(response);
  }
  return (await response.json()) as WhoAmI;
}

export async function signIn(key: string): Promise<WhoAmI> {
  return (await (await call("/api/session", post({ key }))).json()) as WhoAmI;
}

export async function signOut(): Promise<void> {
  await call("/api/session", { method: "DELETE" });
}

export interface StreamEvent {
  readonly event: string;
  readonly data: unknown;
}

/**
 * POST a chat or run request and hand each SSE event to `onEvent` as it arrives. A refusal before
 * the stream starts throws ApiFailure; an `error` event mid-stream throws it too.
 */
export async function stream(
  path: string,
  body: unknown,
  onEvent: (event: StreamEvent) => void,
  signal: AbortSignal,
): Promise<void> {
  const response = await call(path, { ...post(body), signal });
  if (response.body === null) {
    throw new ApiFailure(502, "error", "the Worker sent no stream");
  }
  for await (const event of readEvents(response.body)) {
    const data = JSON.parse(event.data) as unknown;
    if (event.event === "error") {
      const error = (data as { error?: { code?: string; message?: string } }).error;
      throw new ApiFailure(200, error?.code ?? "error", error?.message ?? "the stream broke off");
    }
    onEvent({ event: event.event, data });
  }
}

export async function getRun(runId: string): Promise<RunJson> {
  const body = await getJson<{ run?: RunJson }>(`/api/runs/${encodeURIComponent(runId)}`);
  return body.run ?? {};
}

export function listRuns(pageToken = "", pageSize = 10): Promise<ListRunsResponseJson> {
  const query = new URLSearchParams({ pageSize: String(pageSize) });
  if (pageToken !== "") {
    query.set("pageToken", pageToken);
  }
  return getJson<ListRunsResponseJson>(`/api/runs?${query.toString()}`);
}

export function listInstances(): Promise<ListInstancesResponseJson> {
  return getJson<ListInstancesResponseJson>("/api/instances");
}

export function listApprovals(): Promise<ListPendingApprovalsResponseJson> {
  return getJson<ListPendingApprovalsResponseJson>("/api/approvals?pageSize=20");
}

export async function decide(runId: string, approve: boolean, comment: string): Promise<RunJson> {
  const path = `/api/runs/${encodeURIComponent(runId)}/${approve ? "approve" : "reject"}`;
  const body = (await (await call(path, post({ comment }))).json()) as { run?: RunJson };
  return body.run ?? {};
}

export async function sendFeedback(
  runId: string,
  rating: number,
  preferredCandidateId: string,
  comment: string,
): Promise<void> {
  const path = `/api/runs/${encodeURIComponent(runId)}/feedback`;
  await call(path, post({ rating, preferredCandidateId, comment }));
}
