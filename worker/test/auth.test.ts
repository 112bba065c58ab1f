import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { userForKey } from "../src/worker/auth.js";
import { parseApiKeys, readConfig } from "../src/worker/config.js";
import { ApiError } from "../src/worker/http.js";
import { ENV, SECRET, bearer, errorOf, harness, postJson } from "./harness.js";

describe("SWARM_API_KEYS", () => {
  it("parses user:key pairs; a key may hold colons", () => {
    const keys = parseApiKeys(" alice:k1 , bob:k:2,");
    assert.deepEqual([...keys], [["alice", "k1"], ["bob", "k:2"]]);
  });

  for (const [value, fragment] of [
    ["", "is not set"],
    ["alice", "entry 1 is not user:key"],
    ["alice:", "entry 1 is not user:key"],
    ["al ice:k", "entry 1 is not user:key"],
    ["alice:k1,alice:k2", "names user alice twice"],
    ["alice:k1,bob:k1", "the same key"],
  ] as const) {
    it(`refuses ${JSON.stringify(value)} without showing a key`, () => {
      assert.throws(
        () => parseApiKeys(value),
        (error: unknown) =>
          error instanceof ApiError &&
          error.status === 500 &&
          error.message.includes(fragment) &&
          !error.message.includes("k1") &&
          !error.message.includes("k2"),
      );
    });
  }

  it("finds the user of a key, and nobody for a near miss", async () => {
    const keys = parseApiKeys("alice:alice-key,bob:bob-key");
    assert.equal(await userForKey(keys, "bob-key"), "bob");
    assert.equal(await userForKey(keys, "bob-ke"), null);
    assert.equal(await userForKey(keys, "bob-key "), null);
  });
});

describe("config", () => {
  it("names the variable that is wrong", () => {
    assert.throws(() => readConfig({ ...ENV, SESSION_SECRET: "short" }), /SESSION_SECRET/);
    assert.throws(() => readConfig({ ...ENV, GATEWAY_URL: "127.0.0.1:8080" }), /GATEWAY_URL/);
    assert.throws(() => readConfig({ ...ENV, CHAT_MODEL: "" }), /CHAT_MODEL/);
    assert.throws(() => readConfig({ ...ENV, FOLLOW_INTERVAL_MS: "5" }), /FOLLOW_INTERVAL_MS/);
  });

  it("a misconfigured Worker answers 500 saying what to set", async () => {
    const h = harness({ SWARM_API_KEYS: "" });
    const error = await errorOf(await h.fetch("/api/runs", { headers: bearer() }));
    assert.deepEqual([error.status, error.code], [500, "misconfigured"]);
    assert.match(error.message, /SWARM_API_KEYS/);
  });
});

describe("authentication", () => {
  it("accepts a known key and refuses others with 401", async () => {
    const h = harness();
    const ok = await h.fetch("/api/session", { headers: bearer("bob-key-456") });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { user: "bob", via: "key", expiresAt: null });
    for (const header of ["Bearer wrong", "Basic YWxpY2U6eA==", "Bearer", "alice-key-123"]) {
      const refused = await h.fetch("/api/session", { headers: { authorization: header } });
      assert.equal(refused.status, 401, header);
      assert.equal(refused.headers.get("www-authenticate"), 'Bearer realm="swarm"');
    }
  });

  it("opens a session with a key; the cookie then authenticates", async () => {
    const h = harness();
    const opened = await h.fetch("/api/session", postJson({ key: "alice-key-123" }, {}));
    assert.equal(opened.status, 200);
    const body = (await opened.json()) as { user: string; expiresAt: string };
    assert.equal(body.user, "alice");
    assert.equal(body.expiresAt, new Date(h.clock + 12 * 3600 * 1000).toISOString());
    const cookie = opened.headers.get("set-cookie") ?? "";
    assert.match(cookie, /^swarm_session=v1\.[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/);
    const pair = cookie.split(";")[0] ?? "";
    const who = await h.fetch("/api/session", { headers: { cookie: pair } });
    assert.deepEqual(await who.json(), { user: "alice", via: "session", expiresAt: body.expiresAt });
    const runs = await h.fetch("/api/runs", { headers: { cookie: pair } });
    assert.equal(runs.status, 200);
    assert.deepEqual(h.seen.users, ["alice"]);
  });

  it("a wrong key opens no session", async () => {
    const h = harness();
    const refused = await h.fetch("/api/session", postJson({ key: "nope" }, {}));
    assert.equal(refused.status, 401);
    assert.equal(refused.headers.get("set-cookie"), null);
    assert.equal((await errorOf(await h.fetch("/api/session", postJson({}, {})))).status, 400);
  });

  it("a session ends at its expiry, when its key changes, and on sign-out", async () => {
    const h = harness();
    const opened = await h.fetch("/api/session", postJson({ key: "alice-key-123" }, {}));
    const pair = (opened.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    const cookie = { headers: { cookie: pair } };
    h.clock += 12 * 3600 * 1000;
    const expired = await errorOf(await h.fetch("/api/session", cookie));
    assert.equal(expired.status, 401);
    assert.match(expired.message, /expired/);

    const rotated = harness({ SWARM_API_KEYS: "alice:a-new-key-000,bob:bob-key-456" });
    const changed = await errorOf(await rotated.fetch("/api/session", cookie));
    assert.equal(changed.status, 401);
    assert.match(changed.message, /key has changed/);

    const resecret = harness({ SESSION_SECRET: `${SECRET}-rotated` });
    assert.equal((await resecret.fetch("/api/session", cookie)).status, 401);

    const out = await harness().fetch("/api/session", { method: "DELETE" });
    assert.equal(out.status, 204);
    assert.match(out.headers.get("set-cookie") ?? "", /^swarm_session=; .*Max-Age=0/);
  });

  it("a tampered cookie is refused", async () => {
    const h = harness();
    const opened = await h.fetch("/api/session", postJson({ key: "bob-key-456" }, {}));
    const token = ((opened.headers.get("set-cookie") ?? "").split(";")[0] ?? "").slice("swarm_session=".length);
    const [version, , signature] = token.split(".");
    const payload = Buffer.from(JSON.stringify({ u: "alice", exp: 9_999_999_999, k: "x" })).toString("base64url");
    const forged = `swarm_session=${version ?? ""}.${payload}.${signature ?? ""}`;
    const refused = await errorOf(await h.fetch("/api/session", { headers: { cookie: forged } }));
    assert.deepEqual([refused.status, refused.code], [401, "unauthenticated"]);
  });

  it("Secure cookies over https", async () => {
    const h = harness();
    const opened = await h.fetch("https://swarm.example/api/session", postJson({ key: "bob-key-456" }, {}));
    assert.match(opened.headers.get("set-cookie") ?? "", /; Secure$/);
  });
});
