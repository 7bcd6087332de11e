/** Upstream resilience through the real gateway: active health checks, the all-unhealthy fallback, passive ejection, retries of idempotent requests, the /upstreams admin view. */
import { afterAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, origin, startGateway, type TestGateway } from "./harness.ts";

/** backend is an origin whose health answer and request count the test controls. */
function backend(name: string) {
  const state = { healthy: true, hits: 0 };
  const server = origin((req) => {
    if (new URL(req.url).pathname === "/healthz") return new Response(state.healthy ? "ok" : "sick", { status: state.healthy ? 200 : 500 });
    state.hits++;
    return new Response(name);
  });
  return { state, server, url: `http://127.0.0.1:${server.port}` };
}

const a = backend("a");
const b = backend("b");
const gateways: TestGateway[] = [];
afterAll(async () => {
  for (const g of gateways) await g.cleanup();
  a.server.stop(true);
  b.server.stop(true);
});

async function start(routes: Record<string, string>): Promise<TestGateway> {
  const g = await startGateway({ routes });
  gateways.push(g);
  return g;
}

const HEALTH = `[health]\npath = "/healthz"\ninterval = "200ms"\ntimeout = "100ms"\njitter = "20ms"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n`;

async function bodies(g: TestGateway, host: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await (await g.request(host)).text());
  return out;
}

async function upstreams(
  g: TestGateway,
): Promise<{ route: string; upstream: string; healthy: boolean; available: boolean; last_check: { ok: boolean } | null }[]> {
  return (await fetch(`${g.admin}/upstreams`)).json() as never;
}

test("an endpoint whose checks fail gets no requests until they pass again; the metric and /upstreams say so", async () => {
  const g = await start({ site: `hosts = ["h.test"]\nupstreams = ["${a.url}", "${b.url}"]\n${HEALTH}` });
  expect(new Set(await bodies(g, "h.test", 4))).toEqual(new Set(["a", "b"]));
  b.state.healthy = false;
  await g.waitForLog((l) => l.msg.startsWith("upstream endpoint unhealthy") && l.upstream === b.url, 3000);
  expect(new Set(await bodies(g, "h.test", 6))).toEqual(new Set(["a"]));
  const m = await (await fetch(`${g.admin}/metrics`)).text();
  expect(m).toContain(`gatehouse_upstream_healthy{route="site",upstream="${b.url}"} 0`);
  const view = await upstreams(g);
  expect(view.find((u) => u.upstream === b.url)).toMatchObject({ route: "site", healthy: false, available: false, last_check: { ok: false } });
  b.state.healthy = true;
  await g.waitForLog((l) => l.msg === "upstream endpoint healthy again" && l.upstream === b.url, 3000);
  expect(new Set(await bodies(g, "h.test", 4))).toEqual(new Set(["a", "b"]));
});

test('when every endpoint fails its checks: all_unhealthy = "try" still sends requests, "fail" answers 503', async () => {
  a.state.healthy = false;
  b.state.healthy = false;
  try {
    const g = await start({
      tryit: `hosts = ["try.test"]\nupstreams = ["${a.url}"]\n${HEALTH}`,
      failit: `hosts = ["fail.test"]\nupstreams = ["${b.url}"]\nall_unhealthy = "fail"\n${HEALTH}`,
    });
    await g.waitForLog((l) => l.msg.startsWith("upstream endpoint unhealthy") && l.upstream === a.url, 3000);
    await g.waitForLog((l) => l.msg.startsWith("upstream endpoint unhealthy") && l.upstream === b.url, 3000);
    expect(await (await g.request("try.test")).text()).toBe("a");
    expect((await g.request("fail.test")).status).toBe(503);
  } finally {
    a.state.healthy = true;
    b.state.healthy = true;
  }
});

