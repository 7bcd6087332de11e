/** Rate limits, IP rules, header rules, error pages and maintenance on a running gateway, judged by the client address (peer, PROXY preamble, trusted X-Forwarded-For). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { origin, startGateway, type TestGateway } from "./harness.ts";
import { ask } from "./policy-client.ts";

/** seen records what the origin got: path and the fields the tests look at. */
const seen: { path: string; headers: Record<string, string | null> }[] = [];
const app = origin((req) => {
  const url = new URL(req.url);
  const pick = (n: string) => req.headers.get(n);
  seen.push({ path: url.pathname, headers: Object.fromEntries(["x-env", "x-tag", "x-debug", "x-client", "x-forwarded-for"].map((n) => [n, pick(n)])) });
  if (url.pathname.endsWith("/missing")) return new Response("the app's own 404", { status: 404 });
  return new Response(`app ${url.pathname}`, { headers: { server: "django", "x-from-app": "1" } });
});
/** deadPort had a listener once: nothing accepts there now (a 502). */
const dead = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
const deadPort = dead.port;
dead.stop(true);

const up = `upstreams = ["http://127.0.0.1:${app.port}"]`;
const routes = {
  limited: `hosts = ["limited.test"]\n${up}\n[[rate_limit]]\nkey = "client"\nrate = "1/h"\nburst = 5\n[[rate_limit]]\nkey = "route"\nrate = "1/h"\nburst = 8\n`,
  keyed: `hosts = ["keyed.test"]\n${up}\n[[rate_limit]]\nkey = "header:X-Api-Key"\nrate = "1/h"\nburst = 2\n`,
  allow: `hosts = ["allow.test"]\n${up}\n[access]\nallow = ["127.0.0.2", "203.0.113.0/24", "fd00::/8"]\ndeny = ["203.0.113.66"]\n`,
  // A [[paths]] entry inherits the site's rules unless it sets its own: /open turns them off, /api adds a limit.
  mixed: `hosts = ["mixed.test"]\n${up}\n[access]\ndeny = ["127.0.0.4"]\n[[paths]]\nprefix = "/open"\naccess = false\n[[paths]]\nprefix = "/api"\n[[paths.rate_limit]]\nrate = "1/h"\nburst = 1\n`,
  // A site-wide limit inherited by its [[paths]]: one bucket for the site, whichever prefix.
  site: `hosts = ["site.test"]\n${up}\n[[rate_limit]]\nkey = "route"\nrate = "1/h"\nburst = 3\n[[paths]]\nprefix = "/a"\n[paths.headers]\nresponse_set = { "X-Area" = "a" }\n[[paths]]\nprefix = "/b"\n[paths.headers]\nresponse_set = { "X-Area" = "b" }\n`,
  headers: `hosts = ["headers.test"]\n${up}\n[headers]\nrequest_set = { "X-Env" = "prod", "X-Client" = "{client} {scheme} {host}" }\nrequest_add = { "X-Tag" = "edge" }\nrequest_remove = ["X-Debug"]\nresponse_set = { "X-Content-Type-Options" = "nosniff" }\nresponse_add = { "Link" = "</app.css>; rel=preload" }\nresponse_remove = ["Server"]\n[[paths]]\nprefix = "/down"\nupstreams = ["http://127.0.0.1:${deadPort}"]\n`,
};
/** Sites with pages, written once the pages exist (a page that cannot be read is a config error). */
const later = {
  // No action at "/": a path outside its [[paths]] is the gateway's own 404.
  pages: `hosts = ["pages.test"]\n[error_pages]\n404 = "errors/404.html"\n502 = "errors/502.html"\n429 = "errors/429.html"\n[[paths]]\nprefix = "/app"\n${up}\n[[paths]]\nprefix = "/down"\nupstreams = ["http://127.0.0.1:${deadPort}"]\n[[paths]]\nprefix = "/busy"\n${up}\n[[paths.rate_limit]]\nrate = "1/h"\nburst = 1\n`,
  closed: `hosts = ["closed.test"]\n${up}\nmaintenance = true\nmaintenance_retry_after = "2m"\n[error_pages]\n503 = "errors/503.html"\n`,
};

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({
    routes,
    listenExtra: `proxy_protocol = ["127.0.0.5/32"]`,
    extra: `[proxy]\ntrusted_proxies = ["127.0.0.6"]\n[admin]\nallow = ["127.0.0.1"]\n`,
    top: "",
  });
  // Pages are read when the config loads: write them, then reload.
  mkdirSync(join(gw.dir, "errors"), { recursive: true });
  writeFileSync(join(gw.dir, "errors/404.html"), "<h1>{status} {reason}</h1><p>ref {request_id}</p>");
  writeFileSync(join(gw.dir, "errors/502.html"), "<h1>our app is restarting ({status})</h1>");
  writeFileSync(join(gw.dir, "errors/429.html"), "<h1>slow down</h1>");
  writeFileSync(join(gw.dir, "errors/503.html"), "<h1>back soon</h1><p>{request_id}</p>");
  for (const [name, text] of Object.entries(later)) gw.writeRoute(name, text);
  const r = await gw.reload();
  if (r.msg !== "config reloaded") throw new Error(JSON.stringify(r));
});
afterAll(async () => {
  await gw?.cleanup();
  app.stop(true);
});

