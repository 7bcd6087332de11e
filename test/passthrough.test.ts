import { afterAll, beforeAll, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import { origin, rawRequest, startGateway, type TestGateway } from "./harness.ts";

const TEXT = "compress me ".repeat(200);
const GZ = gzipSync(TEXT);
const up = origin(
  (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/gzip") return new Response(GZ, { headers: { "content-encoding": "gzip", "content-type": "text/plain" } });
    if (path === "/redirect") return new Response(null, { status: 302, headers: { location: "/elsewhere" } });
    if (path === "/stall") {
      // Headers and 100 KiB at once, then nothing: the idle timeout must cut it.
      return new Response(
        new ReadableStream({
          start(c) {
            c.enqueue(new Uint8Array(100 * 1024));
          },
        }),
      );
    }
    if (path === "/head") return new Response("body", { headers: { "x-kind": "head" } });
    return new Response("?", { status: 404 });
  },
  { idleTimeout: 30 },
);
let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway({ routes: { p: `hosts = ["p.example"]\nupstreams = ["http://127.0.0.1:${up.port}"]\nidle_timeout = "1s"\n` } });
});

afterAll(async () => {
  await gw.cleanup();
  up.stop(true);
});

test("compressed responses pass through undecoded, with their Content-Encoding", async () => {
  const raw = await rawRequest(gw.httpPort, "GET /gzip HTTP/1.1\r\nHost: p.example\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n");
  expect(raw).toMatch(/content-encoding: gzip/i);
  expect(raw).toMatch(new RegExp(`content-length: ${GZ.byteLength}`, "i"));
  expect(raw).not.toContain("compress me");
});

test("redirects from the upstream are passed to the client, not followed", async () => {
  const res = await gw.request("p.example", "/redirect");
  expect(res.status).toBe(302);
  expect(res.headers.get("location")).toBe("/elsewhere");
});

test("HEAD is forwarded as HEAD and answered without a body", async () => {
  const raw = await rawRequest(gw.httpPort, "HEAD /head HTTP/1.1\r\nHost: p.example\r\nConnection: close\r\n\r\n");
  expect(raw).toStartWith("HTTP/1.1 200");
  expect(raw).toMatch(/x-kind: head/i);
  expect(raw.endsWith("\r\n\r\n")).toBe(true);
});

test("an upstream that stalls mid-body is cut after idle_timeout", async () => {
  const t0 = performance.now();
  const res = await gw.request("p.example", "/stall");
  expect(res.status).toBe(200);
  let n = 0;
  const outcome = await (async () => {
    try {
      for await (const c of res.body!) n += c.byteLength;
      return "ended";
    } catch {
      return "aborted";
    }
  })();
  const elapsed = performance.now() - t0;
  expect(n).toBe(100 * 1024);
  expect(outcome).toBe("aborted");
  expect(elapsed).toBeGreaterThan(900);
  console.log(`stalled body cut after ${Math.round(elapsed)} ms`);
  expect(elapsed).toBeLessThan(2000);
  const line = await gw.waitForLog((l) => l.msg === "access" && l.path === "/stall");
  expect(String(line.error)).toContain("upstream body failed: idle for more than 1000ms");
});
