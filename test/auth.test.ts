/** Basic auth and forward auth on a running gateway: right, wrong and missing credentials; an auth service that lets through, redirects, refuses, hangs or is gone. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { origin, startGateway, type TestGateway } from "./harness.ts";
import { ask } from "./policy-client.ts";

/** seen records the fields the app got that auth may add or must remove. */
const seen: Record<string, string | null>[] = [];
let origins = 0;
const app = origin((req) => {
  origins++;
  const path = new URL(req.url).pathname;
  // Per-user answers that say nothing of privacy, and one that says it may be shared.
  if (path.startsWith("/cached/"))
    return new Response(`for ${req.headers.get("x-user")}`, { headers: { "cache-control": path.endsWith("/shared") ? "public, max-age=60" : "max-age=60" } });
  seen.push(Object.fromEntries(["authorization", "remote-user", "remote-groups", "cookie"].map((n) => [n, req.headers.get(n)])));
  return new Response(`app ${new URL(req.url).pathname}`);
});

/** asked records what the auth service got; the session cookie decides its answer. */
const asked: Record<string, string | null>[] = [];
const auth = origin((req) => {
  const h = req.headers;
  asked.push(
    Object.fromEntries(
      [
        "cookie",
        "authorization",
        "x-forwarded-method",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-uri",
        "x-forwarded-for",
        "x-original-url",
        "x-real-ip",
        "forwarded",
        "content-length",
      ].map((n) => [n, h.get(n)]),
    ),
  );
  const session = /session=(\w+)/.exec(h.get("cookie") ?? "")?.[1];
  if (session === "huge") return new Response("x".repeat(2 * 1024 * 1024), { status: 401 });
  if (session === "plain") return new Response(null, { status: 204, headers: { "remote-user": "carol" } });
  if (session === "good") return new Response(null, { status: 200, headers: { "remote-user": "bob", "remote-groups": "admins" } });
  if (session === "expired") {
    const headers = new Headers({ "www-authenticate": 'Bearer realm="sso"', "content-type": "application/json" });
    headers.append("set-cookie", "session=; Max-Age=0");
    headers.append("set-cookie", "flash=expired");
    return new Response('{"error":"session expired"}', { status: 401, headers });
  }
  return new Response(null, { status: 302, headers: { location: `https://sso.test/login?rd=${encodeURIComponent(h.get("x-forwarded-uri") ?? "")}` } });
});
/** hang never answers in time (a bounded 5 s). */
const hang = origin(async () => {
  await Bun.sleep(5000);
  return new Response("late");
});
const gone = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
const gonePort = gone.port;
gone.stop(true);

let gw: TestGateway;
let hash: string;
const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;

beforeAll(async () => {
  hash = await Bun.password.hash("correct horse", { algorithm: "argon2id", memoryCost: 19456, timeCost: 2 });
  const up = `upstreams = ["http://127.0.0.1:${app.port}"]`;
  gw = await startGateway({
    routes: {
      basic: `hosts = ["basic.test"]\n${up}\n[basic_auth]\nrealm = "family photos"\nusers = { alice = "${hash}" }\n[[paths]]\nprefix = "/public"\nbasic_auth = false\n[[paths]]\nprefix = "/pass"\n[paths.basic_auth]\nusers = { alice = "${hash}" }\nforward_authorization = true\n`,
      sso: `hosts = ["sso.test"]\n${up}\n[forward_auth]\nurl = "http://127.0.0.1:${auth.port}/verify"\ncopy_headers = ["Remote-User", "Remote-Groups"]\ntimeout = "2s"\n`,
      slow: `hosts = ["slow.test"]\n${up}\n[forward_auth]\nurl = "http://127.0.0.1:${hang.port}/verify"\ntimeout = "300ms"\n`,
      cached: `hosts = ["cached.test"]\n${up}\n[cache]\n[basic_auth]\nusers = { alice = "${hash}", bob = "${hash}" }\n[headers]\nrequest_set = { "X-User" = "{user}" }\n`,
      down: `hosts = ["down.test"]\n${up}\n[forward_auth]\nurl = "http://127.0.0.1:${gonePort}/verify"\n`,
    },
  });
});
afterAll(async () => {
  await gw?.cleanup();
  for (const s of [app, auth, hang]) s.stop(true);
});

test("basic auth: missing, malformed, unknown and wrong credentials get 401 with the realm; the right ones pass, without Authorization upstream", async () => {
  const tries: Record<string, string>[] = [
    {},
    { authorization: "Basic !!!" },
    { authorization: basic("mallory", "correct horse") },
    { authorization: basic("alice", "wrong") },
  ];
  for (const headers of tries) {
    const res = await ask(gw.httpPort, { host: "basic.test", headers });
    expect(res.status).toBe(401);
    expect(res.headers["www-authenticate"]).toBe('Basic realm="family photos", charset="UTF-8"');
  }
  const before = seen.length;
  const ok = await ask(gw.httpPort, { host: "basic.test", path: "/album", headers: { authorization: basic("alice", "correct horse") } });
  expect(ok.status).toBe(200);
  expect(seen.length).toBe(before + 1);
  expect(seen.at(-1)!.authorization).toBeNull();
  // A second request is let through from memory, as the first was.
  expect((await ask(gw.httpPort, { host: "basic.test", headers: { authorization: basic("alice", "correct horse") } })).status).toBe(200);
  expect(await gw.metric('gatehouse_access_denied_total{route="basic",reason="basic_auth"}')).toBe("4");
});

