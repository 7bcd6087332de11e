/** A real cut link: an upstream in a network namespace of its own behind a veth pair (like a node across the WireGuard tunnel), whose link goes down under load. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { BUN, freePort, origin, startGateway, type TestGateway } from "./harness.ts";

const id = process.pid % 10_000;
const NS = `ghns${id}`;
const HOST_IF = `gh${id}h`;
const NS_IF = `gh${id}n`;
const NET = `10.201.${id % 250}`;
const REMOTE = `${NET}.2`;
const port = freePort();

function ip(...args: string[]): void {
  const r = Bun.spawnSync(["ip", ...args]);
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.toString()}`);
}

const local = origin(() => new Response("local"));
let remote: ReturnType<typeof Bun.spawn> | undefined;
let gw: TestGateway;

beforeAll(async () => {
  ip("netns", "add", NS);
  ip("link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF);
  ip("link", "set", NS_IF, "netns", NS);
  ip("addr", "add", `${NET}.1/30`, "dev", HOST_IF);
  ip("link", "set", HOST_IF, "up");
  ip("netns", "exec", NS, "ip", "addr", "add", `${REMOTE}/30`, "dev", NS_IF);
  ip("netns", "exec", NS, "ip", "link", "set", NS_IF, "up");
  ip("netns", "exec", NS, "ip", "link", "set", "lo", "up");
  remote = Bun.spawn(
    [
      "ip",
      "netns",
      "exec",
      NS,
      BUN,
      "-e",
      `Bun.serve({ hostname: "${REMOTE}", port: ${port}, fetch: () => new Response("remote") }); setInterval(() => {}, 1000);`,
    ],
    { stdout: "ignore", stderr: "ignore" },
  );
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      if ((await (await fetch(`http://${REMOTE}:${port}/`, { signal: AbortSignal.timeout(500) })).text()) === "remote") break;
    } catch {
      if (Date.now() > deadline) throw new Error("the origin in the namespace does not answer");
      await Bun.sleep(50);
    }
  }
  gw = await startGateway({
    routes: {
      site: `hosts = ["ns.test"]\nupstreams = ["http://${REMOTE}:${port}", "http://127.0.0.1:${local.port}"]\ntry_timeout = "300ms"\nfail_cooldown = "10s"\n`,
    },
  });
});

afterAll(async () => {
  await gw?.cleanup();
  remote?.kill();
  local.stop(true);
  Bun.spawnSync(["ip", "link", "del", HOST_IF]);
  Bun.spawnSync(["ip", "netns", "del", NS]);
});

test("the link to a node drops under load: idempotent requests see no failure, only a delay of at most try_timeout until the endpoint is ejected", async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) seen.add(await (await gw.request("ns.test")).text());
  expect(seen).toEqual(new Set(["remote", "local"]));
  let ok = 0;
  let delayed = 0;
  let worst = 0;
  const failed: string[] = [];
  const stopAt = Date.now() + 2500;
  const load = Promise.all(
    Array.from({ length: 4 }, async () => {
      while (Date.now() < stopAt) {
        const t0 = performance.now();
        const r = await gw.request("ns.test");
        const ms = performance.now() - t0;
        worst = Math.max(worst, ms);
        if (ms > 100) delayed++;
        if (r.status === 200) {
          await r.text();
          ok++;
        } else failed.push(`${r.status} ${await r.text()}`);
      }
    }),
  );
  await Bun.sleep(700);
  // The cut: the namespace's side of the link goes down; packets to it are lost, nothing answers (no RST, no ICMP).
  ip("netns", "exec", NS, "ip", "link", "set", NS_IF, "down");
  const cutAt = performance.now();
  await load;
  console.log(
    `link cut: ${ok} requests, ${failed.length} failed, ${delayed} delayed over 100 ms, slowest ${Math.round(worst)} ms, load ran ${Math.round(performance.now() - cutAt)} ms after the cut`,
  );
  expect(failed).toEqual([]);
  expect(worst).toBeLessThan(1000);
  const view = (await (await fetch(`${gw.admin}/upstreams`)).json()) as { upstream: string; available: boolean }[];
  expect(view.find((u) => u.upstream === `http://${REMOTE}:${port}`)?.available).toBe(false);
});
