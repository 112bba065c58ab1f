/**
 * A fake gRPC-web gateway: an OrchestratorService implementation served by connect's own
 * gRPC-web handler as a plain fetch function. The Worker's real transport talks to it, so the
 * framing, trailers, metadata and status codes are the wire's, not a mock's.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import { createConnectRouter } from "@connectrpc/connect";
import { createFetchHandler } from "@connectrpc/connect/protocol";

import { OrchestratorService } from "../../src/gen/swarm/v1/orchestrator_pb.js";
import type { Fetch } from "../../src/worker/gateway.js";

export type OrchestratorImpl = Partial<ServiceImpl<typeof OrchestratorService>>;

export interface RecordedCall {
  readonly url: string;
  readonly init: RequestInit | undefined;
  readonly headers: Headers;
}

export interface FakeGateway {
  readonly fetch: Fetch;
  readonly calls: RecordedCall[];
}

export function fakeGateway(impl: OrchestratorImpl): FakeGateway {
  const router = createConnectRouter({ connect: false, grpc: false, grpcWeb: true });
  router.service(OrchestratorService, impl);
  const handlers = new Map(router.handlers.map((handler) => [handler.requestPath, createFetchHandler(handler)]));
  const calls: RecordedCall[] = [];
  const fetch: Fetch = async (input, init) => {
    const request = new Request(input, init);
    calls.push({ url: request.url, init, headers: request.headers });
    const handler = handlers.get(new URL(request.url).pathname);
    if (handler === undefined) {
      return new Response("no such method", { status: 404 });
    }
    return handler(request);
  };
  return { fetch, calls };
}
