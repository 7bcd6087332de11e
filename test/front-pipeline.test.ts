/** The request pipeline behind the raw front end (src/front/entry.ts): a compiled generation answering exact bytes, with what the origin received. */
import { afterAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { ResponseCache } from "../src/cache/response-cache.ts";
import { loadConfig } from "../src/config/load.ts";
import { ChunkedDecoder } from "../src/lib/chunked.ts";
import { frontHandler } from "../src/front/entry.ts";
import { FrontServer } from "../src/front/h1-server.ts";
import { buildGeneration } from "../src/generation.ts";
import { Http01Tokens } from "../src/tls/acme/http01.ts";
import { DiscoveryRegistry } from "../src/upstream/discovery-registry.ts";
import { EndpointRegistry } from "../src/upstream/endpoint.ts";
import { freePort, origin, rawRequest, tempDir, writeConfig } from "./harness.ts";

type Received = { method: string; path: string; host: string | null; body: string; length: string | null };
const received: Received[] = [];
const upstream = origin(async (req) => {
  const url = new URL(req.url);
  received.push({
    method: req.method,
    path: url.pathname + url.search,
    host: req.headers.get("host"),
    body: await req.text(),
    length: req.headers.get("content-length"),
  });
  return new Response(`origin saw ${req.method} ${url.pathname}`, { headers: { "cache-control": "no-store" } });
});

/** rawOrigin keeps the exact bytes of each request it gets (Bun.serve would drop a GET's body) and answers 200 once the body is whole. */
const rawSeen: string[] = [];
const rawOrigin = Bun.listen<{ buf: string }>({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open(s) {
      s.data = { buf: "" };
    },
    data(s, d) {
      s.data.buf += Buffer.from(d).toString("latin1");
      const end = s.data.buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = s.data.buf.slice(0, end).toLowerCase();
      const length = /content-length: (\d+)/.exec(head);
      const body = s.data.buf.slice(end + 4);
      const whole = length ? body.length >= Number(length[1]) : head.includes("transfer-encoding: chunked") ? body.endsWith("0\r\n\r\n") : true;
      if (!whole) return;
      rawSeen.push(s.data.buf);
      s.data.buf = "";
      s.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    },
  },
});

const dir = tempDir("gatehouse-front-pipeline-");
const config = loadConfig(
  writeConfig(dir, freePort(), freePort(), {
    routes: {
      app: `hosts = ["app.test"]\nupstreams = ["http://127.0.0.1:${upstream.port}"]\n`,
      other: `hosts = ["other.test"]\nredirect = "https://elsewhere.test/"\n`,
      raw: `hosts = ["raw.test"]\nupstreams = ["http://127.0.0.1:${rawOrigin.port}"]\n`,
    },
    extra: `[limits]\nrequest_buffer = "16KiB"\n`,
  }),
);
const generation = buildGeneration(
  config,
  {
    endpoints: new EndpointRegistry(),
    discovery: new DiscoveryRegistry(),
    listenerIdleMs: 75_000,
    cache: new ResponseCache(1 << 20, 1 << 16),
    poolsChanged: () => undefined,
    challenges: new Http01Tokens(),
  },
  1,
);
const server = new FrontServer({ hostname: "127.0.0.1", port: 0, handler: frontHandler(() => generation.view, "http") });

