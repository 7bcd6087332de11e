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
