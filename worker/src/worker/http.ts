/**
 * The API's one error shape and its JSON responses. Every failure a caller can see is an ApiError
 * with a status, a stable machine code and a message that says what to fix (docs/web-api.md).
 */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}

export function errorBody(error: ApiError): ErrorBody {
  return { error: { code: error.code, message: error.message } };
}

const NO_STORE = { "cache-control": "no-store" };

export function json(body: unknown, status = 200, headers: Readonly<Record<string, string>> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...NO_STORE, ...headers },
  });
}

export function errorResponse(error: ApiError): Response {
  return json(errorBody(error), error.status, error.headers);
}

export function noContent(headers: Readonly<Record<string, string>> = {}): Response {
  return new Response(null, { status: 204, headers: { ...NO_STORE, ...headers } });
}

const MAX_BODY_CHARS = 256 * 1024;

/** The request's JSON object body; a missing body is an empty object when `optional`. */
export async function readJsonObject(request: Request, optional = false): Promise<Record<string, unknown>> {
  const text = await request.text();
  if (text.trim() === "" && optional) {
    return {};
  }
  const type = request.headers.get("content-type") ?? "";
  if (!/^application\/json\b/i.test(type)) {
    throw new ApiError(415, "unsupported_media_type", "send the body as JSON with Content-Type: application/json");
  }
  if (text.length > MAX_BODY_CHARS) {
    throw new ApiError(413, "payload_too_large", `the body is over ${MAX_BODY_CHARS} characters; send less`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ApiError(400, "invalid_json", "the body is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ApiError(400, "invalid_json", "the body must be a JSON object, e.g. {\"task\": \"...\"}");
  }
  return value as Record<string, unknown>;
}

/** Rejects fields the endpoint does not know, so a typo is not silently ignored. */
export function rejectUnknownFields(body: Readonly<Record<string, unknown>>, known: readonly string[]): void {
  const unknown = Object.keys(body).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    throw new ApiError(
      400,
      "invalid_argument",
      `unknown field(s) ${unknown.map((key) => JSON.stringify(key)).join(", ")}; this endpoint takes ${known.join(", ")}`,
    );
  }
}