const statuses = async (n: number, opts: Parameters<typeof ask>[1]) => {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await ask(gw.httpPort, opts)).status);
  return out;
};
const count = (list: number[], s: number) => list.filter((x) => x === s).length;

test("a burst from two client addresses: each gets its own bucket, the route's bucket caps both, a refusal spends no token", async () => {
  const a = await statuses(6, { from: "127.0.0.2", host: "limited.test" });
  // 5 from the client's burst; the 6th is refused by the client's bucket and must not spend the route's.
  expect(a).toEqual([200, 200, 200, 200, 200, 429]);
  const b = await statuses(6, { from: "127.0.0.3", host: "limited.test" });
  // The route's bucket (8) has 3 left for the second client, which has 5 of its own.
  expect(count(b, 200)).toBe(3);
  expect(count(b, 429)).toBe(3);
  const refused = await ask(gw.httpPort, { from: "127.0.0.3", host: "limited.test" });
  expect(refused.status).toBe(429);
  // 1 token an hour: the next one is a whole hour (3600 s) away at most, and at least a second.
  const wait = Number(refused.headers["retry-after"]);
  expect(wait).toBeGreaterThanOrEqual(1);
  expect(wait).toBeLessThanOrEqual(3600);
  expect(refused.headers["ratelimit-policy"]).toBe('"client";q=1;w=3600, "route";q=1;w=3600');
  expect(refused.headers.ratelimit).toMatch(/^"route";r=0;t=\d+$/);
  expect(refused.headers["x-request-id"]).toBeTruthy();
  expect(await gw.metric('gatehouse_rate_limited_total{route="limited"}')).toBe("5");
});

test("a limit keyed by a field counts each value apart; requests without it fall back to the client's address, which a field cannot name", async () => {
  expect(await statuses(3, { host: "keyed.test", headers: { "x-api-key": "k1" } })).toEqual([200, 200, 429]);
  expect(await statuses(1, { host: "keyed.test", headers: { "x-api-key": "k2" } })).toEqual([200]);
  // The field naming the address of 127.0.0.7 spends the field's bucket, not the address's.
  expect(await statuses(2, { host: "keyed.test", headers: { "x-api-key": "127.0.0.7" } })).toEqual([200, 200]);
  expect(await statuses(3, { from: "127.0.0.7", host: "keyed.test" })).toEqual([200, 200, 429]);
});

test("limits a [[paths]] entry inherits are the site's: its prefixes share one bucket", async () => {
  const got: number[] = [];
  for (const path of ["/", "/a/1", "/b/1", "/a/2", "/b/2", "/"]) got.push((await ask(gw.httpPort, { host: "site.test", path })).status);
  expect(got).toEqual([200, 200, 200, 429, 429, 429]);
});

