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

/** trickler opens `n` connections from 127.0.1.x that each declare a body of `declared` bytes and send a few bytes of it every 100 ms until stopped. */
function trickler(port: number, n: number, declared: number) {
  const socks: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect({ host: "127.0.0.1", port, localAddress: `127.0.1.${1 + (i % 250)}` });
    s.on("error", () => undefined);
    s.write(`POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: ${declared}\r\n\r\n`);
    socks.push(s);
  }
  const timer = setInterval(() => {
    for (const s of socks) s.write("xxxx");
  }, 100);
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
  const slow = trickler(g.httpPort, 40, 100_000);
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
