/**
 * The API's routes and the Worker's one entry for a request: /api/* goes to a route (every route
 * but the session's own authenticates first, so an anonymous caller learns nothing but 401),
 * anything else to the static page.
 */
import { readConfig } from "./config.js";
import { Context, type Deps, type Handler } from "./context.js";
import { ApiError, errorResponse } from "./http.js";
import { approveRun, getRun, listApprovals, listInstances, listRuns, rejectRun, submitFeedback } from "./routes_runs.js";
import { closeSession, openSession, readSession } from "./routes_session.js";
import { chat, createRun, followEvents } from "./routes_stream.js";

interface Route {
  readonly method: string;
  /** Segments; ":name" matches one segment and names it. */
  readonly path: readonly string[];
  readonly handler: Handler;
  /** false only where a caller has no identity yet (signing in and out). */
  readonly authenticated: boolean;
}

function route(method: string, path: string, handler: Handler, authenticated = true): Route {
  return { method, path: path.split("/").filter((s) => s !== ""), handler, authenticated };
}

export const ROUTES: readonly Route[] = [
  route("POST", "/api/session", openSession, false),
  route("GET", "/api/session", readSession, false),
  route("DELETE", "/api/session", closeSession, false),
  route("POST", "/api/chat", chat),
  route("POST", "/api/runs", createRun),
  route("GET", "/api/runs", listRuns),
  route("GET", "/api/runs/:id", getRun),
  route("GET", "/api/runs/:id/events", followEvents),
  route("POST", "/api/runs/:id/approve", approveRun),
  route("POST", "/api/runs/:id/reject", rejectRun),
  route("POST", "/api/runs/:id/feedback", submitFeedback),
  route("GET", "/api/instances", listInstances),
  route("GET", "/api/approvals", listApprovals),
];

function matchPath(pattern: readonly string[], segments: readonly string[]): Record<string, string> | null {
  if (pattern.length !== segments.length) {
    return null;
  }
  const params: Record<string, string> = {};
  for (const [i, part] of pattern.entries()) {
    const segment = segments[i] ?? "";
    if (part.startsWith(":")) {
      params[part.slice(1)] = segment;
    } else if (part !== segment) {
      return null;
    }
  }
  return params;
}

/** The route for a request and its path parameters; a 404 or 405 ApiError when there is none. */
export function findRoute(method: string, pathname: string): { route: Route; params: Record<string, string> } {
  let segments: string[];
  try {
    segments = pathname.split("/").filter((s) => s !== "").map(decodeURIComponent);
  } catch {
    throw new ApiError(400, "invalid_argument", "the path is not valid percent-encoding");
  }
  const allowed: string[] = [];
  for (const candidate of ROUTES) {
    const params = matchPath(candidate.path, segments);
    if (params === null) {
      continue;
    }
    if (candidate.method === method) {
      return { route: candidate, params };
    }
    allowed.push(candidate.method);
  }
  if (allowed.length > 0) {
    throw new ApiError(405, "method_not_allowed", `use ${allowed.join(" or ")} on ${pathname}`, {
      allow: allowed.join(", "),
    });
  }
  throw new ApiError(404, "not_found", `no API endpoint ${pathname}; docs/web-api.md lists them`);
}

function asApiError(error: unknown): ApiError {
  if (error instanceof ApiError) {
    return error;
  }
  console.error("unexpected error", error);
  return new ApiError(500, "internal", "the Worker failed unexpectedly; its log has the details");
}

export async function handle(request: Request, deps: Deps): Promise<Response> {
  const url = new URL(request.url);
  if (url.pathname !== "/api" && !url.pathname.startsWith("/api/")) {
    const assets = deps.env.ASSETS;
    return assets === undefined ? new Response("not found", { status: 404 }) : assets.fetch(request);
  }
  try {
    const { route: found, params } = findRoute(request.method, url.pathname);
    const context = new Context(request, url, params, readConfig(deps.env), deps);
    if (found.authenticated) {
      await context.identity();
    }
    return await found.handler(context);
  } catch (error) {
    return errorResponse(asApiError(error));
  }
}