test("IP rules: an allowed address passes, others get 403; deny wins inside an allowed range", async () => {
  expect((await ask(gw.httpPort, { from: "127.0.0.2", host: "allow.test" })).status).toBe(200);
  const refused = await ask(gw.httpPort, { from: "127.0.0.1", host: "allow.test" });
  expect(refused.status).toBe(403);
  expect(refused.body).toContain("403 Forbidden");
  expect(await gw.metric('gatehouse_access_denied_total{route="allow",reason="ip"}')).toBe("1");
});

test("IP rules and rate limits judge the client a PROXY preamble names, and the one a trusted proxy's X-Forwarded-For names", async () => {
  const pp = (ip: string) => `PROXY TCP4 ${ip} 127.0.0.1 40000 80\r\n`;
  expect((await ask(gw.httpPort, { from: "127.0.0.5", host: "allow.test", preamble: pp("203.0.113.9") })).status).toBe(200);
  expect((await ask(gw.httpPort, { from: "127.0.0.5", host: "allow.test", preamble: pp("203.0.113.66") })).status).toBe(403);
  expect((await ask(gw.httpPort, { from: "127.0.0.5", host: "allow.test", preamble: pp("198.51.100.1") })).status).toBe(403);
  // Two clients behind one balancer: a bucket each.
  expect(await statuses(1, { from: "127.0.0.5", host: "mixed.test", path: "/api/x", preamble: pp("198.51.100.2") })).toEqual([200]);
  expect(await statuses(1, { from: "127.0.0.5", host: "mixed.test", path: "/api/x", preamble: pp("198.51.100.2") })).toEqual([429]);
  expect(await statuses(1, { from: "127.0.0.5", host: "mixed.test", path: "/api/x", preamble: pp("198.51.100.3") })).toEqual([200]);
  // 127.0.0.6 is a trusted proxy: the address it appended is judged. An untrusted peer's X-Forwarded-For is not.
  const viaProxy = (xff: string, from = "127.0.0.6") => ask(gw.httpPort, { from, host: "allow.test", headers: { "x-forwarded-for": xff } });
  expect((await viaProxy("198.51.100.1, 203.0.113.9")).status).toBe(200);
  expect((await viaProxy("203.0.113.9, 198.51.100.1")).status).toBe(403);
  expect((await viaProxy("203.0.113.9", "127.0.0.3")).status).toBe(403);
  // The access log names the judged client, and the proxy it came through.
  const line = await gw.waitForLog((l) => l.msg === "access" && l.host === "allow.test" && l.peer === "127.0.0.6" && l.status === 403);
  expect(line.client).toBe("198.51.100.1");
});

test("a [[paths]] entry inherits the site's rules, turns them off with `access = false`, or sets its own", async () => {
  expect((await ask(gw.httpPort, { from: "127.0.0.4", host: "mixed.test" })).status).toBe(403);
  expect((await ask(gw.httpPort, { from: "127.0.0.4", host: "mixed.test", path: "/api/y" })).status).toBe(403);
  expect((await ask(gw.httpPort, { from: "127.0.0.4", host: "mixed.test", path: "/open/z" })).status).toBe(200);
  expect((await ask(gw.httpPort, { from: "127.0.0.1", host: "mixed.test", path: "/" })).status).toBe(200);
});

test("a path is judged in normal form, and forwarded so: no spelling of a path escapes the rules of its prefix", async () => {
  const from = "127.0.0.4";
  for (const path of ["/open/../x", "/open/%2e%2e/x", "/open/%2E./x", "/./x", "//x", "/open/./../x"])
    expect([path, (await ask(gw.httpPort, { from, host: "mixed.test", path })).status]).toEqual([path, 403]);
  seen.length = 0;
  expect((await ask(gw.httpPort, { from, host: "mixed.test", path: "/%6fpen//a/./b/../c?x=%2e%2e" })).status).toBe(200);
  expect(seen.at(-1)!.path).toBe("/open/a/c");
  // An encoded slash would be decoded by some upstreams into another path than the one judged: refused.
  const slash = await ask(gw.httpPort, { from: "127.0.0.1", host: "mixed.test", path: "/open%2fx" });
  expect(slash.status).toBe(400);
});

