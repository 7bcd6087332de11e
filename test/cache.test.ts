/** The response cache (RFC 9111) through the real gateway, against an origin that counts its requests. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { origin, startGateway, type TestGateway } from "./harness.ts";

type Behaviour = (req: Request, n: number) => Response;
const behaviours = new Map<string, Behaviour>();
const hits = new Map<string, number>();
/** seen keeps what each request to the origin carried, copied while it is handled (Bun reuses a request's header storage afterwards). */
const seen = new Map<string, { method: string; headers: Headers }[]>();

/** on registers what the origin answers at /NAME (n counts from 1) and returns the path. */
function on(name: string, b: Behaviour): string {
  behaviours.set(name, b);
  hits.set(name, 0);
  seen.set(name, []);
  return `/${name}`;
}
const count = (name: string) => hits.get(name) ?? 0;

const up = origin(async (req) => {
  const name = new URL(req.url).pathname.slice(1).split("/")[0]!;
  const b = behaviours.get(name);
  if (!b) return new Response("no behaviour", { status: 404 });
  const n = (hits.get(name) ?? 0) + 1;
  hits.set(name, n);
  seen.get(name)!.push({ method: req.method, headers: new Headers(req.headers) });
  if (req.method !== "GET" && req.method !== "HEAD") await req.text();
  return b(req, n);
});

let gw: TestGateway;
const HOST = "cache.test";

beforeAll(async () => {
  gw = await startGateway({
    extra: `[cache]\nmax_size = "4MiB"\nmax_object_size = "256KiB"\n`,
    routes: {
      site: `hosts = ["${HOST}", "other.test"]\nupstreams = ["http://127.0.0.1:${up.port}"]\n[cache]\n
[[paths]]
prefix = "/rules-ttl/"
[paths.cache]
ttl = "1h"
[[paths]]
prefix = "/rules-min/"
[paths.cache]
min_ttl = "1h"
[[paths]]
prefix = "/rules-query/"
[paths.cache]
ignore_query = true
[[paths]]
prefix = "/rules-cookie/"
[paths.cache]
bypass_cookies = ["session"]
[[paths]]
prefix = "/rules-off/"
[paths.cache]
enabled = false
`,
    },
  });
});

afterAll(async () => {
  await gw.cleanup();
  up.stop(true);
});

const get = (path: string, headers: Record<string, string> = {}, method = "GET") => gw.request(HOST, path, { method, headers });
const text =
  (body: string, headers: Record<string, string>, status = 200) =>
  () =>
    new Response(body, { status, headers });

