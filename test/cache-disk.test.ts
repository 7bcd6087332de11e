/** The cache's disk tier end to end: kept across restarts, shared by workers (one fill per object), bounded with LRU-like eviction, damaged files dropped, large objects streamed, purge by tag (hard and soft) across both tiers. */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startGateway, type TestGateway, tempDir } from "./harness.ts";

const asked = new Map<string, number>();
const BIG = 2 * 1024 * 1024 + 17;
const big = new Uint8Array(BIG).map((_, i) => (i * 31 + 7) & 0xff);
const origin = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    const path = new URL(req.url).pathname;
    const n = (asked.get(path) ?? 0) + 1;
    asked.set(path, n);
    if (path.startsWith("/slow/")) await Bun.sleep(300);
    if (path.startsWith("/big")) return new Response(big, { headers: { "cache-control": "max-age=600", "content-type": "application/octet-stream" } });
    const headers: Record<string, string> = { "cache-control": "max-age=600", "content-type": "text/plain" };
    if (path.startsWith("/tagged/")) headers["cache-tag"] = path.includes("p42") ? "product-42, shop" : "shop";
    if (path.startsWith("/soft/")) {
      headers["cache-tag"] = "soft";
      headers["cache-control"] = "max-age=600, stale-while-revalidate=60";
    }
    const size = path.startsWith("/sized/") ? 10_000 : 100;
    return new Response(`${path} #${n} `.padEnd(size, "."), { headers });
  },
});
const dirs: string[] = [];
const gateways: TestGateway[] = [];
afterAll(async () => {
  for (const g of gateways) await g.cleanup();
  origin.stop(true);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** node starts a gateway whose cache keeps its disk tier in dir; memory is its memory tier's max_size (tiny: every hit comes from disk). */
async function node(dir: string, opts: { workers?: number; memory?: string; disk?: string; object?: string; extra?: string } = {}): Promise<TestGateway> {
  const g = await startGateway({
    top: opts.workers ? `workers = ${opts.workers}` : "",
    extra: `[cache]\ndir = "${dir}"\nmax_size = "${opts.memory ?? "64MiB"}"\nmax_object_size = "${opts.object ?? "4MiB"}"\n${opts.disk ? `disk_size = "${opts.disk}"\n` : ""}${opts.extra ?? ""}`,
    routes: { site: `hosts = ["disk.test"]\nupstreams = ["http://127.0.0.1:${origin.port}"]\n[cache]\n` },
  });
  gateways.push(g);
  return g;
}

function cacheDir(): string {
  const d = tempDir("gatehouse-disk-");
  dirs.push(d);
  return d;
}

/** files lists the object files of a disk tier, with their sizes. */
function files(dir: string): { path: string; size: number }[] {
  const root = join(dir, "v2", "objects");
  const size = (p: string) => {
    try {
      return statSync(p).size;
    } catch {
      return -1; // evicted between the listing and the look
    }
  };
  return readdirSync(root)
    .flatMap((sub) => readdirSync(join(root, sub)).map((f) => ({ path: join(root, sub, f), size: size(join(root, sub, f)) })))
    .filter((f) => f.size >= 0);
}

/** holds says whether a file of the tier is the object of path (false when it was evicted meanwhile). */
function holds(file: string, path: string): boolean {
  try {
    return readFileSync(file).includes(`"http://disk.test${path}"`);
  } catch {
    return false;
  }
}

/** holding waits until the disk tier holds a file for path (writes come after the answer). */
async function holding(dir: string, path: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!files(dir).some((f) => holds(f.path, path)) && Date.now() < deadline) await Bun.sleep(10);
}

/** settle waits until the disk tier holds n object files (writes come after the answer). */
async function settle(dir: string, n: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (files(dir).length < n && Date.now() < deadline) await Bun.sleep(10);
}

const get = (g: TestGateway, path: string, init: RequestInit = {}) => g.request("disk.test", path, init);

test("a restart with a warm disk tier serves hits from its first request, without asking the origin", async () => {
  const dir = cacheDir();
  const a = await node(dir);
  const first = await (await get(a, "/warm")).text();
  await settle(dir, 1);
  await a.stop();
  await Bun.sleep(1100);
  const t0 = Date.now();
  const b = await node(dir);
  const res = await get(b, "/warm");
  expect(Date.now() - t0).toBeLessThan(3000);
  expect(res.headers.get("cache-status")).toContain("detail=disk");
  // Its age counts the time it spent on disk.
  expect(Number(res.headers.get("age"))).toBeGreaterThanOrEqual(1);
  expect(await res.text()).toBe(first);
  expect(asked.get("/warm")).toBe(1);
  await b.stop();
});

test("workers = 2 share the disk tier: concurrent misses in both workers make one request to the origin", async () => {
  const dir = cacheDir();
  const g = await node(dir, { workers: 2 });
  const bodies = await Promise.all(Array.from({ length: 16 }, () => get(g, "/slow/one", { headers: { connection: "close" } }).then((r) => r.text())));
  expect(new Set(bodies).size).toBe(1);
  expect(asked.get("/slow/one")).toBe(1);
  // Both workers opened the index at the same moment, and both use it.
  expect(g.logs.filter((l) => l.msg.startsWith("cache dir unusable"))).toEqual([]);
  const lines = () => g.accessLogs().filter((l) => l.path === "/slow/one");
  const deadline = Date.now() + 3000;
  while (lines().length < 16 && Date.now() < deadline) await Bun.sleep(10);
  // Both workers answered; one request of all was a miss, and the worker that did not fill answered from the other's file.
  expect(new Set(lines().map((l) => l.worker)).size).toBe(2);
  const misses = lines().filter((l) => l.cache === "miss");
  expect(misses.length).toBe(1);
  expect(lines().some((l) => l.worker !== misses[0]!.worker && l.cache === "hit")).toBe(true);
  await g.stop();
});

test("a damaged file (a flipped byte, or cut short) is a miss, removed and logged once; the next fill replaces it", async () => {
  const dir = cacheDir();
  const a = await node(dir);
  await get(a, "/flip");
  await get(a, "/cut");
  await settle(dir, 2);
  await a.stop();
  const [f1, f2] = files(dir);
  const bytes = readFileSync(f1!.path);
  bytes.writeUInt8(bytes.readUInt8(bytes.length - 3) ^ 0xff, bytes.length - 3);
  writeFileSync(f1!.path, bytes);
  truncateSync(f2!.path, f2!.size - 10);
  const b = await node(dir);
  for (const path of ["/flip", "/cut"]) {
    const res = await get(b, path);
    expect(res.headers.get("cache-status")).toContain("fwd=uri-miss");
    expect(await res.text()).toStartWith(`${path} #2 `);
  }
  const damaged = b.logs.filter((l) => l.msg === "cache file damaged; removed");
  expect(damaged.map((l) => l.url).sort()).toEqual(["http://disk.test/cut", "http://disk.test/flip"]);
  await settle(dir, 2);
  expect((await get(b, "/flip")).headers.get("cache-status")).toContain("hit");
  expect(b.logs.filter((l) => l.msg === "cache file damaged; removed").length).toBe(2);
  expect(await b.metric("gatehouse_cache_disk_damaged_total")).toBe("2");
  await b.stop();
});

test("disk_size bounds the tier: the least recently used objects go first, a recently read one stays", async () => {
  const dir = cacheDir();
  // A memory tier too small for any object: every hit is a disk read, which counts as a use.
  const g = await node(dir, { memory: "1KiB", disk: "64KiB", object: "16KiB" });
  for (let i = 0; i < 4; i++) await get(g, `/sized/${i}`);
  await settle(dir, 4);
  await Bun.sleep(1100);
  expect((await get(g, "/sized/0")).headers.get("cache-status")).toContain("detail=disk");
  await Bun.sleep(1100); // the use is written with the next batch
  // Three more (about 10 KiB each) go over 64 KiB: the two least recently used (1 and 2, not 0, read since) make room.
  for (let i = 4; i < 7; i++) {
    await get(g, `/sized/${i}`);
    await holding(dir, `/sized/${i}`);
  }
  await Bun.sleep(200);
  const total = files(dir).reduce((n, f) => n + f.size, 0);
  expect(total).toBeLessThanOrEqual(64 * 1024);
  expect(Number(await g.metric("gatehouse_cache_disk_size_bytes"))).toBe(total);
  expect((await get(g, "/sized/0")).headers.get("cache-status")).toContain("hit");
  expect((await get(g, "/sized/1")).headers.get("cache-status")).toContain("fwd=uri-miss");
  expect((await get(g, "/sized/6")).headers.get("cache-status")).toContain("hit");
  expect((await get(g, "/sized/3")).headers.get("cache-status")).toContain("hit");
  await g.stop();
});

test("a large object streams from its file (not read whole), intact; a damaged one is cut short, never completed with wrong bytes", async () => {
  const dir = cacheDir();
  const a = await node(dir, { memory: "1KiB" });
  expect((await (await get(a, "/big")).bytes()).length).toBe(BIG);
  await settle(dir, 1);
  const res = await get(a, "/big");
  expect(res.headers.get("cache-status")).toContain("detail=disk");
  expect(Buffer.from(await res.bytes()).equals(Buffer.from(big))).toBe(true);
  const range = await get(a, "/big", { headers: { range: "bytes=1000000-1000009" } });
  expect(range.status).toBe(206);
  expect([...(await range.bytes())]).toEqual([...big.subarray(1_000_000, 1_000_010)]);
  const [f] = files(dir);
  const bytes = readFileSync(f!.path);
  bytes.writeUInt8(bytes.readUInt8(bytes.length - 100) ^ 0xff, bytes.length - 100);
  writeFileSync(f!.path, bytes);
  const cut = await get(a, "/big");
  expect(cut.status).toBe(200);
  expect(cut.headers.get("content-length")).toBe(String(BIG));
  const got = await cut.bytes().then(
    (b) => b.length,
    () => -1,
  );
  expect(got).not.toBe(BIG);
  await a.waitForLog((l) => l.msg === "cache file damaged; removed" && l.url === "http://disk.test/big");
  expect(files(dir)).toEqual([]);
  await a.stop();
});

test("purge by tag removes every object with the tag from both tiers and answers the count; the tag fields stay from clients unless pass_tag_fields", async () => {
  const dir = cacheDir();
  const g = await node(dir);
  const first = await get(g, "/tagged/p42-a");
  expect(first.headers.get("cache-tag")).toBeNull();
  await get(g, "/tagged/p42-b");
  await get(g, "/tagged/other");
  await settle(dir, 3);
  const purge = await fetch(`${g.admin}/cache/purge?tag=product-42`, { method: "POST" });
  expect(await purge.json()).toEqual({ purged: 2 });
  expect(files(dir).length).toBe(1);
  expect((await get(g, "/tagged/p42-a")).headers.get("cache-status")).toContain("fwd=uri-miss");
  expect((await get(g, "/tagged/other")).headers.get("cache-status")).toContain("hit");
  expect(await (await fetch(`${g.admin}/cache/purge?tag=shop`, { method: "POST" })).json()).toEqual({ purged: 2 });
  await g.stop();
  const passing = await node(cacheDir(), { extra: "pass_tag_fields = true\n" });
  const res = await get(passing, "/tagged/p42-c");
  expect(res.headers.get("cache-tag")).toBe("product-42, shop");
  expect((await get(passing, "/tagged/p42-c")).headers.get("cache-tag")).toBe("product-42, shop");
  await passing.stop();
});

test("a soft purge by tag marks the objects stale, on disk too: stale-while-revalidate answers at once while the origin is asked in the background", async () => {
  const dir = cacheDir();
  // A memory tier too small for the object: the stale mark is read from the disk tier's index.
  const g = await node(dir, { memory: "1KiB" });
  const before = await (await get(g, "/soft/x")).text();
  await settle(dir, 1);
  expect(await (await fetch(`${g.admin}/cache/purge?tag=soft&soft`, { method: "POST" })).json()).toEqual({ purged: 1 });
  const stale = await get(g, "/soft/x");
  expect(stale.headers.get("cache-status")).toContain("detail=stale");
  expect(await stale.text()).toBe(before);
  const deadline = Date.now() + 3000;
  while (asked.get("/soft/x") !== 2 && Date.now() < deadline) await Bun.sleep(10);
  expect(asked.get("/soft/x")).toBe(2);
  await g.stop();
});

test("a cache dir of an earlier layout (v1/) is removed at start, not read: the tier starts empty in its own directory", async () => {
  const dir = cacheDir();
  mkdirSync(join(dir, "v1", "objects", "00"), { recursive: true });
  writeFileSync(join(dir, "v1", "index.db"), "an index of another layout");
  const g = await node(dir);
  expect(existsSync(join(dir, "v1"))).toBe(false);
  await g.waitForLog((l) => l.msg === "cache dir of an earlier layout removed");
  expect((await get(g, "/layout")).headers.get("cache-status")).toContain("fwd=uri-miss");
  await settle(dir, 1);
  expect(files(dir).length).toBe(1);
  await g.stop();
});

test("workers = 2: a purge by tag removes the object from the disk tier and from the memory tier of each worker", async () => {
  const dir = cacheDir();
  const g = await node(dir, { workers: 2 });
  // Each worker reads it (fresh connections spread over both): into each one's memory tier, from the one file.
  const seen = new Set<string>();
  for (let i = 0; i < 12; i++) seen.add(await (await get(g, "/tagged/p42-w", { headers: { connection: "close" } })).text());
  expect(seen.size).toBe(1);
  await settle(dir, 1);
  const purge = await fetch(`${g.admin}/cache/purge?tag=product-42`, { method: "POST" });
  expect(((await purge.json()) as { purged: number }).purged).toBeGreaterThanOrEqual(1);
  expect(files(dir)).toEqual([]);
  // No worker answers from memory any more: every answer is new.
  for (let i = 0; i < 8; i++) {
    const res = await get(g, "/tagged/p42-w", { headers: { connection: "close" } });
    expect(seen.has(await res.text())).toBe(false);
  }
  await g.stop();
});
