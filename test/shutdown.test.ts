import { afterAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { origin, startGateway } from "./harness.ts";
import { Client } from "./raw-client.ts";

const slow = origin(async () => {
  await Bun.sleep(800);
  return new Response("finished");
});
afterAll(() => slow.stop(true));

test("SIGTERM finishes in-flight requests, refuses new ones, reports not ready, exits 0", async () => {
  const gw = await startGateway({ routes: { slow: `hosts = ["slow.example"]\nupstreams = ["http://127.0.0.1:${slow.port}"]\n` } });
  expect(existsSync(join(gw.dir, "gatehouse.pid"))).toBe(true);
  const inflight = gw.request("slow.example");
  await Bun.sleep(150);
  gw.proc.kill("SIGTERM");
  await gw.waitForLog((l) => l.msg === "draining");
  expect((await fetch(`${gw.admin}/readyz`)).status).toBe(503);
  const refused = await gw.request("slow.example").then(
    () => false,
    () => true,
  );
  expect(refused).toBe(true);
  const res = await inflight;
  expect(res.status).toBe(200);
  expect(await res.text()).toBe("finished");
  expect(await gw.proc.exited).toBe(0);
  expect(existsSync(join(gw.dir, "gatehouse.pid"))).toBe(false);
  await gw.cleanup();
});

test("the grace period bounds the drain", async () => {
  const hang = origin(async () => {
    await Bun.sleep(20_000);
    return new Response("never");
  });
  const gw = await startGateway({ routes: { hang: `hosts = ["hang.example"]\nupstreams = ["http://127.0.0.1:${hang.port}"]\n` } });
  // shutdown_grace is 5s in the test config; override to 500ms through a reload.
  const cfg = join(gw.dir, "config.toml");
  await Bun.write(cfg, (await Bun.file(cfg).text()).replace('shutdown_grace = "5s"', 'shutdown_grace = "500ms"'));
  await gw.reload();
  const pending = gw.request("hang.example").catch(() => "reset");
  await Bun.sleep(100);
  const t0 = performance.now();
  gw.proc.kill("SIGINT");
  expect(await gw.proc.exited).toBe(0);
  expect(performance.now() - t0).toBeLessThan(3000);
  await gw.waitForLog((l) => l.msg.startsWith("grace period over"));
  await pending;
  hang.stop(true);
  await gw.cleanup();
});

test("SIGTERM closes WebSockets through the gateway with 1001 both ways, between frames, and exits well before the grace period ends", async () => {
  let upstreamClose: number | undefined;
  const ws = origin((req, server) => (server.upgrade(req, { data: undefined }) ? undefined : new Response("no")), {
    websocket: {
      message(s: import("bun").ServerWebSocket<unknown>, m: string | Buffer) {
        // A large frame, so that it is still on its way in pieces when the shutdown comes.
        s.send(typeof m === "string" && m === "big" ? "x".repeat(4 << 20) : m);
      },
      close(_s: unknown, code: number) {
        upstreamClose = code;
      },
    },
  });
  const gw = await startGateway({ routes: { ws: `hosts = ["ws.example"]\nupstreams = ["http://127.0.0.1:${ws.port}"]\n` } });
  const client = new WebSocket(`ws://127.0.0.1:${gw.httpPort}/`, { headers: { host: "ws.example" } } as never);
  const messages: number[] = [];
  const closed = new Promise<number>((resolve) => (client.onclose = (e) => resolve(e.code)));
  client.onmessage = (e) => messages.push(String(e.data).length);
  await new Promise((r, j) => {
    client.onopen = r;
    client.onerror = j;
  });
  client.send("big");
  await Bun.sleep(20);
  const t0 = performance.now();
  gw.proc.kill("SIGTERM");
  const code = await Promise.race([closed, Bun.sleep(4000).then(() => -1)]);
  // The 4 MiB message arrived whole (the close frame waited for its end), then 1001 (going away).
  expect([code, messages]).toEqual([1001, [4 << 20]]);
  expect(await gw.proc.exited).toBe(0);
  expect(performance.now() - t0).toBeLessThan(4000); // shutdown_grace is 5s in the test config
  const deadline = Date.now() + 2000;
  while (upstreamClose === undefined && Date.now() < deadline) await Bun.sleep(10);
  expect(upstreamClose).toBe(1001);
  await gw.cleanup();
  ws.stop(true);
});

test("during the drain a keep-alive client loses nothing: an answer says Connection: close, and a request sent on a connection left idle is still served (issue 13, item 3)", async () => {
  const quick = origin(() => new Response("ok", { headers: { "cache-control": "no-store" } }));
  const gw = await startGateway({ routes: { quick: `hosts = ["quick.example"]\nupstreams = ["http://127.0.0.1:${quick.port}"]\n` } });
  try {
    // Two keep-alive connections: one idle when the drain starts (its client sends its next request just after), one answered during the drain.
    const idle = await Client.open(gw.httpPort);
    const busy = await Client.open(gw.httpPort);
    const fresh = await Client.open(gw.httpPort);
    const req = "GET / HTTP/1.1\r\nHost: quick.example\r\n\r\n";
    for (const c of [idle, busy]) {
      c.send(req);
      await c.until((x) => x.text.endsWith("ok"), 2000, "the first answer");
      c.text = "";
    }
    gw.proc.kill("SIGTERM");
    await gw.waitForLog((l) => l.msg === "draining");
    // A connection made before the drain that has sent nothing yet: its head, begun within the grace and ended after it, is still served.
    fresh.send("GET / HTTP/1.1\r\n");
    busy.send(req);
    await busy.until((x) => x.text.endsWith("ok"), 2000, "an answer during the drain");
    idle.send(req);
    await idle.until((x) => x.text.endsWith("ok") || x.closed, 2000, "an answer to the request sent on the idle connection");
    await Bun.sleep(1200);
    fresh.send("Host: quick.example\r\n\r\n");
    await fresh.until((x) => x.text.endsWith("ok") || x.closed, 2000, "an answer to the head that began within the grace");
    for (const c of [busy, idle, fresh]) {
      expect(c.text).toStartWith("HTTP/1.1 200 OK\r\n");
      expect(c.text.toLowerCase()).toContain("\r\nconnection: close\r\n");
      await c.until((x) => x.closed, 3000, "the close after the answer");
    }
    expect(await gw.proc.exited).toBe(0);
  } finally {
    quick.stop(true);
    await gw.cleanup();
  }
});