test("health state survives a reload for endpoints that remain", async () => {
  const g = await start({
    site: `hosts = ["r.test"]\nupstreams = ["${a.url}", "${b.url}"]\n${HEALTH.replace('interval = "200ms"', 'interval = "2s"').replace('timeout = "100ms"', 'timeout = "1s"')}`,
  });
  b.state.healthy = false;
  try {
    await g.waitForLog((l) => l.msg.startsWith("upstream endpoint unhealthy") && l.upstream === b.url, 8000);
    g.writeRoute("other", `hosts = ["o.test"]\nstatic = "builtin:welcome"\n`);
    expect((await g.reload()).msg).toBe("config reloaded");
    expect(new Set(await bodies(g, "r.test", 4))).toEqual(new Set(["a"]));
  } finally {
    b.state.healthy = true;
  }
});

test("a refused endpoint is ejected for a cool-down that doubles while it keeps refusing", async () => {
  const dead = `http://127.0.0.1:${freePort()}`;
  const g = await start({ site: `hosts = ["p.test"]\nupstreams = ["${dead}", "${a.url}"]\nfail_cooldown = "200ms"\nfail_cooldown_max = "10s"\n` });
  const ejected = async () => (await upstreams(g)).find((u) => u.upstream === dead) as unknown as { ejected_for_ms: number };
  expect(await (await g.request("p.test")).text()).toBe("a"); // refused, then the next endpoint
  expect((await ejected()).ejected_for_ms).toBeLessThanOrEqual(200);
  await Bun.sleep(250);
  for (let i = 0; i < 2; i++) await g.request("p.test");
  const second = (await ejected()).ejected_for_ms;
  expect(second).toBeGreaterThan(200);
  expect(second).toBeLessThanOrEqual(400);
  const m = await (await fetch(`${g.admin}/metrics`)).text();
  expect(m).toMatch(new RegExp(`gatehouse_upstream_ejections_total\\{route="site",upstream="${dead.replace(/[.:/]/g, "\\$&")}"\\} 2`));
});

test("a sole endpoint that fails a few requests (one broken URL) is ejected but still tried: the rest of the site keeps answering; ejection and return are logged (issue 13, item 2)", async () => {
  // /broken resets its connection; everything else answers.
  const app = Bun.listen<{ buf: string }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { buf: "" };
      },
      data(s, d) {
        s.data.buf += Buffer.from(d).toString("latin1");
        if (!s.data.buf.includes("\r\n\r\n")) return;
        const broken = s.data.buf.startsWith("GET /broken ");
        s.data.buf = "";
        if (broken) s.terminate();
        else s.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
      },
    },
  });
  try {
    const g = await start({ site: `hosts = ["sole.test"]\nupstreams = ["http://127.0.0.1:${app.port}"]\nmax_fails = 3\nfail_cooldown = "10s"\n` });
    for (let i = 0; i < 4; i++) expect((await g.request("sole.test", "/broken")).status).toBe(502);
    const ejected = await g.waitForLog((l) => l.msg === "upstream endpoint ejected");
    expect(ejected).toMatchObject({ route: "site", upstream: `http://127.0.0.1:${app.port}` });
    // nginx never marks its only server down: the other URLs of the site still answer during the cool-down.
    const res = await g.request("sole.test", "/fine");
    expect([res.status, await res.text()]).toEqual([200, "ok"]);
    const back = await g.waitForLog((l) => l.msg === "upstream endpoint back");
    expect(back).toMatchObject({ route: "site", upstream: `http://127.0.0.1:${app.port}` });
  } finally {
    app.stop(true);
  }
});