test("a fresh response is served from the cache with Age and Cache-Status; the origin sees one request", async () => {
  const p = on("fresh", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60" } }));
  const a = await get(p);
  expect(await a.text()).toBe("v1");
  expect(a.headers.get("cache-status")).toStartWith("gatehouse; fwd=uri-miss; stored");
  const b = await get(p);
  expect(await b.text()).toBe("v1");
  // Date has one-second resolution, so the age may already count a second or two (RFC 9111 §4.2.3).
  expect(b.headers.get("cache-status")).toMatch(/^gatehouse; hit; ttl=(5[789]|60)$/);
  expect(Number(b.headers.get("age"))).toBeLessThanOrEqual(2);
  expect(count("fresh")).toBe(1);
});

test("no-store, private and responses without freshness information are not stored", async () => {
  for (const [name, cc] of [
    ["nostore", "no-store, max-age=60"],
    ["private", "private, max-age=60"],
  ] as const) {
    const p = on(name, (_r, n) => new Response(`v${n}`, { headers: { "cache-control": cc } }));
    await get(p);
    expect(await (await get(p)).text()).toBe("v2");
  }
  const p = on("nofresh", (_r, n) => new Response(`v${n}`));
  await get(p);
  await get(p);
  expect(count("nofresh")).toBe(2);
});

test("a request with no-store is not stored; a request with no-cache revalidates", async () => {
  const p = on("reqnostore", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60", etag: '"e1"' } }));
  await get(p, { "cache-control": "no-store" });
  await get(p);
  expect(count("reqnostore")).toBe(2);
  const r = await get(p, { "cache-control": "no-cache" });
  expect(count("reqnostore")).toBe(3);
  expect(seen.get("reqnostore")![2]!.headers.get("if-none-match")).toBe('"e1"');
  expect(r.status).toBe(200);
});

test("s-maxage wins over max-age for the shared cache; Expires and Date work when no max-age is given; an invalid Expires is stale", async () => {
  const p = on("smaxage", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=0, s-maxage=60" } }));
  await get(p);
  expect(await (await get(p)).text()).toBe("v1");
  const date = new Date();
  const q = on(
    "expires",
    (_r, n) => new Response(`v${n}`, { headers: { date: date.toUTCString(), expires: new Date(date.getTime() + 60_000).toUTCString() } }),
  );
  await get(q);
  expect(await (await get(q)).text()).toBe("v1");
  const r = on("badexpires", (_r, n) => new Response(`v${n}`, { headers: { expires: "0" } }));
  await get(r);
  expect(await (await get(r)).text()).toBe("v2");
});

test("heuristic freshness from Last-Modified for a heuristically cacheable status", async () => {
  const p = on("heuristic", (_r, n) => new Response(`v${n}`, { headers: { "last-modified": new Date(Date.now() - 10 * 86_400_000).toUTCString() } }));
  await get(p);
  const b = await get(p);
  expect(await b.text()).toBe("v1");
  expect(b.headers.get("cache-status")).toStartWith("gatehouse; hit");
});

test("Vary: variants are stored per request value; Vary: * never matches", async () => {
  const p = on(
    "vary",
    (r, n) => new Response(`${r.headers.get("accept-language")}-${n}`, { headers: { "cache-control": "max-age=60", vary: "Accept-Language" } }),
  );
  expect(await (await get(p, { "accept-language": "en" })).text()).toBe("en-1");
  expect(await (await get(p, { "accept-language": "de" })).text()).toBe("de-2");
  expect(await (await get(p, { "accept-language": "en" })).text()).toBe("en-1");
  expect(await (await get(p, { "accept-language": "de" })).text()).toBe("de-2");
  const q = on("varystar", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60", vary: "*" } }));
  await get(q);
  await get(q);
  expect(count("varystar")).toBe(2);
});

test("Authorization: stored only when the response allows it explicitly (public)", async () => {
  const p = on("auth", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60" } }));
  await get(p, { authorization: "Bearer x" });
  await get(p, { authorization: "Bearer x" });
  expect(count("auth")).toBe(2);
  const q = on("authpublic", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "public, max-age=60" } }));
  await get(q, { authorization: "Bearer x" });
  await get(q, { authorization: "Bearer y" });
  expect(count("authpublic")).toBe(1);
});

test("Set-Cookie: not stored unless public, and then never served to others", async () => {
  const p = on("cookie", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60", "set-cookie": `s=${n}` } }));
  await get(p);
  await get(p);
  expect(count("cookie")).toBe(2);
  const q = on("cookiepublic", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "public, max-age=60", "set-cookie": `s=${n}` } }));
  expect((await get(q)).headers.get("set-cookie")).toBe("s=1");
  const hit = await get(q);
  expect(hit.headers.get("cache-status")).toStartWith("gatehouse; hit");
  expect(hit.headers.get("set-cookie")).toBeNull();
});

test("a stale response is revalidated with its validators; a 304 refreshes it and the client gets the stored body", async () => {
  const p = on("reval", (r, n) =>
    r.headers.get("if-none-match") === '"v1"'
      ? new Response(null, { status: 304, headers: { "cache-control": "max-age=60", etag: '"v1"', "x-fresh": `${n}` } })
      : new Response("body1", { headers: { "cache-control": "max-age=1", etag: '"v1"' } }),
  );
  await get(p);
  await Bun.sleep(2100);
  const r = await get(p);
  expect(r.status).toBe(200);
  expect(await r.text()).toBe("body1");
  expect(r.headers.get("cache-status")).toBe("gatehouse; fwd=stale; fwd-status=304; stored; ttl=60");
  expect(r.headers.get("x-fresh")).toBe("2");
  expect(seen.get("reval")![1]!.headers.get("if-none-match")).toBe('"v1"');
  const again = await get(p);
  expect(again.headers.get("cache-status")).toStartWith("gatehouse; hit");
  expect(count("reval")).toBe(2);
});

