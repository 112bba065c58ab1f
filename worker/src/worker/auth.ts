/**
 * Who is calling: an API key (Authorization: Bearer) or a session cookie opened with one.
 * Keys are compared as SHA-256 digests, every configured key every time, so neither the time of
 * a refusal nor its length tells an attacker how close a guess was.
 */
import type { Config } from "./config.js";
import { ApiError } from "./http.js";
import { SESSION_COOKIE, keyFingerprint, readCookie, timingSafeEqual, verifySession } from "./session.js";

export interface Identity {
  readonly user: string;
  readonly via: "key" | "session";
  /** Unix seconds; null for a key, which does not expire. */
  readonly expiresAt: number | null;
}

const encoder = new TextEncoder();

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

/** The user whose key this is, or null. */
export async function userForKey(keys: ReadonlyMap<string, string>, key: string): Promise<string | null> {
  const given = await digest(key);
  let found: string | null = null;
  for (const [user, expected] of keys) {
    if (timingSafeEqual(given, await digest(expected)) && found === null) {
      found = user;
    }
  }
  return found;
}

export function unauthenticated(message: string): ApiError {
  return new ApiError(401, "unauthenticated", message, { "www-authenticate": 'Bearer realm="swarm"' });
}

async function fromBearer(config: Config, header: string): Promise<Identity> {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (match?.[1] === undefined) {
    throw unauthenticated("the Authorization header must be `Bearer <API key>`");
  }
  const user = await userForKey(config.keys, match[1]);
  if (user === null) {
    throw unauthenticated("this API key is not known: check it, or ask for one (SWARM_API_KEYS)");
  }
  return { user, via: "key", expiresAt: null };
}

async function fromCookie(config: Config, token: string, nowS: number): Promise<Identity> {
  const session = await verifySession(config.sessionSecret, token, nowS);
  if (typeof session === "string") {
    throw unauthenticated(
      session === "expired" ? "your session has expired: sign in again" : "your session is not valid: sign in again",
    );
  }
  const key = config.keys.get(session.user);
  const current = key === undefined ? null : await keyFingerprint(config.sessionSecret, key);
  if (current === null || !timingSafeEqual(encoder.encode(current), encoder.encode(session.fingerprint))) {
    throw unauthenticated("your key has changed since you signed in: sign in again");
  }
  return { user: session.user, via: "session", expiresAt: session.expiresAt };
}

/** The caller's identity; a 401 ApiError when there is none or it does not hold. */
export async function authenticate(request: Request, config: Config, nowS: number): Promise<Identity> {
  const header = request.headers.get("authorization");
  if (header !== null) {
    return fromBearer(config, header);
  }
  const token = readCookie(request.headers.get("cookie"), SESSION_COOKIE);
  if (token !== null && token !== "") {
    return fromCookie(config, token, nowS);
  }
  throw unauthenticated("sign in: send `Authorization: Bearer <API key>`, or open a session with POST /api/session");
}
