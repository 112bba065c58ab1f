/**
 * The orchestrator, reached through the gRPC-web gateway (Envoy) with the client generated from
 * protos/. workerd's fetch refuses some RequestInit fields browsers take: connect-web asks for
 * `redirect: "error"`, which workerd does not implement, so the fetch handed to the transport asks
 * for "manual" and turns a redirect into an error itself.
 */
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { OrchestratorService } from "../gen/swarm/v1/orchestrator_pb.js";

export type Orchestrator = Client<typeof OrchestratorService>;
export type Fetch = (input: Request | string | URL, init?: RequestInit) => Promise<Response>;

/** The request metadata naming the end user; the orchestrator lets the service key in GATEWAY_TOKEN name it. */
export const USER_METADATA = "x-swarm-user";

/** Fields of RequestInit that workerd rejects or ignores; dropped or translated here. */
const UNSUPPORTED_INIT_FIELDS = ["mode", "credentials", "cache", "referrer", "referrerPolicy", "integrity"] as const;

export function workerdFetch(inner: Fetch): Fetch {
  return async (input, init) => {
    const copy: RequestInit = { ...init };
    for (const field of UNSUPPORTED_INIT_FIELDS) {
      Reflect.deleteProperty(copy, field);
    }
    const refuseRedirects = copy.redirect === "error";
    if (refuseRedirects) {
      copy.redirect = "manual";
    }
    const response = await inner(input, copy);
    if (refuseRedirects && response.status >= 300 && response.status < 400) {
      await response.body?.cancel();
      throw new TypeError(`the gateway redirected (HTTP ${response.status}); point GATEWAY_URL at the gateway itself`);
    }
    return response;
  };
}

export function orchestratorClient(gatewayUrl: string, fetch: Fetch, token: string | null): Orchestrator {
  const transport = createGrpcWebTransport({
    baseUrl: gatewayUrl,
    fetch: workerdFetch(fetch),
    useBinaryFormat: true,
    interceptors:
      token === null
        ? []
        : [
            (next) => async (request) => {
              request.header.set("authorization", `Bearer ${token}`);
              return next(request);
            },
          ],
  });
  return createClient(OrchestratorService, transport);
}

/** Deadline of a unary call (sent as grpc-timeout); a RunSwarm stream has none: a run takes what it takes. */
export const UNARY_TIMEOUT_MS = 30_000;

export interface CallOptions {
  headers: Record<string, string>;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Options of a unary call as the caller: their identity, the unary deadline, their cancellation. */
export function asUser(user: string, signal?: AbortSignal): CallOptions {
  const options: CallOptions = { headers: { [USER_METADATA]: user }, timeoutMs: UNARY_TIMEOUT_MS };
  if (signal !== undefined) {
    options.signal = signal;
  }
  return options;
}

/** Options of the RunSwarm stream: the caller's identity, the run's trace, cancellation, no deadline. */
export function streamAsUser(user: string, signal: AbortSignal, traceparent: string): CallOptions {
  return { headers: { [USER_METADATA]: user, traceparent }, signal };
}