test("the client's own conditional request is answered 304 from the cache; HEAD is answered from a stored GET; a range from the stored body", async () => {
  const body = "0123456789".repeat(10);
  const p = on("cond", text(body, { "cache-control": "max-age=60", etag: '"c1"', "last-modified": new Date(Date.now() - 60_000).toUTCString() }));
  await get(p);
  const nm = await get(p, { "if-none-match": '"c1"' });
  expect(nm.status).toBe(304);
  expect(nm.headers.get("etag")).toBe('"c1"');
  const head = await get(p, {}, "HEAD");
  expect(head.status).toBe(200);
  expect(head.headers.get("content-length")).toBe("100");
  expect(await head.text()).toBe("");
  const range = await get(p, { range: "bytes=10-19" });
  expect(range.status).toBe(206);
  expect(range.headers.get("content-range")).toBe("bytes 10-19/100");
  expect(await range.text()).toBe("0123456789");
  expect(count("cond")).toBe(1);
});

test("a miss passes the client's range on; a full answer is stored and the range served from it", async () => {
  const p = on("missrange", text("abcdefghij", { "cache-control": "max-age=60", etag: '"m1"' }));
  const r = await get(p, { range: "bytes=2-4" });
  expect(r.status).toBe(206);
  expect(await r.text()).toBe("cde");
  expect(seen.get("missrange")![0]!.headers.get("range")).toBe("bytes=2-4");
  expect(await (await get(p)).text()).toBe("abcdefghij");
  expect(count("missrange")).toBe(1);
});

