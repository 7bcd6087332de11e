/** The last corners of the response cache (RFC 9111, issue 17 item 4) through the real gateway: 1xx, typed CDN-Cache-Control, If-Modified-Since without Last-Modified, 204 and unknown statuses, POST, Vary normalisation, withheld fields, Set-Cookie. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { formatHttpDate } from "../src/cache/http-date.ts";
import { origin, startGateway, type TestGateway } from "./harness.ts";
import { cleanup as stopRawOrigins, listen, writeParts } from "./h1-upstream.ts";

type Behaviour = (req: Request, n: number) => Response;
const behaviours = new Map<string, Behaviour>();
const hits = new Map<string, number>();

/** on registers what the origin answers at /NAME (n counts from 1) and returns the path. */
function on(name: string, b: Behaviour): string {
  behaviours.set(name, b);
  hits.set(name, 0);
  return `/${name}`;
}
const count = (name: string) => hits.get(name) ?? 0;

const up = origin(async (req) => {
  const name = new URL(req.url).pathname.slice(1).split("/")[0]!;
  const b = behaviours.get(name);
  if (!b) return new Response("no behaviour", { status: 404 });
  const n = (hits.get(name) ?? 0) + 1;
  hits.set(name, n);
  if (req.method !== "GET" && req.method !== "HEAD") await req.text();
  return b(req, n);
});

/** rawHits counts requests to the raw origin by path. */
const rawHits = new Map<string, number>();

/** raw is an origin that writes its bytes itself (Bun.serve cannot send a 1xx, nor leave Date out): each path has a script. */
const raw = listen({
  onRequest: async (p, r) => {
    const n = (rawHits.get(r.target) ?? 0) + 1;
    rawHits.set(r.target, n);
    const final = (cc: string, body: string, extra = "") => `HTTP/1.1 200 OK\r\ncache-control: ${cc}\r\ncontent-length: ${body.length}\r\n${extra}\r\n${body}`;
    const hints = "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\nx-early: 1\r\ncache-control: max-age=600\r\n\r\n";
    if (r.target === "/hints") await writeParts(p.s, [hints, final("max-age=60", `v${n}`, "x-final: 1\r\n")]);
    else if (r.target === "/hints-nostore") await writeParts(p.s, [hints + final("no-store", `v${n}`)]);
    else if (r.target === "/nodate") p.s.write(final("max-age=60", `v${n}`));
    else p.s.write("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
  },
});

let gw: TestGateway;
const HOST = "corners.test";
const RAW = "raw.test";

beforeAll(async () => {
  gw = await startGateway({
    extra: `[cache]\nmax_size = "4MiB"\nmax_object_size = "256KiB"\n`,
    routes: {
      site: `hosts = ["${HOST}"]\nupstreams = ["http://127.0.0.1:${up.port}"]\n[cache]\n`,
      raw: `hosts = ["${RAW}"]\nupstreams = ["http://127.0.0.1:${raw.port}"]\n[cache]\n`,
    },
  });
});

afterAll(async () => {
  await gw.cleanup();
  up.stop(true);
  stopRawOrigins();
});

const get = (path: string, headers: Record<string, string> = {}, method = "GET", host = HOST) => gw.request(host, path, { method, headers });
const hit = (r: Response) => expect(r.headers.get("cache-status")).toStartWith("gatehouse; hit");

test("a 103 Early Hints is neither stored nor reused, and its fields never reach the stored final response", async () => {
  const a = await get("/hints", {}, "GET", RAW);
  expect(a.status).toBe(200);
  expect(await a.text()).toBe("v1");
  expect(a.headers.get("cache-status")).toStartWith("gatehouse; fwd=uri-miss; stored");
  const b = await get("/hints", {}, "GET", RAW);
  hit(b);
  expect(b.status).toBe(200);
  expect(await b.text()).toBe("v1");
  expect(b.headers.get("x-final")).toBe("1");
  for (const r of [a, b]) {
    expect(r.headers.get("x-early")).toBeNull();
    expect(r.headers.get("link")).toBeNull();
  }
  expect(rawHits.get("/hints")).toBe(1);
  // The 103's max-age=600 does not make a no-store final response storable.
  expect(await (await get("/hints-nostore", {}, "GET", RAW)).text()).toBe("v1");
  const again = await get("/hints-nostore", {}, "GET", RAW);
  expect(await again.text()).toBe("v2");
  expect(again.headers.get("x-early")).toBeNull();
  expect(rawHits.get("/hints-nostore")).toBe(2);
});

test("a CDN-Cache-Control whose max-age is a String is ignored as a whole, Cache-Control rules instead (RFC 9213 §2.1)", async () => {
  const p = on("cdnstring", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "no-store", "cdn-cache-control": 'max-age="60"' } }));
  await get(p);
  expect(await (await get(p)).text()).toBe("v2");
  const q = on("cdnstring2", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60", "cdn-cache-control": 'no-store, max-age="0"' } }));
  await get(q);
  const r = await get(q);
  hit(r);
  expect(await r.text()).toBe("v1");
  expect(count("cdnstring")).toBe(2);
  expect(count("cdnstring2")).toBe(1);
});