test("header rules edit the request before it is forwarded and the response before the client gets it, the gateway's own errors included", async () => {
  seen.length = 0;
  const res = await ask(gw.httpPort, { from: "127.0.0.2", host: "headers.test", path: "/h", headers: { "x-debug": "1", "x-env": "dev", "x-tag": "mine" } });
  expect(res.status).toBe(200);
  expect(seen.at(-1)!.headers).toMatchObject({ "x-env": "prod", "x-tag": "mine, edge", "x-debug": null, "x-client": "127.0.0.2 http headers.test" });
  expect(res.headers["x-content-type-options"]).toBe("nosniff");
  expect(res.headers.link).toBe("</app.css>; rel=preload");
  expect(res.headers.server).toBeUndefined();
  expect(res.headers["x-from-app"]).toBe("1");
  const down = await ask(gw.httpPort, { host: "headers.test", path: "/down/x" });
  expect(down.status).toBe(502);
  expect(down.headers["x-content-type-options"]).toBe("nosniff");
});

test("error pages replace the gateway's own errors (unrouted 404, 502, 429), keep their fields, and leave an upstream's own errors alone", async () => {
  const notFound = await ask(gw.httpPort, { host: "pages.test", path: "/nowhere", headers: { "x-request-id": "req-404-abc" } });
  expect(notFound.status).toBe(404);
  expect(notFound.body).toBe("<h1>404 Not Found</h1><p>ref req-404-abc</p>");
  const appOwn = await ask(gw.httpPort, { host: "pages.test", path: "/app/missing" });
  expect(appOwn.status).toBe(404);
  expect(appOwn.body).toBe("the app's own 404");
  const down = await ask(gw.httpPort, { host: "pages.test", path: "/down/x" });
  expect(down.status).toBe(502);
  expect(down.headers["content-type"]).toBe("text/html; charset=utf-8");
  expect(down.body).toBe("<h1>our app is restarting (502)</h1>");
  expect(Number(down.headers["content-length"])).toBe(down.body.length);
  await ask(gw.httpPort, { host: "pages.test", path: "/busy" });
  const busy = await ask(gw.httpPort, { host: "pages.test", path: "/busy" });
  expect(busy.status).toBe(429);
  expect(busy.body).toBe("<h1>slow down</h1>");
  expect(busy.headers["retry-after"]).toBeTruthy();
});

test("maintenance answers 503 with the page and Retry-After, and no request reaches the upstream", async () => {
  const before = seen.length;
  const res = await ask(gw.httpPort, { host: "closed.test", path: "/x", headers: { "x-request-id": "maint-123" } });
  expect(res.status).toBe(503);
  expect(res.headers["retry-after"]).toBe("120");
  expect(res.body).toBe("<h1>back soon</h1><p>maint-123</p>");
  expect(seen.length).toBe(before);
});

test("[admin] allow: the admin listener answers listed addresses and refuses others with 403", async () => {
  expect((await fetch(`${gw.admin}/healthz`)).status).toBe(200);
  const other = await ask(gw.adminPort, { from: "127.0.0.3", host: "admin", path: "/metrics" });
  expect(other.status).toBe(403);
  expect(other.body).not.toContain("gatehouse_");
});

test("a reload keeps the buckets of unchanged limits: what a client spent stays spent", async () => {
  expect((await ask(gw.httpPort, { from: "127.0.0.2", host: "limited.test" })).status).toBe(429);
  expect((await gw.reload()).msg).toBe("config reloaded");
  expect((await ask(gw.httpPort, { from: "127.0.0.2", host: "limited.test" })).status).toBe(429);
});