test("stale-while-revalidate serves the stale response at once and refreshes it in the background", async () => {
  const p = on("swr", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=1, stale-while-revalidate=30" } }));
  await get(p);
  await Bun.sleep(1100);
  const stale = await get(p);
  expect(await stale.text()).toBe("v1");
  expect(stale.headers.get("cache-status")).toContain("detail=stale");
  for (let i = 0; i < 50 && count("swr") < 2; i++) await Bun.sleep(20);
  expect(count("swr")).toBe(2);
  await Bun.sleep(50);
  expect(await (await get(p)).text()).toBe("v2");
});

test("stale-if-error serves the stale response when the origin fails; must-revalidate forbids it", async () => {
  const p = on("sie", (_r, n) =>
    n === 1 ? new Response("good", { headers: { "cache-control": "max-age=1, stale-if-error=60" } }) : new Response("broken", { status: 500 }),
  );
  await get(p);
  await Bun.sleep(1100);
  const r = await get(p);
  expect(r.status).toBe(200);
  expect(await r.text()).toBe("good");
  expect(r.headers.get("cache-status")).toContain("detail=stale-if-error");
  const q = on("mustreval", (_r, n) =>
    n === 1 ? new Response("good", { headers: { "cache-control": "max-age=1, must-revalidate, stale-if-error=60" } }) : new Response("broken", { status: 500 }),
  );
  await get(q);
  await Bun.sleep(1100);
  expect((await get(q)).status).toBe(500);
});

test("an unsafe method invalidates the target and a same-origin Location", async () => {
  const p = on("inval", (r, n) =>
    r.method === "POST"
      ? new Response("ok", { status: 201, headers: { location: "/inval2" } })
      : new Response(`v${n}`, { headers: { "cache-control": "max-age=60" } }),
  );
  const q = on("inval2", (_r, n) => new Response(`w${n}`, { headers: { "cache-control": "max-age=60" } }));
  await get(p);
  await get(q);
  await get(p, {}, "POST");
  expect(await (await get(p)).text()).toBe("v3");
  expect(await (await get(q)).text()).toBe("w2");
});

test("request directives: max-stale accepts a stale response, min-fresh and max-age refuse a too old one", async () => {
  const p = on("reqdirs", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=1" } }));
  await get(p);
  await Bun.sleep(1100);
  const stale = await get(p, { "cache-control": "max-stale=60" });
  expect(await stale.text()).toBe("v1");
  expect(stale.headers.get("cache-status")).toContain("detail=stale");
  expect(count("reqdirs")).toBe(1);
  expect(await (await get(p)).text()).toBe("v2");
  expect(await (await get(p, { "cache-control": "min-fresh=30" })).text()).toBe("v3");
  await Bun.sleep(1000);
  const q = on("reqmaxage", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60" } }));
  await get(q);
  await Bun.sleep(1100);
  expect(await (await get(q, { "cache-control": "max-age=0" })).text()).toBe("v2");
  expect(await (await get(q, { "cache-control": "max-age=30" })).text()).toBe("v2");
});

test("Age from the origin counts: a response already as old as its max-age is stale on arrival", async () => {
  const p = on("agehdr", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60", age: "50" } }));
  await get(p);
  const hit = await get(p);
  expect(Number(hit.headers.get("age"))).toBeGreaterThanOrEqual(50);
  const q = on("ageold", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60", age: "120" } }));
  await get(q);
  expect(await (await get(q)).text()).toBe("v2");
});

test("must-understand stores a response whose status is understood even with no-store; proxy-revalidate forbids stale serving", async () => {
  const p = on("mu", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "must-understand, no-store, max-age=60" } }));
  await get(p);
  expect(await (await get(p)).text()).toBe("v1");
  const q = on("proxyreval", (_r, n) =>
    n === 1
      ? new Response("good", { headers: { "cache-control": "max-age=1, proxy-revalidate, stale-if-error=60" } })
      : new Response("broken", { status: 503 }),
  );
  await get(q);
  await Bun.sleep(1100);
  expect((await get(q, { "cache-control": "max-stale=60" })).status).toBe(503);
});

test("no-transform: a compressible response is never compressed by the cache", async () => {
  const p = on("notransform", text("a".repeat(4000), { "cache-control": "max-age=60, no-transform", "content-type": "text/plain" }));
  await get(p);
  const r = await gw.request(HOST, p, { headers: { "accept-encoding": "gzip" }, decompress: false } as RequestInit);
  expect(r.headers.get("content-encoding")).toBeNull();
  expect((await r.text()).length).toBe(4000);
});

test("conditional and range requests for responses that are not stored reach the origin as they are", async () => {
  const p = on("privcond", (r) =>
    r.headers.get("if-none-match") === '"p1"'
      ? new Response(null, { status: 304, headers: { etag: '"p1"' } })
      : new Response("mine", { headers: { "cache-control": "private", etag: '"p1"' } }),
  );
  expect((await get(p, { "if-none-match": '"p1"' })).status).toBe(304);
  const big = "z".repeat(300 * 1024);
  const q = on("bigrange", (r) => {
    const m = /bytes=(\d+)-(\d+)/.exec(r.headers.get("range") ?? "");
    if (!m) return new Response(big, { headers: { "cache-control": "max-age=60" } });
    return new Response(big.slice(Number(m[1]), Number(m[2]) + 1), {
      status: 206,
      headers: { "content-range": `bytes ${m[1]}-${m[2]}/${big.length}`, "cache-control": "max-age=60" },
    });
  });
  const r = await get(q, { range: "bytes=0-9" });
  expect(r.status).toBe(206);
  expect((await r.text()).length).toBe(10);
});

test("a 304 that changes Vary drops the stored variants instead of serving them to everyone", async () => {
  const p = on("varychange", (r, n) =>
    n === 1
      ? new Response("for anyone", { headers: { "cache-control": "max-age=1", etag: '"vc"' } })
      : r.headers.get("if-none-match")
        ? new Response(null, { status: 304, headers: { "cache-control": "max-age=60", etag: '"vc"', vary: "Cookie" } })
        : new Response(`fresh ${n}`, { headers: { "cache-control": "max-age=60", vary: "Cookie" } }),
  );
  await get(p, { cookie: "u=alice" });
  await Bun.sleep(1100);
  const alice = await get(p, { cookie: "u=alice" });
  expect(alice.headers.get("cache-status")).toContain("detail=vary-changed");
  const bob = await get(p, { cookie: "u=bob" });
  expect(bob.headers.get("cache-status")).not.toStartWith("gatehouse; hit");
  expect(count("varychange")).toBe(3);
});

test("what belongs to the filling client is not stored: Connection: close, and a 304's Set-Cookie reaches the client that revalidated", async () => {
  const p = on("connclose", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60" } }));
  await get(p, { connection: "close" });
  const hit = await get(p);
  expect(hit.headers.get("cache-status")).toStartWith("gatehouse; hit");
  expect(hit.headers.get("connection")).not.toBe("close");
  const q = on("cookie304", (r, n) =>
    r.headers.get("if-none-match")
      ? new Response(null, { status: 304, headers: { "cache-control": "max-age=60", etag: '"s"', "set-cookie": `seen=${n}` } })
      : new Response("page", { headers: { "cache-control": "max-age=1", etag: '"s"' } }),
  );
  await get(q);
  await Bun.sleep(1100);
  const r = await get(q);
  expect(r.headers.get("set-cookie")).toBe("seen=2");
  expect((await get(q)).headers.get("set-cookie")).toBeNull();
});

test("Vary on a field the gateway itself adds upstream (X-Forwarded-For) still hits", async () => {
  const p = on("varyxff", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60", vary: "X-Forwarded-For" } }));
  await get(p);
  expect((await get(p)).headers.get("cache-status")).toStartWith("gatehouse; hit");
});

test("ignore_query routes are invalidated by unsafe methods too", async () => {
  on("rules-query", (r, n) => (r.method === "POST" ? new Response("ok") : new Response(`q${n}`, { headers: { "cache-control": "max-age=60" } })));
  await get("/rules-query/inv?a=1");
  await get("/rules-query/inv?a=1", {}, "POST");
  expect(await (await get("/rules-query/inv?a=2")).text()).toBe("q3");
});

test("a 304 for a compressed representation carries its weak ETag and Vary", async () => {
  const p = on("compressed304", text("p { margin: 0 }\n".repeat(100), { "cache-control": "max-age=60", "content-type": "text/css", etag: '"z"' }));
  await get(p);
  const r = await gw.request(HOST, p, { headers: { "accept-encoding": "gzip", "if-none-match": 'W/"z"' }, decompress: false } as RequestInit);
  expect(r.status).toBe(304);
  expect(r.headers.get("etag")).toBe('W/"z"');
  expect(r.headers.get("vary")?.toLowerCase()).toContain("accept-encoding");
});

test("one access-log line per request, with the cache result, whatever path the cache took", async () => {
  // Date rounded up to the next second, so that the age is the time since the response, not up to a second more.
  const date = () => new Date(Math.ceil(Date.now() / 1000) * 1000).toUTCString();
  const p = on("logged", (r, n) =>
    n === 1
      ? new Response("a", { headers: { date: date(), "cache-control": "max-age=1, stale-if-error=60", etag: '"l"' } })
      : r.headers.get("if-none-match") && n === 2
        ? new Response(null, { status: 304, headers: { date: date(), "cache-control": "max-age=1, stale-if-error=60", etag: '"l"' } })
        : new Response("down", { status: 500 }),
  );
  const from = gw.logs.length;
  const ids: string[] = [];
  const req = async (h: Record<string, string> = {}) => ids.push((await get(p, h)).headers.get("x-request-id")!);
  await req(); // miss, stored
  await req(); // hit
  await Bun.sleep(1100);
  await req(); // revalidated (304)
  await Bun.sleep(1100);
  await req(); // origin 500: stale-if-error
  await Bun.sleep(100);
  const lines = gw.logs.slice(from).filter((l) => l.msg === "access" && ids.includes(String(l.request_id)));
  expect(lines.map((l) => [l.status, l.cache])).toEqual([
    [200, "miss"],
    [200, "hit"],
    [200, "revalidated"],
    [200, "stale"],
  ]);
});

test("access-log lines count the bytes the client got when the origin's body streams: passed on, stored, or dropped for a stale answer", async () => {
  // 100 KB with a Content-Length: over the upstream client's buffer limit, so each of these bodies streams from the origin.
  const big = "b".repeat(100 * 1024);
  const date = () => new Date(Math.ceil(Date.now() / 1000) * 1000).toUTCString();
  const passed = on("logstream-pass", text(big, { "cache-control": "no-store" }));
  const stored = on("logstream-store", (_r, n) =>
    n === 1 ? new Response(big, { headers: { date: date(), "cache-control": "max-age=1, stale-if-error=60" } }) : new Response(big, { status: 500 }),
  );
  const from = gw.logs.length;
  const ids: string[] = [];
  const req = async (p: string) => {
    const r = await get(p, { "accept-encoding": "identity" }); // the stored copy would otherwise go out compressed
    expect((await r.text()).length).toBe(big.length);
    ids.push(r.headers.get("x-request-id")!);
  };
  await req(passed); // not storable: the origin's stream goes to the client
  await req(stored); // stored: the cache read the stream whole, the client gets the stored copy
  await Bun.sleep(1100);
  await req(stored); // the origin's 500 streams, is dropped, and the stale copy answers (stale-if-error)
  const deadline = Date.now() + 3000;
  const lines = () => gw.logs.slice(from).filter((l) => l.msg === "access" && ids.includes(String(l.request_id)));
  while (lines().length < 3 && Date.now() < deadline) await Bun.sleep(20);
  expect(lines().map((l) => [l.status, l.bytes_out, l.error ?? null])).toEqual([
    [200, big.length, null],
    [200, big.length, null],
    [200, big.length, null],
  ]);
  expect(lines().map((l) => l.cache)).toEqual(["miss", "miss", "stale"]);
});

test("only-if-cached gets 504 on a miss, and for a stale stored response, without asking the origin", async () => {
  const p = on("oic", text("x", { "cache-control": "max-age=1" }));
  expect((await get(p, { "cache-control": "only-if-cached" })).status).toBe(504);
  expect(count("oic")).toBe(0);
  await get(p);
  await Bun.sleep(1100);
  expect((await get(p, { "cache-control": "only-if-cached" })).status).toBe(504);
  expect(count("oic")).toBe(1);
});

test("CDN-Cache-Control (RFC 9213) governs the gateway's caching; clients still see Cache-Control", async () => {
  const p = on("cdncc", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "no-store", "cdn-cache-control": "max-age=60" } }));
  await get(p);
  const b = await get(p);
  expect(await b.text()).toBe("v1");
  expect(b.headers.get("cache-control")).toBe("no-store");
});

test("compression: zstd, br or gzip by Accept-Encoding for compressible types, each made once; identity otherwise; never for ranges or encoded types", async () => {
  const css = "body { color: red; }\n".repeat(500);
  const p = on("compress", text(css, { "cache-control": "max-age=60", "content-type": "text/css", etag: '"k1"' }));
  const raw = (ae?: string, extra: Record<string, string> = {}) =>
    gw.request(HOST, p, { headers: { ...(ae ? { "accept-encoding": ae } : {}), ...extra }, decompress: false } as RequestInit);
  await raw();
  const z = await raw("gzip, br, zstd");
  expect(z.headers.get("content-encoding")).toBe("zstd");
  expect(z.headers.get("vary")?.toLowerCase()).toContain("accept-encoding");
  expect(z.headers.get("etag")).toBe('W/"k1"');
  const zb = new Uint8Array(await z.arrayBuffer());
  expect(zb.byteLength).toBeLessThan(css.length / 10);
  expect(new TextDecoder().decode(Bun.zstdDecompressSync(zb))).toBe(css);
  const g = await raw("gzip;q=1, br;q=0.5");
  expect(g.headers.get("content-encoding")).toBe("gzip");
  expect(new TextDecoder().decode(Bun.gunzipSync(new Uint8Array(await g.arrayBuffer())))).toBe(css);
  const id = await raw();
  expect(id.headers.get("content-encoding")).toBeNull();
  expect(id.headers.get("vary")?.toLowerCase()).toContain("accept-encoding");
  expect((await id.text()).length).toBe(css.length);
  const range = await raw("gzip", { range: "bytes=0-9" });
  expect(range.status).toBe(206);
  expect(range.headers.get("content-encoding")).toBeNull();
  const png = on("png", text("x".repeat(2000), { "cache-control": "max-age=60", "content-type": "image/png" }));
  await get(png);
  const pr = await gw.request(HOST, png, { headers: { "accept-encoding": "gzip" }, decompress: false } as RequestInit);
  expect(pr.headers.get("content-encoding")).toBeNull();
  expect(count("compress")).toBe(1);
});

test("200 concurrent misses for one URL make one origin request", async () => {
  const p = on("coalesce", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60" } }));
  const slow = behaviours.get("coalesce")!;
  behaviours.set("coalesce", (r, n) => {
    Bun.sleepSync(200);
    return slow(r, n);
  });
  const bodies = await Promise.all(Array.from({ length: 200 }, () => get(p).then((r) => r.text())));
  expect(new Set(bodies)).toEqual(new Set(["v1"]));
  expect(count("coalesce")).toBe(1);
});

test("route rules: ttl replaces the origin's freshness, min_ttl is a floor, ignore_query, bypass_cookies, enabled = false", async () => {
  on("rules-ttl", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=0" } }));
  await get("/rules-ttl/a");
  expect(await (await get("/rules-ttl/a")).text()).toBe("v1");
  on("rules-min", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=0" } }));
  await get("/rules-min/a");
  expect(await (await get("/rules-min/a")).text()).toBe("v1");
  on("rules-query", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60" } }));
  await get("/rules-query/a?x=1");
  expect(await (await get("/rules-query/a?x=2")).text()).toBe("v1");
  on("rules-cookie", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60" } }));
  await get("/rules-cookie/a");
  const bypass = await get("/rules-cookie/a", { cookie: "theme=dark; session=abc" });
  expect(await bypass.text()).toBe("v2");
  expect(bypass.headers.get("cache-status")).toBe("gatehouse; fwd=bypass");
  expect(await (await get("/rules-cookie/a", { cookie: "theme=dark" })).text()).toBe("v1");
  on("rules-off", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60" } }));
  await get("/rules-off/a");
  expect(await (await get("/rules-off/a")).text()).toBe("v2");
});

test("purge by URL, host, path prefix and all, answered with the count; never on the public listener", async () => {
  const p = on("purge", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60" } }));
  await get(`${p}/a`);
  await get(`${p}/b`);
  const purge = (q: string) => fetch(`${gw.admin}/cache/purge?${q}`, { method: "POST" }).then((r) => r.json() as Promise<{ purged: number }>);
  expect(await purge(`url=http://${HOST}${p}/a`)).toEqual({ purged: 1 });
  expect(await (await get(`${p}/a`)).text()).toBe("v3");
  expect(await purge(`host=${HOST}&prefix=${p}/`)).toEqual({ purged: 2 });
  expect((await purge("all")).purged).toBeGreaterThan(0);
  await get(`${p}/c`);
  expect((await gw.request(HOST, "/cache/purge?all", { method: "POST" })).status).toBe(404); // the site's, not the admin's
  expect(await (await get(`${p}/c`)).text()).toBe("v4");
  expect((await fetch(`${gw.admin}/cache/purge`, { method: "POST" })).status).toBe(400);
});

test("cache metrics: requests by route and result (a hit ratio per site and path, issue 15 item 4), size, objects", async () => {
  const m = await (await fetch(`${gw.admin}/metrics`)).text();
  const v = (name: string) =>
    Number(
      m
        .split("\n")
        .find((l) => l.startsWith(name))
        ?.split(" ")
        .pop(),
    );
  expect(v('gatehouse_cache_requests_total{route="site",result="hit"}')).toBeGreaterThan(5);
  expect(v('gatehouse_cache_requests_total{route="site",result="miss"}')).toBeGreaterThan(5);
  expect(v('gatehouse_cache_requests_total{route="site",result="revalidated"}')).toBeGreaterThanOrEqual(1);
  expect(v('gatehouse_cache_requests_total{route="site",result="stale"}')).toBeGreaterThanOrEqual(2);
  // The bypassed lookups were on the /rules-cookie/ path, and are counted there.
  expect(v('gatehouse_cache_requests_total{route="site/rules-cookie",result="bypass"}')).toBeGreaterThanOrEqual(1);
  // Routes without a cache have no cache series.
  expect(m).not.toContain('gatehouse_cache_requests_total{route="site/rules-off"');
  expect(v("gatehouse_cache_objects")).toBeGreaterThan(0);
  expect(v("gatehouse_cache_size_bytes")).toBeGreaterThan(0);
});

test("memory stays within max_size: 10x max_size of distinct objects, accounted and real", async () => {
  const chunk = "x".repeat(64 * 1024);
  const p = on("fill", () => new Response(chunk, { headers: { "cache-control": "max-age=600" } }));
  const before = gw.memory().rssKiB;
  for (let i = 0; i < 640; i += 16) await Promise.all(Array.from({ length: 16 }, (_, j) => get(`${p}/${i + j}`).then((r) => r.arrayBuffer())));
  const m = await (await fetch(`${gw.admin}/metrics`)).text();
  const v = (name: string) =>
    Number(
      m
        .split("\n")
        .find((l) => l.startsWith(name))
        ?.split(" ")
        .pop(),
    );
  const size = v("gatehouse_cache_size_bytes");
  console.log(
    `fill: accounted ${size} bytes in ${v("gatehouse_cache_objects")} objects, ${v("gatehouse_cache_evictions_total")} evictions, rss ${before} -> ${gw.memory().rssKiB} KiB`,
  );
  expect(size).toBeLessThanOrEqual(4 * 1024 * 1024);
  expect(size).toBeGreaterThan(3 * 1024 * 1024);
  expect(v("gatehouse_cache_evictions_total")).toBeGreaterThan(500);
  expect(gw.memory().rssKiB - before).toBeLessThan(64 * 1024);
  expect(await (await get(`${p}/639`)).text()).toBe(chunk);
  expect(count("fill")).toBe(640);
});