test("a body larger than request_buffer still fails over when the first endpoint refuses the connection (nothing of it was sent)", async () => {
  const dead = `http://127.0.0.1:${freePort()}`;
  const g = await start({ site: `hosts = ["big.test"]\nupstreams = ["${dead}", "${a.url}"]\nload_balance = "round_robin"\n` });
  const body = new Uint8Array(2 * 1024 * 1024).fill(120);
  const statuses: number[] = [];
  // Round-robin: one of the two requests picks the dead endpoint first.
  for (let i = 0; i < 2; i++) statuses.push((await g.request("big.test", "/", { method: "POST", body })).status);
  expect(statuses).toEqual([200, 200]);
  // The request sent on after the refusal is a retry, and counted as one (issue 15, item 4).
  const m = await (await fetch(`${g.admin}/metrics`)).text();
  expect(m).toMatch(/gatehouse_upstream_retries_total\{route="site"\} 1\n/);
});

test("an idempotent request whose endpoint dies without answering is retried on another; a POST is not replayed", async () => {
  let posts = 0;
  const dying = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(s) {
        s.end();
      },
    },
  }); // accepts, then closes without a response
  const counting = origin(async (req) => {
    if (req.method === "POST") posts++;
    return new Response("good");
  });
  try {
    const g = await start({
      site: `hosts = ["x.test"]\nupstreams = ["http://127.0.0.1:${dying.port}", "http://127.0.0.1:${counting.port}"]\nmax_fails = 1000\n`,
    });
    for (let i = 0; i < 4; i++) {
      const r = await g.request("x.test");
      expect(r.status).toBe(200);
      expect(await r.text()).toBe("good");
    }
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await g.request("x.test", "/", { method: "POST", body: "x" })).status);
    expect(statuses).toContain(502);
    expect(posts).toBe(statuses.filter((s) => s === 200).length);
    const m = await (await fetch(`${g.admin}/metrics`)).text();
    expect(Number(/gatehouse_upstream_retries_total\{route="site"\} (\d+)/.exec(m)?.[1])).toBeGreaterThanOrEqual(1);
  } finally {
    dying.stop(true);
    counting.stop(true);
  }
});

test("circuit breaking: beyond max_inflight requests per endpoint, 503 at once instead of a pile-up", async () => {
  const slow = origin(async () => {
    await Bun.sleep(500);
    return new Response("slow");
  });
  try {
    const g = await start({ site: `hosts = ["cb.test"]\nupstreams = ["http://127.0.0.1:${slow.port}"]\nmax_inflight = 2\n` });
    const t0 = performance.now();
    const results = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const r = await g.request("cb.test");
        return { status: r.status, ms: performance.now() - t0, body: await r.text() };
      }),
    );
    expect(results.filter((r) => r.status === 200).length).toBe(2);
    const rejected = results.filter((r) => r.status === 503);
    expect(rejected.length).toBe(3);
    for (const r of rejected) {
      expect(r.ms).toBeLessThan(300);
      expect(r.body).toContain("upstream at capacity");
    }
  } finally {
    slow.stop(true);
  }
});

test('load_balance = "hash" keeps a user on one endpoint (header or cookie key)', async () => {
  const g = await start({
    byheader: `hosts = ["hh.test"]\nupstreams = ["${a.url}", "${b.url}"]\nload_balance = "hash"\nhash_on = "header:X-User"\n`,
    bycookie: `hosts = ["hc.test"]\nupstreams = ["${a.url}", "${b.url}"]\nload_balance = "hash"\nhash_on = "cookie:sid"\n`,
  });
  const seenBy = new Map<string, Set<string>>();
  for (let i = 0; i < 40; i++) {
    const user = `u${i % 8}`;
    const body = await (await g.request("hh.test", "/", { headers: { "x-user": user } })).text();
    seenBy.set(user, (seenBy.get(user) ?? new Set()).add(body));
  }
  for (const s of seenBy.values()) expect(s.size).toBe(1);
  expect(new Set([...seenBy.values()].map((s) => [...s][0])).size).toBe(2);
  const viaCookie = new Set<string>();
  for (let i = 0; i < 6; i++) viaCookie.add(await (await g.request("hc.test", "/", { headers: { cookie: "theme=dark; sid=abc123" } })).text());
  expect(viaCookie.size).toBe(1);
});

