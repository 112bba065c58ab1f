/**
 * The Worker's configuration: wrangler vars and secrets, read once per request and checked so a
 * missing or malformed one fails with a message naming it (never its value).
 */
import { ApiError } from "./http.js";

/** The bindings wrangler gives the Worker (wrangler.toml [vars], secrets, the assets binding). */
export interface Env {
  readonly GATEWAY_URL?: string;
  readonly GATEWAY_TOKEN?: string;
  readonly CHAT_BASE_URL?: string;
  readonly CHAT_MODEL?: string;
  readonly CHAT_API_KEY?: string;
  readonly CHAT_MAX_TOKENS?: string;
  readonly SWARM_API_KEYS?: string;
  readonly SESSION_SECRET?: string;
  readonly SESSION_TTL_S?: string;
  readonly FOLLOW_INTERVAL_MS?: string;
  readonly ASSETS?: { fetch(request: Request): Promise<Response> };
}

export interface ChatConfig {
  readonly baseUrl: string;
  readonly model: string;
  readonly apiKey: string | null;
  readonly maxTokens: number;
}

export interface Config {
  readonly gatewayUrl: string;
  readonly gatewayToken: string | null;
  readonly chat: ChatConfig;
  /** user -> key, from SWARM_API_KEYS. */
  readonly keys: ReadonlyMap<string, string>;
  readonly sessionSecret: string;
  readonly sessionTtlS: number;
  readonly followIntervalMs: number;
}

/** The identities the orchestrator accepts in x-swarm-user (libs/swarmlib/api_keys.py IDENTITY). */
export const USER_NAME = /^[A-Za-z0-9._@+-]{1,128}$/;
const MIN_SECRET_CHARS = 16;

function misconfigured(message: string): ApiError {
  return new ApiError(500, "misconfigured", message);
}

function url(name: string, value: string | undefined): string {
  const text = (value ?? "").trim();
  if (!/^https?:\/\/[^/]/.test(text) || !URL.canParse(text)) {
    throw misconfigured(`${name} must be an http(s) URL; set it in wrangler.toml [vars] or with --var`);
  }
  return text.replace(/\/+$/, "");
}

function integer(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined || value.trim() === "") {
    return fallback;
  }
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw misconfigured(`${name} must be a whole number from ${min} to ${max}`);
  }
  return n;
}

/** Parses SWARM_API_KEYS, "user:key" pairs separated by commas. */
export function parseApiKeys(value: string | undefined): Map<string, string> {
  const keys = new Map<string, string>();
  const seen = new Set<string>();
  const entries = (value ?? "").split(",").map((entry) => entry.trim()).filter((entry) => entry !== "");
  if (entries.length === 0) {
    throw misconfigured("SWARM_API_KEYS is not set: give it user:key pairs separated by commas (a secret)");
  }
  entries.forEach((entry, index) => {
    const colon = entry.indexOf(":");
    const user = colon === -1 ? "" : entry.slice(0, colon);
    const key = colon === -1 ? "" : entry.slice(colon + 1);
    if (!USER_NAME.test(user) || key === "") {
      throw misconfigured(
        `SWARM_API_KEYS entry ${index + 1} is not user:key (user: letters, digits and . _ @ + -, at most 128; key not empty)`,
      );
    }
    if (keys.has(user)) {
      throw misconfigured(`SWARM_API_KEYS names user ${user} twice: give each user one key`);
    }
    if (seen.has(key)) {
      throw misconfigured(`SWARM_API_KEYS gives two users the same key (entry ${index + 1}): keys must be distinct`);
    }
    keys.set(user, key);
    seen.add(key);
  });
  return keys;
}

export function readConfig(env: Env): Config {
  const secret = env.SESSION_SECRET ?? "";
  if (secret.length < MIN_SECRET_CHARS) {
    throw misconfigured(`SESSION_SECRET must be a secret of at least ${MIN_SECRET_CHARS} characters`);
  }
  const model = (env.CHAT_MODEL ?? "").trim();
  if (model === "") {
    throw misconfigured("CHAT_MODEL is not set: name the model of the chat instance");
  }
  const apiKey = env.CHAT_API_KEY ?? "";
  const gatewayToken = env.GATEWAY_TOKEN ?? "";
  return {
    gatewayUrl: url("GATEWAY_URL", env.GATEWAY_URL),
    gatewayToken: gatewayToken === "" ? null : gatewayToken,
    chat: {
      baseUrl: url("CHAT_BASE_URL", env.CHAT_BASE_URL),
      model,
      apiKey: apiKey === "" ? null : apiKey,
      maxTokens: integer("CHAT_MAX_TOKENS", env.CHAT_MAX_TOKENS, 1024, 1, 32_768),
    },
    keys: parseApiKeys(env.SWARM_API_KEYS),
    sessionSecret: secret,
    sessionTtlS: integer("SESSION_TTL_S", env.SESSION_TTL_S, 12 * 3600, 60, 30 * 24 * 3600),
    followIntervalMs: integer("FOLLOW_INTERVAL_MS", env.FOLLOW_INTERVAL_MS, 1000, 100, 60_000),
  };
}