afterAll(() => {
  server.stop(true);
  rawOrigin.stop(true);
  generation.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const send = (bytes: string) => rawRequest(server.port, bytes, 3000);

test("a body on GET is forwarded as received, with Content-Length or chunked (Bun.serve's front drops it)", async () => {
  const before = rawSeen.length;
  const cl = await send("GET /with-body HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
  expect(cl).toStartWith("HTTP/1.1 200 OK\r\n");
  const chunked = await send(
    "GET /chunked HTTP/1.1\r\nHost: raw.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
  );
  expect(chunked).toStartWith("HTTP/1.1 200 OK\r\n");
  const [first, second] = rawSeen.slice(before);
  expect(first).toStartWith("GET /with-body HTTP/1.1\r\n");
  expect(first).toContain("\r\ncontent-length: 5\r\n");
  expect(first).toEndWith("\r\n\r\nhello");
  // A chunked body within request_buffer is read whole before the upstream is asked, and goes on with its length.
  expect(second).toStartWith("GET /chunked HTTP/1.1\r\n");
  expect(second).toContain("\r\ncontent-length: 5\r\n");
  expect(second).not.toContain("transfer-encoding");
  expect(second).toEndWith("\r\n\r\nabcde");
});

test("a chunked body over request_buffer (16 KiB here) streams on chunked, whole", async () => {
  const before = rawSeen.length;
  const data = "x".repeat(40_000);
  const chunks = `${(20_000).toString(16)}\r\n${data.slice(0, 20_000)}\r\n${(20_000).toString(16)}\r\n${data.slice(20_000)}\r\n0\r\n\r\n`;
  const res = await send(`POST /big HTTP/1.1\r\nHost: raw.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunks}`);
  expect(res).toStartWith("HTTP/1.1 200 OK\r\n");
  const seen = rawSeen.slice(before)[0]!;
  expect(seen).toContain("\r\ntransfer-encoding: chunked\r\n");
  let body = "";
  const decoder = new ChunkedDecoder();
  decoder.push(Buffer.from(seen.slice(seen.indexOf("\r\n\r\n") + 4), "latin1"), (p) => (body += Buffer.from(p).toString("latin1")));
  expect([body.length, body === data, decoder.done]).toEqual([40_000, true, true]);
});

test("Content-Length goes upstream in canonical form, once: leading zeros and a list of equal values are forwarded as the number (issue 13, item 4)", async () => {
  const before = rawSeen.length;
  const zeros = await send("POST /zeros HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 0005\r\nConnection: close\r\n\r\nhello");
  expect(zeros).toStartWith("HTTP/1.1 200 OK\r\n");
  const list = await send("POST /list HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 5, 5\r\nX-A: 1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
  expect(list).toStartWith("HTTP/1.1 200 OK\r\n");
  const lengths = rawSeen.slice(before).map((r) => [...r.slice(0, r.indexOf("\r\n\r\n")).matchAll(/\r\ncontent-length: ([^\r]*)/gi)].map((m) => m[1]));
  expect(lengths).toEqual([["5"], ["5"]]);
  for (const r of rawSeen.slice(before)) expect(r).toEndWith("\r\n\r\nhello");
});

test("an absolute-form target is routed by its authority; a Host that names another site is refused before routing", async () => {
  const before = received.length;
  const abs = await send("GET http://app.test/abs?q=1 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
  expect(abs).toStartWith("HTTP/1.1 200 OK\r\n");
  expect(received.slice(before).map((r) => [r.path, r.host])).toEqual([["/abs?q=1", "app.test"]]);
  const evil = await send("GET http://app.test/x HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n");
  expect(evil).toStartWith("HTTP/1.1 400 Bad Request\r\n");
  expect(received.length).toBe(before + 1);
});

test("pipelined requests to different sites are answered in order, the gateway's own answers included", async () => {
  const text = await send(
    "GET /one HTTP/1.1\r\nHost: app.test\r\n\r\nGET / HTTP/1.1\r\nHost: other.test\r\n\r\nGET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\nGET /two HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
  );
  expect([...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]))).toEqual([200, 308, 404, 200]);
  expect(text.indexOf("origin saw GET /one")).toBeLessThan(text.indexOf("origin saw GET /two"));
  expect(text).toContain("location: https://elsewhere.test/");
  // The gateway's own error says its length, so it is not chunked.
  expect(text).toMatch(/HTTP\/1\.1 404 Not Found\r\n(?:[^\r]+\r\n)*content-length: \d+\r\n/);
  expect(text).toContain("x-request-id: ");
});