test("a blackholed endpoint (accepts, never answers): with try_timeout, idempotent requests fail over and none fails; a POST is not replayed", async () => {
  const hole = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }); // takes the bytes, answers nothing
  let posts = 0;
  const good = origin(async (req) => {
    if (req.method === "POST") posts++;
    return new Response("good");
  });
  try {
    const g = await start({
      site: `hosts = ["bh.test"]\nupstreams = ["http://127.0.0.1:${hole.port}", "http://127.0.0.1:${good.port}"]\ntry_timeout = "200ms"\nfail_cooldown = "5s"\n`,
    });
    let ok = 0;
    let worst = 0;
    const failed: number[] = [];
    const stopAt = Date.now() + 1500;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (Date.now() < stopAt) {
          const t0 = performance.now();
          const r = await g.request("bh.test");
          worst = Math.max(worst, performance.now() - t0);
          if (r.status === 200 && (await r.text()) === "good") ok++;
          else failed.push(r.status);
        }
      }),
    );
    console.log(`blackhole: ${ok} requests, ${failed.length} failed, slowest ${Math.round(worst)} ms`);
    expect(failed).toEqual([]);
    expect(ok).toBeGreaterThan(50);
    expect(worst).toBeLessThan(1000);
    // Ejected after max_fails (3) timeouts: the 5 s cool-down keeps it out, so requests are fast again.
    const view = (await (await fetch(`${g.admin}/upstreams`)).json()) as { upstream: string; available: boolean }[];
    expect(view.find((u) => u.upstream === `http://127.0.0.1:${hole.port}`)?.available).toBe(false);
    // POSTs are not cut by try_timeout (a retry could not follow): one that went to the blackhole waits for response_header_timeout, 504, and is not sent
    // again.
    const p = await start({
      site: `hosts = ["bhp.test"]\nupstreams = ["http://127.0.0.1:${hole.port}", "http://127.0.0.1:${good.port}"]\ntry_timeout = "200ms"\nresponse_header_timeout = "1s"\nmax_fails = 1000\n`,
    });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await p.request("bhp.test", "/", { method: "POST", body: "order" })).status);
    expect(statuses).toContain(504);
    expect(posts).toBe(statuses.filter((s) => s === 200).length);
  } finally {
    hole.stop(true);
    good.stop(true);
  }
});

test("a slow endpoint: least_requests sends most requests to the fast one, none fails", async () => {
  const slow = origin(async () => {
    await Bun.sleep(300);
    return new Response("slow");
  });
  const fast = origin(() => new Response("fast"));
  try {
    const g = await start({
      site: `hosts = ["sl.test"]\nupstreams = ["http://127.0.0.1:${slow.port}", "http://127.0.0.1:${fast.port}"]\nload_balance = "least_requests"\n`,
    });
    const got: string[] = [];
    const stopAt = Date.now() + 1500;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (Date.now() < stopAt) got.push(await (await g.request("sl.test")).text());
      }),
    );
    const slowShare = got.filter((b) => b === "slow").length / got.length;
    console.log(`slow endpoint: ${got.length} requests, ${Math.round(slowShare * 1000) / 10}% to the slow one`);
    expect(got.every((b) => b === "slow" || b === "fast")).toBe(true);
    expect(slowShare).toBeLessThan(0.05);
  } finally {
    slow.stop(true);
    fast.stop(true);
  }
});

