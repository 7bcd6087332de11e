/** Partial content in the cache (RFC 9111 §3.3–3.4): 206 responses kept as pieces, combined under one strong ETag, answering the ranges they cover; fetch_whole_on_range. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startGateway, type TestGateway } from "./harness.ts";

const BODY = new Uint8Array(300_000).map((_, i) => (i * 7 + 3) & 0xff);
const seen: { path: string; range: string | null }[] = [];
let etag = '"v1"';
const origin = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(req) {
    const path = new URL(req.url).pathname;
    const range = req.headers.get("range");
    seen.push({ path, range });
    const tagged = path.startsWith("/weak") ? { etag: 'W/"w"' } : { etag };
    const headers = { "cache-control": "max-age=600", "content-type": "video/mp4", "accept-ranges": "bytes", ...tagged };
    const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? "");
    if (!m) return new Response(BODY, { headers });
    const [a, b] = [Number(m[1]), Math.min(Number(m[2]), BODY.length - 1)];
    return new Response(BODY.subarray(a, b + 1), { status: 206, headers: { ...headers, "content-range": `bytes ${a}-${b}/${BODY.length}` } });
  },
});
let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({
    routes: {
      site: `hosts = ["range.test"]\nupstreams = ["http://127.0.0.1:${origin.port}"]\n[cache]\n[[paths]]\nprefix = "/whole/"\n[paths.cache]\nfetch_whole_on_range = true\n`,
    },
  });
});
afterAll(async () => {
  await gw?.cleanup();
  origin.stop(true);
});

const range = (path: string, r: string) => gw.request("range.test", path, { headers: { range: r } });
const asked = (path: string) => seen.filter((s) => s.path === path).length;

test("a 206 is kept; a range inside it is answered from the cache; adjacent pieces combine; a range they do not cover goes to the origin", async () => {
  const first = await range("/v/a", "bytes=0-99");
  expect(first.status).toBe(206);
  expect(first.headers.get("cache-status")).toContain("stored; detail=partial");
  expect([...(await first.bytes())]).toEqual([...BODY.subarray(0, 100)]);
  const inside = await range("/v/a", "bytes=10-19");
  expect(inside.status).toBe(206);
  expect(inside.headers.get("content-range")).toBe(`bytes 10-19/${BODY.length}`);
  expect(inside.headers.get("cache-status")).toContain("hit");
  expect([...(await inside.bytes())]).toEqual([...BODY.subarray(10, 20)]);
  expect(asked("/v/a")).toBe(1);
  await (await range("/v/a", "bytes=100-199")).bytes();
  expect(asked("/v/a")).toBe(2);
  const across = await range("/v/a", "bytes=50-150");
  expect(across.headers.get("cache-status")).toContain("detail=partial");
  expect([...(await across.bytes())]).toEqual([...BODY.subarray(50, 151)]);
  expect(asked("/v/a")).toBe(2);
  const beyond = await range("/v/a", "bytes=150-250");
  expect([...(await beyond.bytes())]).toEqual([...BODY.subarray(150, 251)]);
  expect(asked("/v/a")).toBe(3);
  // A full request is not answered from pieces.
  expect((await (await gw.request("range.test", "/v/a")).bytes()).length).toBe(BODY.length);
  expect(asked("/v/a")).toBe(4);
});

test("pieces under another ETag replace the old ones rather than combine; a weak ETag is never kept; If-Range with another ETag goes to the origin", async () => {
  await (await range("/v/b", "bytes=0-99")).bytes();
  etag = '"v2"';
  await (await range("/v/b", "bytes=100-199")).bytes();
  const mixed = await range("/v/b", "bytes=50-150");
  expect(mixed.headers.get("cache-status")).not.toContain("hit");
  await mixed.bytes();
  etag = '"v1"';
  await (await range("/weak", "bytes=0-9")).bytes();
  await (await range("/weak", "bytes=0-9")).bytes();
  expect(asked("/weak")).toBe(2);
  await (await range("/v/c", "bytes=0-99")).bytes();
  const other = await gw.request("range.test", "/v/c", { headers: { range: "bytes=0-9", "if-range": '"other"' } });
  await other.bytes();
  expect(asked("/v/c")).toBe(2);
});

test("fetch_whole_on_range: the client gets its range at once, the whole response is fetched in the background and stored; a later full request is a hit", async () => {
  const r = await range("/whole/movie", "bytes=0-9");
  expect(r.status).toBe(206);
  expect([...(await r.bytes())]).toEqual([...BODY.subarray(0, 10)]);
  const deadline = Date.now() + 3000;
  while (!seen.some((s) => s.path === "/whole/movie" && s.range === null) && Date.now() < deadline) await Bun.sleep(10);
  expect(
    seen
      .filter((s) => s.path === "/whole/movie")
      .map((s) => String(s.range))
      .sort(),
  ).toEqual(["bytes=0-9", "null"]);
  await Bun.sleep(50);
  const full = await gw.request("range.test", "/whole/movie");
  expect(full.headers.get("cache-status")).toContain("hit");
  expect((await full.bytes()).length).toBe(BODY.length);
  const later = await range("/whole/movie", "bytes=1000-1009");
  expect(later.headers.get("cache-status")).toContain("hit");
  expect([...(await later.bytes())]).toEqual([...BODY.subarray(1000, 1010)]);
  expect(asked("/whole/movie")).toBe(2);
});
