/**
 * Session tokens: "v1.<payload>.<signature>", base64url, the payload {u: user, exp: unix seconds,
 * k: key fingerprint} signed with HMAC-SHA256 under SESSION_SECRET. The fingerprint ties a
 * session to the key it was opened with, so rotating a user's key in SWARM_API_KEYS ends their
 * sessions too; it is an HMAC under the secret, so the cookie says nothing about the key.
 */

const encoder = new TextEncoder();

export function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) {
    binary += String.fromCharCode(byte);
  }
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromBase64url(text: string): Uint8Array<ArrayBuffer> | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) {
    return null;
  }
  try {
    const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(binary, (char) => char.charCodeAt(0));
  } catch {
    return null;
  }
}

async function hmacKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]);
}

export async function hmac(secret: string, message: string): Promise<Uint8Array> {
  const signature = await crypto.subtle.sign("HMAC", await hmacKey(secret), encoder.encode(message));
  return new Uint8Array(signature);
}

/** Equal-length byte strings compared in time that does not depend on where they differ. */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) {
    return false;
  }
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  }
  return diff === 0;
}

export async function keyFingerprint(secret: string, key: string): Promise<string> {
  return base64url((await hmac(secret, `key:${key}`)).slice(0, 12));
}

export interface Session {
  readonly user: string;
  /** Unix seconds. */
  readonly expiresAt: number;
  readonly fingerprint: string;
}

export async function signSession(secret: string, session: Session): Promise<string> {
  const payload = base64url(
    encoder.encode(JSON.stringify({ u: session.user, exp: session.expiresAt, k: session.fingerprint })),
  );
  const signature = base64url(await hmac(secret, `v1.${payload}`));
  return `v1.${payload}.${signature}`;
}

/** Why a token was refused, for the 401's message. */
export type Refusal = "malformed" | "bad signature" | "expired";

/** The session a token carries, or why it is refused; checks signature before anything else. */
export async function verifySession(secret: string, token: string, nowS: number): Promise<Session | Refusal> {
  const parts = token.split(".");
  const [version, payload, signature] = parts;
  if (parts.length !== 3 || version !== "v1" || payload === undefined || signature === undefined) {
    return "malformed";
  }
  const given = fromBase64url(signature);
  if (given === null) {
    return "malformed";
  }
  const ok = await crypto.subtle.verify("HMAC", await hmacKey(secret), given, encoder.encode(`v1.${payload}`));
  if (!ok) {
    return "bad signature";
  }
  const bytes = fromBase64url(payload);
  let body: unknown;
  try {
    body = bytes === null ? null : JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return "malformed";
  }
  if (typeof body !== "object" || body === null) {
    return "malformed";
  }
  const { u, exp, k } = body as Record<string, unknown>;
  if (typeof u !== "string" || typeof exp !== "number" || typeof k !== "string") {
    return "malformed";
  }
  if (exp <= nowS) {
    return "expired";
  }
  return { user: u, expiresAt: exp, fingerprint: k };
}

export const SESSION_COOKIE = "swarm_session";

export function sessionCookie(token: string, maxAgeS: number, secure: boolean): string {
  const attributes = [`${SESSION_COOKIE}=${token}`, "Path=/", "HttpOnly", "SameSite=Strict", `Max-Age=${maxAgeS}`];
  if (secure) {
    attributes.push("Secure");
  }
  return attributes.join("; ");
}

export function clearedSessionCookie(secure: boolean): string {
  return sessionCookie("", 0, secure);
}

/** The value of one cookie in a Cookie header. */
export function readCookie(header: string | null, name: string): string | null {
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq !== -1 && part.slice(0, eq).trim() === name) {
      return part.slice(eq + 1).trim();
    }
  }
  return null;
}
