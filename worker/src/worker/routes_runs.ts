/**
 * The unary swarm endpoints. Each answers with its RPC's response message as proto JSON, except
 * that instances lose their base URL and key variable: where the instances live is the
 * orchestrator's business, not the page's.
 */
import {
  ApproveRunResponseSchema,
  GetRunResponseSchema,
  ListInstancesResponseSchema,
  ListPendingApprovalsResponseSchema,
  ListRunsResponseSchema,
  RejectRunResponseSchema,
  SubmitFeedbackResponseSchema,
} from "../gen/swarm/v1/orchestrator_pb.js";
import type { Context } from "./context.js";
import { asUser } from "./gateway.js";
import { apiErrorFromGateway } from "./grpc_status.js";
import { ApiError, json, readJsonObject, rejectUnknownFields } from "./http.js";
import { protoJson } from "./swarm.js";

const RUN_ID = /^[A-Za-z0-9_-]{1,128}$/;
const MAX_COMMENT_CHARS = 2000;
const MAX_PAGE_SIZE = 100;

export function checkRunId(value: string): string {
  if (!RUN_ID.test(value)) {
    throw new ApiError(400, "invalid_argument", `${JSON.stringify(value)} is not a run id (letters, digits, _ and -)`);
  }
  return value;
}

function invalid(message: string): ApiError {
  return new ApiError(400, "invalid_argument", message);
}

/** pageSize and pageToken from the query string; no other parameter is accepted. */
export function paging(url: URL): { pageSize: number; pageToken: string } {
  const unknown = [...url.searchParams.keys()].filter((key) => key !== "pageSize" && key !== "pageToken");
  if (unknown.length > 0) {
    throw invalid(`unknown query parameter(s) ${unknown.join(", ")}; this endpoint takes pageSize and pageToken`);
  }
  const size = url.searchParams.get("pageSize");
  const pageSize = size === null ? 0 : Number(size);
  if (size !== null && (!/^\d+$/.test(size) || pageSize < 1 || pageSize > MAX_PAGE_SIZE)) {
    throw invalid(`pageSize is ${JSON.stringify(size)}; use 1 to ${MAX_PAGE_SIZE} (20 when left out)`);
  }
  return { pageSize, pageToken: url.searchParams.get("pageToken") ?? "" };
}

function comment(value: unknown): string {
  if (value === undefined) {
    return "";
  }
  if (typeof value !== "string") {
    throw invalid("comment must be a string");
  }
  if (value.length > MAX_COMMENT_CHARS) {
    throw invalid(`comment is ${value.length} characters; keep it to ${MAX_COMMENT_CHARS}`);
  }
  return value;
}

async function call<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    throw apiErrorFromGateway(error);
  }
}

export async function getRun(context: Context): Promise<Response> {
  const runId = checkRunId(context.param("id"));
  const { user } = await context.identity();
  const response = await call(context.orchestrator.getRun({ runId }, asUser(user)));
  return json(protoJson(GetRunResponseSchema, response));
}

export async function listRuns(context: Context): Promise<Response> {
  const page = paging(context.url);
  const { user } = await context.identity();
  const response = await call(context.orchestrator.listRuns(page, asUser(user)));
  return json(protoJson(ListRunsResponseSchema, response));
}

export async function listInstances(context: Context): Promise<Response> {
  const { user } = await context.identity();
  const response = await call(context.orchestrator.listInstances({}, asUser(user)));
  for (const status of response.instances) {
    if (status.instance !== undefined) {
      status.instance.baseUrl = "";
      status.instance.apiKeyEnv = "";
    }
  }
  return json(protoJson(ListInstancesResponseSchema, response));
}

export async function listApprovals(context: Context): Promise<Response> {
  const page = paging(context.url);
  const { user } = await context.identity();
  const response = await call(context.orchestrator.listPendingApprovals(page, asUser(user)));
  return json(protoJson(ListPendingApprovalsResponseSchema, response));
}

async function decide(context: Context, approve: boolean): Promise<Response> {
  const runId = checkRunId(context.param("id"));
  const { user } = await context.identity();
  const body = await readJsonObject(context.request, true);
  rejectUnknownFields(body, ["comment"]);
  const request = { runId, comment: comment(body["comment"]) };
  if (approve) {
    const response = await call(context.orchestrator.approveRun(request, asUser(user)));
    return json(protoJson(ApproveRunResponseSchema, response));
  }
  const response = await call(context.orchestrator.rejectRun(request, asUser(user)));
  return json(protoJson(RejectRunResponseSchema, response));
}

export function approveRun(context: Context): Promise<Response> {
  return decide(context, true);
}

export function rejectRun(context: Context): Promise<Response> {
  return decide(context, false);
}

export async function submitFeedback(context: Context): Promise<Response> {
  const runId = checkRunId(context.param("id"));
  const { user } = await context.identity();
  const body = await readJsonObject(context.request);
  rejectUnknownFields(body, ["rating", "preferredCandidateId", "comment"]);
  const rating = body["rating"];
  if (typeof rating !== "number" || !Number.isInteger(rating) || rating < 1 || rating > 5) {
    throw invalid(`rating is ${JSON.stringify(rating)}; rate the answer 1 (useless) to 5 (use as is)`);
  }
  const preferred = body["preferredCandidateId"] ?? "";
  if (typeof preferred !== "string" || preferred.length > 64) {
    throw invalid("preferredCandidateId must be a candidate id such as \"c2\", or left out");
  }
  const request = { runId, rating, preferredCandidateId: preferred, comment: comment(body["comment"]) };
  const response = await call(context.orchestrator.submitFeedback(request, asUser(user)));
  return json(protoJson(SubmitFeedbackResponseSchema, response));
}