test("the retry budget runs out: retries stay near a fifth of the requests and the rest fail instead of multiplying the load", async () => {
  const dying = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(s) {
        s.end();
      },
    },
  });
  const alsoDying = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(s) {
        s.end();
      },
    },
  });
  const good = origin(() => new Response("good"));
  try {
    const g = await start({
      site: `hosts = ["rb.test"]\nupstreams = ["http://127.0.0.1:${dying.port}", "http://127.0.0.1:${alsoDying.port}", "http://127.0.0.1:${good.port}"]\nmax_fails = 1000\n`,
    });
    const statuses: number[] = [];
    for (let i = 0; i < 150; i++) statuses.push((await g.request("rb.test")).status);
    const m = await (await fetch(`${g.admin}/metrics`)).text();
    const retried = Number(/gatehouse_upstream_retries_total\{route="site"\} (\d+)/.exec(m)?.[1]);
    expect(statuses.filter((s) => s === 502).length).toBeGreaterThan(20);
    expect(retried).toBeLessThanOrEqual(150 * 0.2 + 10 + 1);
    expect(retried).toBeGreaterThan(20);
  } finally {
    dying.stop(true);
    alsoDying.stop(true);
    good.stop(true);
  }
});

test("try_timeout only cuts an attempt that could be retried: a slow sole endpoint still answers, and a POST is waited for", async () => {
  const slow = origin(async () => {
    await Bun.sleep(400);
    return new Response("late but fine");
  });
  try {
    const g = await start({ site: `hosts = ["tt.test"]\nupstreams = ["http://127.0.0.1:${slow.port}"]\ntry_timeout = "200ms"\n` });
    for (let i = 0; i < 4; i++) {
      const r = await g.request("tt.test");
      expect(r.status).toBe(200);
      expect(await r.text()).toBe("late but fine");
    }
    expect((await g.request("tt.test", "/", { method: "POST", body: "x" })).status).toBe(200);
    const view = (await (await fetch(`${g.admin}/upstreams`)).json()) as { available: boolean }[];
    expect(view[0]!.available).toBe(true);
  } finally {
    slow.stop(true);
  }
});

test("open WebSockets do not use up max_inflight for plain requests", async () => {
  const ws = origin((req, server) => (server.upgrade(req, { data: undefined }) ? undefined : new Response("plain")), {
    websocket: {
      message(s: import("bun").ServerWebSocket<unknown>, m: string | Buffer) {
        s.send(m);
      },
    },
  });
  try {
    const g = await start({ site: `hosts = ["wsc.test"]\nupstreams = ["http://127.0.0.1:${ws.port}"]\nmax_inflight = 2\n` });
    const sockets: WebSocket[] = [];
    for (let i = 0; i < 3; i++) {
      const s = new WebSocket(`ws://127.0.0.1:${g.httpPort}/`, { headers: { host: "wsc.test" } } as never);
      await new Promise((resolve, reject) => {
        s.onopen = resolve;
        s.onerror = reject;
      });
      sockets.push(s);
    }
    expect((await g.request("wsc.test")).status).toBe(200);
    for (const s of sockets) s.close();
  } finally {
    ws.stop(true);
  }
});

test("a reload rejected after building leaves no discovery behind", async () => {
  const g = await start({ site: `hosts = ["rj.test"]\nupstreams = ["${a.url}"]\n` });
  const busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  try {
    const cfg = join(g.dir, "config.toml");
    // A resolver that does not answer, a route that needs it, and a listener that cannot bind: rejected after the build.
    writeFileSync(
      cfg,
      `${readFileSync(cfg, "utf8").replace(/^http = .*$/m, `http = "127.0.0.1:${busy.port}"`)}\n[resolver]\nservers = ["127.0.0.1:${freePort()}"]\n`,
    );
    g.writeRoute("named", `hosts = ["named.test"]\nupstreams = ["http://svc.nowhere.test:8080"]\n`);
    expect((await g.reload()).msg).toStartWith("config rejected");
    const lines = () => g.logs.filter((l) => String(l.upstream ?? "").includes("svc.nowhere.test")).length;
    const before = lines();
    await Bun.sleep(5600); // past the 5 s retry of a failed name
    expect(lines()).toBe(before);
    expect(await (await g.request("rj.test")).text()).toBe("a");
  } finally {
    busy.stop(true);
  }
});

