/**
 * The streaming endpoints: POST /api/chat (normal mode, or swarm mode when asked), POST /api/runs
 * (swarm mode) and GET /api/runs/{id}/events (follow a stored run). Swarm mode is the body's
 * `"swarm": true` or the header `X-Swarm-Mode: on`; both given must agree.
 */
import { CHAT_FIELDS, SWARM_FIELDS, checkSwarmOptions, checkTask } from "../shared/options.js";
import { startChat } from "./chat.js";
import type { Context } from "./context.js";
import { apiErrorFromGateway } from "./grpc_status.js";
import { ApiError, readJsonObject, rejectUnknownFields } from "./http.js";
import { checkRunId } from "./routes_runs.js";
import { sseResponse } from "./stream.js";
import { followRun, startRun } from "./swarm.js";

const HEADER_VALUES: Readonly<Record<string, boolean>> = { on: true, true: true, "1": true, off: false, false: false, "0": false };

/** Whether the request asks for swarm mode; a 400 when the field or header is malformed or they disagree. */
export function swarmMode(field: unknown, header: string | null): boolean {
  if (field !== undefined && typeof field !== "boolean") {
    throw new ApiError(400, "invalid_argument", `swarm is ${JSON.stringify(field)}; use true (swarm mode) or false`);
  }
  let fromHeader: boolean | undefined;
  if (header !== null) {
    fromHeader = HEADER_VALUES[header.trim().toLowerCase()];
    if (fromHeader === undefined) {
      throw new ApiError(400, "invalid_argument", "X-Swarm-Mode must be on or off");
    }
  }
  if (field !== undefined && fromHeader !== undefined && field !== fromHeader) {
    throw new ApiError(400, "invalid_argument", "the swarm field and the X-Swarm-Mode header disagree: send one");
  }
  return field ?? fromHeader ?? false;
}

function problem(message: string): ApiError {
  return new ApiError(400, "invalid_argument", message);
}

async function swarmRun(context: Context, body: Readonly<Record<string, unknown>>): Promise<Response> {
  rejectUnknownFields(body, [...CHAT_FIELDS, ...SWARM_FIELDS]);
  const checked = checkSwarmOptions(body);
  if (!checked.ok) {
    throw problem(checked.problems.map((p) => p.message).join("; "));
  }
  const identity = await context.identity();
  const abort = new AbortController();
  const events = await startRun(context.orchestrator, checked.value, identity.user, abort.signal);
  return sseResponse(events, abort, apiErrorFromGateway);
}

export async function chat(context: Context): Promise<Response> {
  const body = await readJsonObject(context.request);
  if (swarmMode(body["swarm"], context.request.headers.get("x-swarm-mode"))) {
    return swarmRun(context, body);
  }
  const swarmOnly = Object.keys(body).filter((key) => (SWARM_FIELDS as readonly string[]).includes(key));
  if (swarmOnly.length > 0) {
    throw problem(`${swarmOnly.join(", ")} apply to swarm mode only: set "swarm": true, or leave them out`);
  }
  rejectUnknownFields(body, CHAT_FIELDS);
  const task = checkTask(body["task"]);
  if (typeof task !== "string") {
    throw problem(task.message);
  }
  await context.identity();
  const abort = new AbortController();
  const { chat: config } = context.config;
  const events = await startChat(config, task, context.deps.chatFetch, abort.signal, context.deps.now);
  return sseResponse(events, abort, (error) =>
    error instanceof ApiError ? error : new ApiError(502, "chat_failed", "the chat instance's stream broke off"),
  );
}

export async function createRun(context: Context): Promise<Response> {
  const body = await readJsonObject(context.request);
  if (body["swarm"] === false || context.request.headers.get("x-swarm-mode")?.trim().toLowerCase() === "off") {
    throw problem("POST /api/runs always runs the swarm: drop swarm: false, or use POST /api/chat for one instance");
  }
  swarmMode(body["swarm"], context.request.headers.get("x-swarm-mode"));
  return swarmRun(context, body);
}

export async function followEvents(context: Context): Promise<Response> {
  const runId = checkRunId(context.param("id"));
  const identity = await context.identity();
  const abort = new AbortController();
  const { config, deps } = context;
  const events = await followRun(context.orchestrator, runId, identity.user, config.followIntervalMs, deps.sleep, abort.signal);
  return sseResponse(events, abort, apiErrorFromGateway);
}
