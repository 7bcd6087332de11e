import { afterAll, beforeAll, expect, test } from "bun:test";
import { freePort, origin, rawRequest, startGateway, type TestGateway } from "./harness.ts";

const ok = origin(() => new Response("fine"));
// Reads the whole request body before answering, as an upload handler does.
const reader = origin(async (req) => new Response(`got ${(await req.arrayBuffer()).byteLength}`));
const hits = { slow: 0 };
const slow = origin(async () => {
  hits.slow++;
  await Bun.sleep(3000);
  return new Response("late");
});
// An "origin" that answers every connection with bytes that are not HTTP.
const garbage = Bun.listen({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    data(s) {
      s.write("this is not http\r\n\r\n");
      s.end();
    },
  },
});
// An origin that promises 100000 bytes and hangs up after 5.
const truncating = Bun.listen({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    data(s) {
      s.write("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nContent-Type: text/plain\r\n\r\nhello");
      setTimeout(() => s.end(), 50);
    },
  },
});
// The same with a small declared length, which the gateway reads whole before answering.
const truncatingSmall = Bun.listen({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    data(s) {
      s.write("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhello");
      setTimeout(() => s.end(), 50);
    },
  },
});
const dead1 = freePort();
const dead2 = freePort();
let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway({
    routes: {
      failover: `hosts = ["failover.example"]\nupstreams = ["http://127.0.0.1:${dead1}", "http://127.0.0.1:${ok.port}"]\nfail_cooldown = "30s"\n`,
      down: `hosts = ["down.example"]\nupstreams = ["http://127.0.0.1:${dead2}"]\nfail_cooldown = "30s"\n`,
      slow: `hosts = ["slow.example"]\nupstreams = ["http://127.0.0.1:${slow.port}"]\nresponse_header_timeout = "500ms"\n`,
      garbage: `hosts = ["garbage.example"]\nupstreams = ["http://127.0.0.1:${garbage.port}"]\n`,
      truncating: `hosts = ["truncating.example"]\nupstreams = ["http://127.0.0.1:${truncating.port}"]\n`,
      "truncating-small": `hosts = ["truncating-small.example"]\nupstreams = ["http://127.0.0.1:${truncatingSmall.port}"]\n`,
      small: `hosts = ["small.example"]\nupstreams = ["http://127.0.0.1:${reader.port}"]\nmax_body_size = "1KiB"\n`,
    },
  });
});

afterAll(async () => {
  await gw.cleanup();
  ok.stop(true);
  reader.stop(true);
  slow.stop(true);
  garbage.stop(true);
  truncating.stop(true);
  truncatingSmall.stop(true);
});

test("a refused endpoint is skipped and the request goes to the next one", async () => {
  for (let i = 0; i < 4; i++) {
    const res = await gw.request("failover.example");
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("fine");
  }
  const metrics = await (await fetch(`${gw.admin}/metrics`)).text();
  // One refusal, then the cool-down keeps the dead endpoint out of rotation.
  expect(metrics).toContain(`gatehouse_upstream_requests_total{route="failover",upstream="http://127.0.0.1:${dead1}",outcome="refused"} 1`);
  expect(metrics).toContain(`gatehouse_upstream_healthy{route="failover",upstream="http://127.0.0.1:${dead1}"} 0`);
  expect(metrics).toContain(`gatehouse_upstream_healthy{route="failover",upstream="http://127.0.0.1:${ok.port}"} 1`);
});

test("an unreachable sole upstream gets 502, and 502 again while it cools down (tried anyway: ejection never empties a pool)", async () => {
  const first = await gw.request("down.example", "/", { headers: { "x-request-id": "err-502" } });
  expect(first.status).toBe(502);
  expect(first.headers.get("x-request-id")).toBe("err-502");
  expect(await first.text()).toContain("request id: err-502");
  const second = await gw.request("down.example");
  expect(second.status).toBe(502);
  expect(await second.text()).toContain("upstream unreachable");
  const line = await gw.waitForLog((l) => l.msg === "access" && l.request_id === "err-502");
  expect(line.status).toBe(502);
  expect(String(line.error)).toContain("connection refused");
});

test("an upstream that does not answer in time gets 504", async () => {
  const t0 = performance.now();
  const res = await gw.request("slow.example");
  expect(res.status).toBe(504);
  expect(performance.now() - t0).toBeLessThan(2500);
});

test("an upstream that sends garbage gets 502 and the gateway keeps serving", async () => {
  const res = await gw.request("garbage.example");
  expect(res.status).toBe(502);
  expect((await gw.request("failover.example")).status).toBe(200);
});

test("an upstream that closes mid-response aborts the client's response instead of passing it off as complete", async () => {
  const raw = await rawRequest(gw.httpPort, "GET / HTTP/1.1\r\nHost: truncating.example\r\n\r\n");
  expect(raw).toStartWith("HTTP/1.1 200");
  expect(raw).toContain("hello");
  // Chunked without the terminating zero-length chunk, or short of Content-Length: either way the client can tell.
  const body = raw.slice(raw.indexOf("\r\n\r\n") + 4);
  expect(body.endsWith("0\r\n\r\n")).toBe(false);
  const line = await gw.waitForLog((l) => l.msg === "access" && l.host === "truncating.example");
  expect(String(line.error)).toContain("upstream body failed");
  expect((await gw.request("failover.example")).status).toBe(200);
});

test("a small response that breaks off before its declared length becomes a clean 502", async () => {
  const res = await gw.request("truncating-small.example", "/", { headers: { "x-request-id": "cut-short" } });
  expect(res.status).toBe(502);
  expect(await res.text()).toContain("upstream response broke off");
  const line = await gw.waitForLog((l) => l.msg === "access" && l.request_id === "cut-short");
  expect(String(line.error)).toContain("upstream body failed");
});

test("a body over the route's limit gets 413, declared or streamed", async () => {
  const declared = await gw.request("small.example", "/", { method: "POST", body: "x".repeat(2048) });
  expect(declared.status).toBe(413);
  const stream = new ReadableStream({
    start(c) {
      for (let i = 0; i < 4; i++) c.enqueue(new Uint8Array(512));
      c.close();
    },
  });
  const streamed = await gw.request("small.example", "/", { method: "POST", body: stream });
  expect(streamed.status).toBe(413);
  const fits = await gw.request("small.example", "/", { method: "POST", body: "x".repeat(100) });
  expect(fits.status).toBe(200);
  expect(await fits.text()).toBe("got 100");
});

test("malformed requests get 400 or 431 and the process keeps serving", async () => {
  expect(await rawRequest(gw.httpPort, "THIS IS NOT HTTP\r\n\r\n")).toStartWith("HTTP/1.1 400");
  expect(await rawRequest(gw.httpPort, "GET / HTTP/1.1\r\n\r\n")).toStartWith("HTTP/1.1 400");
  const badHost = await rawRequest(gw.httpPort, "GET / HTTP/1.1\r\nHost: bad host!\r\nConnection: close\r\n\r\n");
  expect(badHost).toStartWith("HTTP/1.1 400");
  expect(badHost).toContain("invalid Host header");
  const big = await rawRequest(gw.httpPort, `GET / HTTP/1.1\r\nHost: failover.example\r\nX-Big: ${"a".repeat(70_000)}\r\n\r\n`);
  expect(big).toStartWith("HTTP/1.1 431");
  expect((await gw.request("failover.example")).status).toBe(200);
});