test("basic auth: the access log names the user, never a password or the Authorization field", async () => {
  const line = await gw.waitForLog((l) => l.msg === "access" && l.path === "/album");
  expect(line.user).toBe("alice");
  const all = gw.logs.map((l) => JSON.stringify(l)).join("\n");
  expect(all).not.toContain("correct horse");
  expect(all).not.toContain(Buffer.from("alice:correct horse").toString("base64"));
  expect(all).not.toContain(Buffer.from("alice:wrong").toString("base64"));
});

test("basic auth: a path can turn it off, or pass Authorization on to the upstream", async () => {
  expect((await ask(gw.httpPort, { host: "basic.test", path: "/public/x" })).status).toBe(200);
  const res = await ask(gw.httpPort, { host: "basic.test", path: "/pass/x", headers: { authorization: basic("alice", "correct horse") } });
  expect(res.status).toBe(200);
  expect(seen.at(-1)!.authorization).toBe(basic("alice", "correct horse"));
});

test("forward auth: a 2xx lets the request through with the named fields copied, and the client's own copies of them dropped", async () => {
  asked.length = 0;
  const res = await ask(gw.httpPort, {
    from: "127.0.0.2",
    host: "sso.test",
    path: "/admin/?q=1",
    method: "POST",
    headers: {
      cookie: "session=good; theme=dark",
      "remote-user": "mallory",
      "content-length": "0",
      authorization: "Bearer t0k",
      // Fields through which a client could make the service judge another request than its own.
      "x-original-url": "https://public.example/",
      "x-real-ip": "10.0.0.1",
      forwarded: "for=10.0.0.1",
      "x-forwarded-uri": "/public",
    },
  });
  expect(res.status).toBe(200);
  expect(asked[0]).toEqual({
    cookie: "session=good; theme=dark",
    authorization: "Bearer t0k",
    "x-forwarded-method": "POST",
    "x-forwarded-proto": "http",
    "x-forwarded-host": "sso.test",
    "x-forwarded-uri": "/admin/?q=1",
    "x-forwarded-for": "127.0.0.2",
    "x-original-url": "http://sso.test/admin/?q=1",
    "x-real-ip": "127.0.0.2",
    forwarded: null,
    "content-length": null,
  });
  expect(seen.at(-1)).toMatchObject({ "remote-user": "bob", "remote-groups": "admins", cookie: "session=good; theme=dark" });
  // An answer without Remote-Groups: the client's own Remote-Groups does not get through either.
  expect((await ask(gw.httpPort, { host: "sso.test", headers: { cookie: "session=plain", "remote-groups": "root" } })).status).toBe(200);
  expect(seen.at(-1)).toMatchObject({ "remote-user": "carol", "remote-groups": null });
});

test("forward auth: without a 2xx the client gets the auth service's own answer (its 302 to the login page, its 401 and cookies); nothing is forwarded", async () => {
  const before = seen.length;
  const login = await ask(gw.httpPort, { host: "sso.test", path: "/photos/1", headers: { "remote-user": "mallory" } });
  expect(login.status).toBe(302);
  expect(login.headers.location).toBe("https://sso.test/login?rd=%2Fphotos%2F1");
  const expired = await ask(gw.httpPort, { host: "sso.test", headers: { cookie: "session=expired" } });
  expect(expired.status).toBe(401);
  expect(expired.body).toBe('{"error":"session expired"}');
  expect(expired.headers["www-authenticate"]).toBe('Bearer realm="sso"');
  expect(expired.headers["set-cookie"]).toBe("session=; Max-Age=0\nflash=expired");
  // A refusal larger than 1 MiB is not read whole, nor passed on.
  expect((await ask(gw.httpPort, { host: "sso.test", headers: { cookie: "session=huge" } })).status).toBe(502);
  expect(seen.length).toBe(before);
});

test("forward auth fails closed: a service that hangs is 504 after its timeout, one that is gone 503, both logged", async () => {
  const t0 = performance.now();
  const slow = await ask(gw.httpPort, { host: "slow.test" });
  expect(slow.status).toBe(504);
  expect(performance.now() - t0).toBeLessThan(2000);
  expect((await ask(gw.httpPort, { host: "down.test" })).status).toBe(503);
  await gw.waitForLog((l) => l.msg === "forward auth failed" && l.error === "timeout");
  await gw.waitForLog((l) => l.msg === "forward auth failed" && String(l.url).includes(String(gonePort)));
});

test("a response to a request that auth let through is stored only when it says it may be shared (RFC 9111 §3.5), though Authorization was removed", async () => {
  const as = (user: string, path: string) => ask(gw.httpPort, { host: "cached.test", path, headers: { authorization: basic(user, "correct horse") } });
  const before = origins;
  expect((await as("alice", "/cached/mine")).body).toBe("for alice");
  expect((await as("bob", "/cached/mine")).body).toBe("for bob");
  expect(origins).toBe(before + 2);
  await as("alice", "/cached/shared");
  const shared = await as("bob", "/cached/shared");
  expect(shared.body).toBe("for alice");
  expect(origins).toBe(before + 3);
});