/** django is an origin that, like Django's ALLOWED_HOSTS, answers 400 to any Host but its own names; it counts its health checks. */
function django(allowed: string[]) {
  const state = { checks: 0, hosts: new Set<string>() };
  const server = origin((req) => {
    const host = (req.headers.get("host") ?? "").replace(/:\d+$/, "");
    const path = new URL(req.url).pathname;
    if (path === "/healthz") {
      state.checks++;
      state.hosts.add(host);
    }
    if (!allowed.includes(host)) return new Response("Bad Request (400)", { status: 400 });
    return new Response(path === "/healthz" ? "ok" : "django");
  });
  return { state, server, url: `http://127.0.0.1:${server.port}` };
}

test("health checks ask for the site by its first host name, so an app that checks Host stays healthy; an unhealthy line names the Host and the status (issue 15, item 3)", async () => {
  const app = django(["app.test"]);
  try {
    const g = await start({ app: `hosts = ["*.preview.test", "app.test", "www.app.test"]\nupstreams = ["${app.url}"]\n${HEALTH}` });
    const deadline = Date.now() + 3000;
    while (app.state.checks < 3 && Date.now() < deadline) await Bun.sleep(20);
    expect([...app.state.hosts]).toEqual(["app.test"]);
    expect((await upstreams(g))[0]).toMatchObject({ healthy: true, last_check: { ok: true } });
    // A Host the app refuses, named in the check: the log line says which Host was sent and what came back.
    g.writeRoute("app", `hosts = ["app.test"]\nupstreams = ["${app.url}"]\n${HEALTH}host = "other.test"\n`);
    expect((await g.reload()).msg).toBe("config reloaded");
    const line = await g.waitForLog((l) => l.msg.startsWith("upstream endpoint unhealthy"), 3000);
    expect(line).toMatchObject({ upstream: app.url, host: "other.test", detail: "status 400" });
  } finally {
    app.server.stop(true);
  }
});

test("[[paths]] entries that refine the site's action share its pool: one check per endpoint, one health state (issue 15, item 3)", async () => {
  const made = [0, 1].map((i) => {
    const state = { healthy: true, checks: 0 };
    const server = origin((req) => {
      if (new URL(req.url).pathname !== "/healthz") return new Response(`e${i}`);
      state.checks++;
      return new Response(null, { status: state.healthy ? 200 : 500 });
    });
    return { state, server, url: `http://127.0.0.1:${server.port}` };
  });
  const [one, two] = made as [(typeof made)[0], (typeof made)[0]];
  try {
    const site = `hosts = ["shared.test"]\nupstreams = ["${one.url}", "${two.url}"]\n${HEALTH}`;
    const paths = '[[paths]]\nprefix = "/static"\n[paths.cache]\nttl = "1s"\n[[paths]]\nprefix = "/api"\n[[paths.rate_limit]]\nrate = "1000/s"\n';
    const g = await start({ shared: site + paths });
    // Two endpoints, under the site's route: not a set per path.
    expect((await upstreams(g)).map((u) => u.route)).toEqual(["shared", "shared"]);
    // Three routes, one checker per endpoint: about five checks a second each (interval 200 ms ± 20 ms), not fifteen.
    const before = one.state.checks;
    await Bun.sleep(1000);
    expect(one.state.checks - before).toBeLessThanOrEqual(7);
    two.state.healthy = false;
    await g.waitForLog((l) => l.msg.startsWith("upstream endpoint unhealthy") && l.upstream === two.url, 3000);
    // Once unhealthy, no route of the site sends it anything.
    const seen = new Set<string>();
    for (const path of ["/api/x", "/api/y", "/x", "/y", "/api/z", "/z"]) seen.add(await (await g.request("shared.test", path)).text());
    expect(seen).toEqual(new Set(["e0"]));
  } finally {
    one.server.stop(true);
    two.server.stop(true);
  }
});
