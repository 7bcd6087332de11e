/** Slow clients against the upstream slots (issue 13, item 1): request bodies are read before an endpoint is chosen, so clients that trickle them hold no max_inflight slot and no upstream connection. */
import { afterAll, expect, test } from "bun:test";
import net from "node:net";
import { origin, startGateway, type TestGateway } from "./harness.ts";

const app = origin(async (req) => new Response(`got ${(await req.arrayBuffer()).byteLength}`, { headers: { "cache-control": "no-store" } }));
const gateways: TestGateway[] = [];
afterAll(async () => {
  for (const g of gateways) await g.cleanup();
  app.stop(true);
});

/**
 * trickler opens `n` connections from 127.0.1.x that each declare a body of `declared(i)` bytes (or, with heads, send a head that never ends) and send a few
 * bytes more every `everyMs` until stopped.
 */
function trickler(port: number, n: number, declared: (i: number) => number, heads = 0, everyMs = 100) {
  const socks: net.Socket[] = [];
  for (let i = 0; i < n + heads; i++) {
    const s = net.connect({ host: "127.0.0.1", port, localAddress: `127.0.1.${1 + (i % 250)}` });
    s.on("error", () => undefined);
    s.write(i < n ? `POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: ${declared(i)}\r\n\r\n` : "GET / HTTP/1.1\r\nHost: app.test\r\n");
    socks.push(s);
  }
  const timer = setInterval(() => {
    for (let i = 0; i < socks.length; i++) if (!socks[i]!.destroyed) socks[i]!.write(i < n ? "xxxx" : "X-Slow: 1\r\n");
  }, everyMs);
  return {
    socks,
    stop() {
      clearInterval(timer);
      for (const s of socks) s.destroy();
    },
  };
}

test("40 clients trickling bodies under request_buffer hold no upstream slot: with max_inflight = 4, every normal request is answered", async () => {
  const g = await startGateway({ routes: { app: `hosts = ["app.test"]\nupstreams = ["http://127.0.0.1:${app.port}"]\nmax_inflight = 4\n` } });
  gateways.push(g);
  const slow = trickler(g.httpPort, 40, () => 100_000);
  try {
    await Bun.sleep(300);
    const answers: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await g.request("app.test", "/", { method: "POST", body: "hello" });
      answers.push(`${r.status} ${await r.text()}`);
    }
    expect(new Set(answers)).toEqual(new Set(["200 got 5"]));
    const m = await (await fetch(`${g.admin}/upstreams`)).json();
    expect(JSON.stringify(m)).toContain('"inflight":0');
  } finally {
    slow.stop();
  }
});

test("a body over request_buffer streams to the upstream; one that stops for longer than body_timeout is cut with 408 and frees its slot", async () => {
  const g = await startGateway({
    routes: { app: `hosts = ["app.test"]\nupstreams = ["http://127.0.0.1:${app.port}"]\nmax_inflight = 1\n` },
    extra: `[limits]\nrequest_buffer = "16KiB"\nbody_timeout = "500ms"\n`,
  });
  gateways.push(g);
  const s = net.connect({ host: "127.0.0.1", port: g.httpPort, localAddress: "127.0.1.7" });
  let got = "";
  s.on("data", (d) => (got += d.toString("latin1")));
  s.on("error", () => undefined);
  s.write(`POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\n${"y".repeat(20_000)}`);
  try {
    const deadline = Date.now() + 3000;
    while (!got.includes("\r\n\r\n") && Date.now() < deadline) await Bun.sleep(20);
    expect(got).toStartWith("HTTP/1.1 408 ");
    const r = await g.request("app.test", "/", { method: "POST", body: "after" });
    expect([r.status, await r.text()]).toEqual([200, "got 5"]);
  } finally {
    s.destroy();
  }
});

test("2,000 slow bodies (100 KB and 10 MiB) and 2,000 slow heads from 127.0.1.0/24: at least 99 % of normal requests from 127.0.0.1 succeed", async () => {
  const g = await startGateway({ routes: { app: `hosts = ["app.test"]\nupstreams = ["http://127.0.0.1:${app.port}"]\n` } });
  gateways.push(g);
  const slow = trickler(g.httpPort, 2000, (i) => (i % 2 === 0 ? 100_000 : 10 * 1024 * 1024), 2000, 1000);
  try {
    await Bun.sleep(2000);
    let ok = 0;
    const n = 200;
    const deadline = Date.now() + 20_000;
    for (let i = 0; i < n && Date.now() < deadline; i++) {
      const r = await g.request("app.test", "/", i % 2 === 0 ? undefined : { method: "POST", body: "hello" }).catch(() => undefined);
      if (r !== undefined && r.status === 200) ok++;
      await r?.text();
    }
    expect(ok).toBeGreaterThanOrEqual(Math.ceil(n * 0.99));
  } finally {
    slow.stop();
  }
}, 60_000);

test("a body that keeps coming but slower than 500 bytes/s on average is cut with 408 once the 10 s grace is over", async () => {
  const g = await startGateway({ routes: { app: `hosts = ["app.test"]\nupstreams = ["http://127.0.0.1:${app.port}"]\n` } });
  gateways.push(g);
  const s = net.connect({ host: "127.0.0.1", port: g.httpPort, localAddress: "127.0.1.9" });
  let got = "";
  s.on("data", (d) => (got += d.toString("latin1")));
  s.on("error", () => undefined);
  s.write("POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\n");
  const t0 = Date.now();
  // 8 bytes every 250 ms: 32 bytes/s, never a pause as long as body_timeout.
  const timer = setInterval(() => s.write("xxxxxxxx"), 250);
  try {
    while (!got.includes("\r\n\r\n") && Date.now() - t0 < 15_000) await Bun.sleep(50);
    expect(got).toStartWith("HTTP/1.1 408 ");
    expect(Date.now() - t0).toBeGreaterThan(9_000);
    expect(await g.waitForLog((l) => l.msg === "access" && l.status === 408)).toMatchObject({ error: "the request body came slower than 500 bytes/s" });
  } finally {
    clearInterval(timer);
    s.destroy();
  }
}, 30_000);
