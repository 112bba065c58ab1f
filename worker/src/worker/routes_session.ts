/** POST / GET / DELETE /api/session: open, read and close a signed session cookie. */
import { userForKey, unauthenticated } from "./auth.js";
import type { Context } from "./context.js";
import { ApiError, json, noContent, readJsonObject, rejectUnknownFields } from "./http.js";
import { clearedSessionCookie, keyFingerprint, sessionCookie, signSession } from "./session.js";

function isoSeconds(unixS: number | null): string | null {
  return unixS === null ? null : new Date(unixS * 1000).toISOString();
}

export async function openSession(context: Context): Promise<Response> {
  const body = await readJsonObject(context.request);
  rejectUnknownFields(body, ["key"]);
  const key = body["key"];
  if (typeof key !== "string" || key === "") {
    throw new ApiError(400, "invalid_argument", "key is missing: send your API key as {\"key\": \"...\"}");
  }
  const user = await userForKey(context.config.keys, key);
  if (user === null) {
    throw unauthenticated("this API key is not known: check it, or ask for one (SWARM_API_KEYS)");
  }
  const { sessionSecret, sessionTtlS } = context.config;
  const expiresAt = context.nowS() + sessionTtlS;
  const token = await signSession(sessionSecret, {
    user,
    expiresAt,
    fingerprint: await keyFingerprint(sessionSecret, key),
  });
  return json(
    { user, via: "session", expiresAt: isoSeconds(expiresAt) },
    200,
    { "set-cookie": sessionCookie(token, sessionTtlS, context.secure) },
  );
}

export async function readSession(context: Context): Promise<Response> {
  const identity = await context.identity();
  return json({ user: identity.user, via: identity.via, expiresAt: isoSeconds(identity.expiresAt) });
}

export function closeSession(context: Context): Promise<Response> {
  return Promise.resolve(noContent({ "set-cookie": clearedSessionCookie(context.secure) }));
}
