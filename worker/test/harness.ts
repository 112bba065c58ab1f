/**
 * The Worker's fetch handler with its outbound world replaced: the gateway by a fake gRPC-web
 * server (fakes/gateway.ts), the chat instance by a function, the clock by a number.
 */
import type { Env } from "../src/worker/config.js";
import type { Deps } from "../src/worker/context.js";
import type { Fetch } from "../src/worker/gateway.js";
import { handle } from "../src/worker/router.js";
import { readEvents } from "../src/shared/sse.js";
import { type FakeGateway, fakeGateway } from "./fakes/gateway.js";
import { type Seen, orchestratorImpl } from "./fakes/orchestrator.js";

export const ORIGIN = "http://127.0.0.1:8787";
export const KEYS = "alice:alice-key-123,bob:bob-key-456";
export const SECRET = "a-session-secret-of-some-length";

export const ENV: Env = {
  GATEWAY_URL: "http://gateway.test:8080",
  CHAT_BASE_URL: "http://chat.test/v1",
  CHAT_MODEL: "qwen-test",
  SWARM_API_KEYS: KEYS,
  SESSION_SECRET: SECRET,
  FOLLOW_INTERVAL_MS: "100",
};

export interface Harness {
  readonly gateway: FakeGateway;
  readonly seen: Seen;
  /** Milliseconds since the epoch, as the Worker sees it; tests move it. */
  clock: number;
  chatFetch: Fetch;
  fetch(path: string, init?: RequestInit): Promise<Response>;
}

export function harness(env: Partial<Env> = {}): Harness {
  const seen: Seen = { requests: [], users: [] };
  const gateway = fakeGateway(orchestratorImpl(seen));
  const state: Harness = {
    gateway,
    seen,
    clock: 1_800_000_000_000,
    chatFetch: () => Promise.reject(new Error("no chat instance in this test")),
    fetch(path, init) {
      const deps: Deps = {
        env: { ...ENV, ...env },
        gatewayFetch: gateway.fetch,
        chatFetch: (input, requestInit) => state.chatFetch(input, requestInit),
        now: () => state.clock,
        sleep: () => Promise.resolve(),
      };
      return handle(new Request(new URL(path, ORIGIN), init), deps);
    },
  };
  return state;
}

export function bearer(key = "alice-key-123"): Record<string, string> {
  return { authorization: `Bearer ${key}` };
}

export function postJson(body: unknown, headers: Record<string, string> = bearer()): RequestInit {
  return { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) };
}

export interface Received {
  readonly event: string;
  readonly data: unknown;
}

export async function events(response: Response): Promise<Received[]> {
  if (response.body === null) {
    throw new Error("no body");
  }
  const out: Received[] = [];
  for await (const event of readEvents(response.body)) {
    out.push({ event: event.event, data: JSON.parse(event.data) as unknown });
  }
  return out;
}

export async function errorOf(response: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await response.json()) as { error: { code: string; message: string } };
  return { status: response.status, code: body.error.code, message: body.error.message };
}
