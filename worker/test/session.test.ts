import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  base64url,
  fromBase64url,
  readCookie,
  sessionCookie,
  signSession,
  timingSafeEqual,
  verifySession,
} from "../src/worker/session.js";

const SECRET = "a-session-secret-of-some-length";
const NOW = 1_800_000_000;

describe("session tokens", () => {
  const session = { user: "alice", expiresAt: NOW + 60, fingerprint: "fp" };

  it("verify what they sign", async () => {
    const token = await signSession(SECRET, session);
    assert.match(token, /^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    assert.deepEqual(await verifySession(SECRET, token, NOW), session);
  });

  it("expire at their expiry", async () => {
    const token = await signSession(SECRET, session);
    assert.equal(await verifySession(SECRET, token, NOW + 60), "expired");
    assert.equal(await verifySession(SECRET, token, NOW + 3600), "expired");
  });

  it("refuse a changed payload, even with a later expiry", async () => {
    const token = await signSession(SECRET, session);
    const [, , signature] = token.split(".");
    const forged = base64url(new TextEncoder().encode(JSON.stringify({ u: "bob", exp: NOW + 9999, k: "fp" })));
    assert.equal(await verifySession(SECRET, `v1.${forged}.${signature ?? ""}`, NOW), "bad signature");
  });

  it("refuse a changed signature and another secret", async () => {
    const token = await signSession(SECRET, session);
    const flipped = token.slice(0, -2) + (token.endsWith("AA") ? "BB" : "AA");
    assert.equal(await verifySession(SECRET, flipped, NOW), "bad signature");
    assert.equal(await verifySession("another-secret-of-some-length", token, NOW), "bad signature");
  });

  it("refuse what is not a token", async () => {
    for (const token of ["", "v1", "v1.a", "v2.a.b", "v1.a.b.c", "v1.a.!!"]) {
      assert.equal(await verifySession(SECRET, token, NOW), "malformed", token);
    }
  });

  it("refuse a signed payload of the wrong shape", async () => {
    const token = await signSession(SECRET, session);
    const [, , signature] = token.split(".");
    assert.ok(signature !== undefined);
    // Signing "v1.<payload>" by hand, as signSession does, for a payload without a user.
    const { hmac } = await import("../src/worker/session.js");
    const payload = base64url(new TextEncoder().encode(JSON.stringify({ exp: NOW + 60 })));
    const signed = base64url(await hmac(SECRET, `v1.${payload}`));
    assert.equal(await verifySession(SECRET, `v1.${payload}.${signed}`, NOW), "malformed");
  });
});

describe("helpers", () => {
  it("base64url round-trips bytes", () => {
    const bytes = Uint8Array.from([0, 1, 250, 251, 252, 253, 254, 255]);
    assert.deepEqual(fromBase64url(base64url(bytes)), bytes);
    assert.equal(fromBase64url("a+b"), null);
  });

  it("timingSafeEqual compares bytes", () => {
    assert.equal(timingSafeEqual(Uint8Array.from([1, 2]), Uint8Array.from([1, 2])), true);
    assert.equal(timingSafeEqual(Uint8Array.from([1, 2]), Uint8Array.from([1, 3])), false);
    assert.equal(timingSafeEqual(Uint8Array.from([1, 2]), Uint8Array.from([1])), false);
  });

  it("the cookie is HttpOnly, SameSite=Strict, Secure only over https", () => {
    const plain = sessionCookie("tok", 60, false);
    assert.equal(plain, "swarm_session=tok; Path=/; HttpOnly; SameSite=Strict; Max-Age=60");
    assert.match(sessionCookie("tok", 60, true), /; Secure$/);
  });

  it("readCookie finds one cookie among several", () => {
    assert.equal(readCookie("a=1; swarm_session=xyz; b=2", "swarm_session"), "xyz");
    assert.equal(readCookie("a=1", "swarm_session"), null);
    assert.equal(readCookie(null, "swarm_session"), null);
  });
});
