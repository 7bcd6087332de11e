/** Cache purges shared through etcd: a purge on one node's admin listener reaches the cache of every node (and every worker of a node with workers). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startEtcd, type TestEtcd } from "./etcd.ts";
import { startGateway, type TestGateway } from "./harness.ts";

let etcd: TestEtcd;
const gateways: TestGateway[] = [];
let asked = 0;
const origin = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch: (req) => new Response(`v${++asked} ${new URL(req.url).pathname}`, { headers: { "cache-control": "max-age=600" } }),
});

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  for (const g of gateways) await g.cleanup();
  origin.stop(true);
  await etcd?.cleanup();
});

/** node starts a caching gateway on etcd (workers > 1: a supervisor and its workers). */
async function node(workers = 1): Promise<TestGateway> {
  const g = await startGateway({
    top: workers > 1 ? `workers = ${workers}` : "",
    extra: `[storage]\nbackend = "etcd"\nendpoints = ["${etcd.url}"]\nprefix = "purge/"\ntimeout = "1s"\n[cache]\nmax_size = "4MiB"\n`,
    routes: { site: `hosts = ["purge.test"]\nupstreams = ["http://127.0.0.1:${origin.port}"]\n[cache]\n` },
  });
  gateways.push(g);
  return g;
}

const body = async (g: TestGateway, path: string) => (await g.request("purge.test", path)).text();

test("a purge on one node's admin listener reaches every node's cache within a second; the answer says the others were told; an unrelated object stays", async () => {
  const a = await node();
  const b = await node(2);
  try {
    const first = await body(a, "/p/1");
    expect(await body(a, "/p/1")).toBe(first);
    // B's two workers each fill their own copy (which worker answers is not fixed: ask a few times, on new connections).
    const onB = new Set<string>();
    for (let i = 0; i < 8; i++) onB.add(await (await b.request("purge.test", "/p/1", { headers: { connection: "close" } })).text());
    const keep = await body(a, "/keep");
    const res = await fetch(`${a.admin}/cache/purge?host=purge.test&prefix=/p/`, { method: "POST" });
    expect(await res.json()).toEqual({ purged: 1, shared: true });
    expect(await body(a, "/p/1")).not.toBe(first);
    await b.waitForLog((l) => l.msg === "cache purge from another node applied" && l.worker === undefined, 3000);
    for (let i = 0; i < 8; i++) expect(onB.has(await (await b.request("purge.test", "/p/1", { headers: { connection: "close" } })).text())).toBe(false);
    expect(await body(a, "/keep")).toBe(keep);
    // Applied once on B (by its supervisor, to every worker), never back on A, where it was made.
    expect(b.logs.filter((l) => l.msg === "cache purge from another node applied").length).toBe(1);
    expect(a.logs.filter((l) => l.msg === "cache purge from another node applied")).toEqual([]);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test("etcd down: the purge is made here and the answer says the other nodes were not told", async () => {
  const a = await node();
  try {
    await body(a, "/down");
    await etcd.stop();
    try {
      const res = await fetch(`${a.admin}/cache/purge?all`, { method: "POST" });
      const answer = (await res.json()) as { purged: number; shared: boolean; error: string };
      expect([res.status, answer.purged, answer.shared]).toEqual([200, 1, false]);
      expect(answer.error).toContain("etcd unreachable");
      await a.waitForLog((l) => l.msg === "cache purge not passed on to the other nodes");
    } finally {
      await etcd.start();
    }
  } finally {
    await a.stop();
  }
});
