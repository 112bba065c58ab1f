/**
 * gRPC status -> HTTP status, the table grpc-gateway uses, with the orchestrator's own message
 * kept as the caller's message (it says what to fix). A transport failure never shows the
 * gateway's address: the page must not learn where the orchestrator lives.
 */
import { Code, ConnectError } from "@connectrpc/connect";

import { ApiError } from "./http.js";

const HTTP_STATUS: Readonly<Record<Code, number>> = {
  [Code.Canceled]: 499,
  [Code.Unknown]: 502,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 409,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Internal]: 500,
  [Code.Unavailable]: 503,
  [Code.DataLoss]: 500,
  [Code.Unauthenticated]: 401,
};

export function httpStatusFor(code: Code): number {
  return HTTP_STATUS[code];
}

/** "invalid_argument" for Code.InvalidArgument: the API's error code for a gRPC status. */
export function errorCodeFor(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

/**
 * The ApiError for anything a gateway call threw. A status the server sent (a grpc-status header
 * or trailer) keeps the server's message; a failure of the call itself gets a fixed message:
 * canceled, timed out, an answer that is not gRPC-web (502), or no answer at all (503).
 */
export function apiErrorFromGateway(error: unknown): ApiError {
  if (error instanceof ApiError) {
    return error;
  }
  const connect = ConnectError.from(error);
  if (connect.metadata.has("grpc-status")) {
    return new ApiError(httpStatusFor(connect.code), errorCodeFor(connect.code), connect.rawMessage);
  }
  if (connect.code === Code.Canceled) {
    return new ApiError(499, "canceled", "the request was canceled");
  }
  if (connect.code === Code.DeadlineExceeded) {
    return new ApiError(504, "deadline_exceeded", "the orchestrator did not answer in time");
  }
  if ([...connect.metadata.keys()].length > 0) {
    return new ApiError(502, "bad_gateway", "the gateway's answer is not gRPC-web: check GATEWAY_URL");
  }
  return new ApiError(503, "gateway_unavailable", "the orchestrator cannot be reached; try again shortly");
}