test("a fresh stored response without Last-Modified answers If-Modified-Since with 304: by its Date, or the time it was received", async () => {
  const p = on("imsdate", (_r, n) => new Response(`v${n}`, { headers: { "cache-control": "max-age=60", etag: '"d"' } }));
  await get(p);
  const later = formatHttpDate(Math.ceil(Date.now() / 1000) * 1000 + 1000);
  const nm = await get(p, { "if-modified-since": later });
  expect(nm.status).toBe(304);
  hit(nm);
  const full = await get(p, { "if-modified-since": formatHttpDate(Date.now() - 3_600_000) });
  expect(full.status).toBe(200);
  expect(await full.text()).toBe("v1");
  expect(count("imsdate")).toBe(1);
  // An origin that sends no Date: the time the gateway received the response stands in (RFC 9110 §6.6.1).
  await get("/nodate", {}, "GET", RAW);
  const nd = await get("/nodate", { "if-modified-since": formatHttpDate(Math.ceil(Date.now() / 1000) * 1000 + 1000) }, "GET", RAW);
  expect(nd.status).toBe(304);
  expect((await get("/nodate", { "if-modified-since": formatHttpDate(Date.now() - 3_600_000) }, "GET", RAW)).status).toBe(200);
  expect(rawHits.get("/nodate")).toBe(1);
});

test("a 204 is stored and reused; so are 299, 499 and 599 with explicit freshness, but not without", async () => {
  const p = on("nocontent", () => new Response(null, { status: 204, headers: { "cache-control": "max-age=60", "x-n": "1" } }));
  const a = await get(p);
  expect(a.status).toBe(204);
  expect(a.headers.get("cache-status")).toStartWith("gatehouse; fwd=uri-miss; stored");
  const b = await get(p);
  expect(b.status).toBe(204);
  hit(b);
  expect(b.headers.get("x-n")).toBe("1");
  expect(await b.text()).toBe("");
  expect(count("nocontent")).toBe(1);
  for (const status of [299, 499, 599]) {
    const q = on(`status${status}`, (_r, n) => new Response(`s${n}`, { status, headers: { "cache-control": "max-age=60" } }));
    await get(q);
    const r = await get(q);
    expect(r.status).toBe(status);
    hit(r);
    expect(await r.text()).toBe("s1");
    expect(count(`status${status}`)).toBe(1);
  }
  const q = on("status499bare", (_r, n) => new Response(`s${n}`, { status: 499 }));
  await get(q);
  expect(await (await get(q)).text()).toBe("s2");
});

test("a HEAD that revalidates a stale entry stores no empty body in its place", async () => {
  const p = on("headreval", (_r, n) => new Response(`body${n}`, { headers: { "cache-control": "max-age=1" } }));
  await get(p);
  await Bun.sleep(1100);
  const head = await get(p, {}, "HEAD");
  expect(head.status).toBe(200);
  expect(head.headers.get("cache-status")).toContain("detail=method");
  const r = await get(p);
  expect(await r.text()).toBe("body3");
  expect(count("headreval")).toBe(3);
});

