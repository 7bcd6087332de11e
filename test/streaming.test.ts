import { afterAll, beforeAll, expect, test } from "bun:test";
import { origin, startGateway, type TestGateway } from "./harness.ts";

const GiB = 1024 ** 3;
const CHUNK = new Uint8Array(1024 * 1024).fill(120);
let uploadBytes = 0;
let cancelled = false;
let slowStarted = false;

const up = origin(
  async (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/upload") {
      let n = 0;
      for await (const c of req.body!) n += c.byteLength;
      uploadBytes = n;
      return new Response(String(n));
    }
    if (url.pathname === "/download") {
      let sent = 0;
      return new Response(
        new ReadableStream(
          {
            pull(c) {
              if (sent >= GiB) return c.close();
              c.enqueue(CHUNK);
              sent += CHUNK.byteLength;
            },
          },
          { highWaterMark: 0 },
        ),
        { headers: { "content-type": "application/octet-stream" } },
      );
    }
    if (url.pathname === "/slow") {
      // One chunk every 100 ms, forever, until the reader goes away.
      slowStarted = true;
      let timer: Timer;
      return new Response(
        new ReadableStream({
          start(c) {
            timer = setInterval(() => {
              try {
                c.enqueue(new TextEncoder().encode("tick\n"));
              } catch {
                clearInterval(timer);
              }
            }, 100);
          },
          cancel() {
            cancelled = true;
            clearInterval(timer);
          },
        }),
      );
    }
    return new Response("?", { status: 404 });
  },
  { maxRequestBodySize: 2 * GiB, idleTimeout: 60 },
);
let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway({ routes: { big: `hosts = ["big.example"]\nupstreams = ["http://127.0.0.1:${up.port}"]\nmax_body_size = "2GiB"\n` } });
});

afterAll(async () => {
  await gw.cleanup();
  up.stop(true);
});

test("a 1 GiB download streams through in bounded memory", async () => {
  const before = gw.memory().rssKiB;
  const res = await gw.request("big.example", "/download");
  expect(res.status).toBe(200);
  let n = 0;
  for await (const c of res.body!) n += c.byteLength;
  expect(n).toBe(GiB);
  const peak = gw.memory().peakKiB;
  console.log(`download: rss before ${before} KiB, peak ${peak} KiB`);
  // Buffering the body would need over 1 GiB; streaming stays near the idle size.
  expect(peak).toBeLessThan(before + 256 * 1024);
}, 60_000);

test("a 1 GiB upload streams through in bounded memory", async () => {
  let sent = 0;
  const body = new ReadableStream(
    {
      pull(c) {
        if (sent >= GiB) return c.close();
        c.enqueue(CHUNK);
        sent += CHUNK.byteLength;
      },
    },
    { highWaterMark: 0 },
  );
  const res = await gw.request("big.example", "/upload", { method: "POST", body });
  expect(res.status).toBe(200);
  expect(await res.text()).toBe(String(GiB));
  expect(uploadBytes).toBe(GiB);
  const peak = gw.memory().peakKiB;
  console.log(`upload: peak ${peak} KiB`);
  expect(peak).toBeLessThan(512 * 1024);
}, 60_000);

test("a client that goes away mid-body cancels the upstream response", async () => {
  const ctrl = new AbortController();
  const res = await gw.request("big.example", "/slow", { signal: ctrl.signal });
  const reader = res.body!.getReader();
  const first = await reader.read();
  expect(new TextDecoder().decode(first.value)).toContain("tick");
  expect(slowStarted).toBe(true);
  ctrl.abort();
  const deadline = Date.now() + 3000;
  while (!cancelled && Date.now() < deadline) await Bun.sleep(20);
  expect(cancelled).toBe(true);
  const line = await gw.waitForLog((l) => l.msg === "access" && l.path === "/slow");
  expect(String(line.error)).toContain("client closed");
});
