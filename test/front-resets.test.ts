/** Clients that reset as soon as they connect, on listeners that accept PROXY preambles (whose peer address is looked up at accept): nothing thrown, nothing left counted. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import net from "node:net";
import { freePort, origin, startGateway, type TestGateway } from "./harness.ts";

const upstream = origin(() => new Response("ok"));
let gw: TestGateway;
let https: number;

beforeAll(async () => {
  https = freePort();
  gw = await startGateway({
    routes: { a: `hosts = ["a.test"]\ntls = "internal"\nupstreams = ["http://127.0.0.1:${upstream.port}"]\n` },
    listenExtra: `https = "127.0.0.1:${https}"\nproxy_protocol = ["127.0.0.2/32"]`,
  });
});
afterAll(async () => {
  await gw?.cleanup();
  upstream.stop(true);
});

/** resetAtOnce connects from 127.0.0.2 and resets the connection as soon as it is made. */
function resetAtOnce(port: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.2" }, () => {
      s.resetAndDestroy();
      resolve();
    });
    s.once("error", () => resolve());
  });
}

test("60 resets at once on the HTTP and the HTTPS listener: no exception, requests still answered, and a shutdown does not wait for handshakes that never were", async () => {
  for (let i = 0; i < 60; i++) await Promise.all([resetAtOnce(gw.httpPort), resetAtOnce(https)]);
  await Bun.sleep(300);
  expect(gw.logs.filter((l) => l.msg === "uncaught exception")).toEqual([]);
  expect((await gw.request("a.test", "/")).status).toBe(308); // answered: to HTTPS
  // A handshake counted at accept and never settled would hold the drain until shutdown_grace (5 s here).
  const t0 = performance.now();
  expect(await gw.stop()).toBe(0);
  expect(performance.now() - t0).toBeLessThan(2500);
}, 30_000);
