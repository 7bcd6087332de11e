import { afterAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { origin, startGateway } from "./harness.ts";

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