test("a POST response with explicit freshness and a Content-Location equal to its URL answers later GETs (RFC 9110 §9.3.3)", async () => {
  const post = (cl: string | undefined) => (r: Request, n: number) =>
    r.method === "POST"
      ? new Response(`posted${n}`, { headers: { "cache-control": "max-age=60", ...(cl === undefined ? {} : { "content-location": cl }) } })
      : new Response(`got${n}`, { headers: { "cache-control": "max-age=60" } });
  const p = on("postcl", post("/postcl"));
  await get(p); // stored by a GET first: the POST replaces it
  const a = await get(p, { "content-type": "text/plain" }, "POST");
  expect(await a.text()).toBe("posted2");
  const b = await get(p);
  hit(b);
  expect(await b.text()).toBe("posted2");
  const head = await get(p, {}, "HEAD");
  expect(head.status).toBe(200);
  hit(head);
  expect(count("postcl")).toBe(2);
  // Without Content-Location, or with another one, the POST only invalidates.
  for (const [name, cl] of [
    ["postnocl", undefined],
    ["postother", "/elsewhere"],
  ] as const) {
    const q = on(name, post(cl));
    expect(await (await get(q, {}, "POST")).text()).toBe("posted1");
    expect(await (await get(q)).text()).toBe("got2");
  }
});

test("Vary: Accept-Language keys variants with the values' case and whitespace normalised", async () => {
  const p = on(
    "varylang",
    (r, n) => new Response(`${r.headers.get("accept-language")}|${n}`, { headers: { "cache-control": "max-age=60", vary: "Accept-Language" } }),
  );
  expect(await (await get(p, { "accept-language": "en-US, fr" })).text()).toBe("en-US, fr|1");
  for (const v of ["en-us,fr", "EN-US ,  FR", "en-US,fr"]) {
    const r = await get(p, { "accept-language": v });
    hit(r);
    expect(await r.text()).toBe("en-US, fr|1");
  }
  expect(await (await get(p, { "accept-language": "fr, en-US" })).text()).toBe("fr, en-US|2");
  expect(count("varylang")).toBe(2);
});

test('no-cache="Field" and private="Field": stored without the fields, which only the client that reached the origin gets', async () => {
  for (const cc of ['max-age=60, private="X-User"', 'max-age=60, no-cache="X-User"']) {
    const name = cc.includes("private") ? "withheldpriv" : "withheldnocache";
    const p = on(name, (_r, n) => new Response(`v${n}`, { headers: { "cache-control": cc, "x-user": `alice${n}`, "x-shared": "yes" } }));
    const a = await get(p);
    expect(a.headers.get("x-user")).toBe("alice1");
    expect(a.headers.get("cache-status")).toContain("stored");
    for (const h of [{}, { "if-none-match": "*" }] as Record<string, string>[]) {
      const b = await get(p, h);
      hit(b);
      expect(b.headers.get("x-user")).toBeNull();
      expect(b.headers.get("x-shared")).toBe("yes");
    }
    expect(count(name)).toBe(1);
  }
  // private="Set-Cookie" makes a response with a cookie storable: the cookie is withheld.
  const q = on(
    "withheldcookie",
    (_r, n) => new Response(`v${n}`, { headers: { "cache-control": 'max-age=60, private="Set-Cookie"', "set-cookie": `s=${n}` } }),
  );
  expect((await get(q)).headers.get("set-cookie")).toBe("s=1");
  const c = await get(q);
  hit(c);
  expect(c.headers.get("set-cookie")).toBeNull();
});

test("a stored response with Set-Cookie and public freshness is reused, and its cookies go to no other client", async () => {
  const p = on("cookiepublic", (_r, n) => {
    const h = new Headers({ "cache-control": "public, max-age=60", etag: '"c"' });
    h.append("set-cookie", `sid=${n}; Path=/`);
    h.append("set-cookie", `theme=${n}`);
    return new Response(`v${n}`, { headers: h });
  });
  const a = await get(p, { cookie: "sid=alice" });
  expect(a.headers.getSetCookie()).toEqual(["sid=1; Path=/", "theme=1"]);
  for (const [h, method] of [
    [{ cookie: "sid=bob" }, "GET"],
    [{}, "GET"],
    [{}, "HEAD"],
    [{ "if-none-match": '"c"' }, "GET"],
  ] as const) {
    const r = await get(p, h, method);
    hit(r);
    expect(r.headers.getSetCookie()).toEqual([]);
    if (method === "GET" && !("if-none-match" in h)) expect(await r.text()).toBe("v1");
  }
  expect(count("cookiepublic")).toBe(1);
});
