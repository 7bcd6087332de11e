/** Static sites compress text by Accept-Encoding, keep the compressed forms, prefer precompressed siblings, and vary and tag every coding apart. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { brotliDecompressSync, gunzipSync, zstdDecompressSync } from "node:zlib";
import { BUN, MAIN, rawRequest, startGateway, tempDir, type TestGateway } from "./harness.ts";

const HOST = "static.example";
const site = tempDir();
const pub = join(site, "public");
const T0 = new Date("2026-03-04T05:06:07Z");
const LATER = new Date("2026-03-04T06:00:00Z");
let gw: TestGateway;

/** css makes a stylesheet of about size bytes, its rules numbered from seed so two of them differ. */
function css(size: number, seed = 0): string {
  let out = "";
  for (let i = seed; out.length < size; i++)
    out += `.rule-${i} { color: #${(i * 2654435761).toString(16).slice(-6).padStart(6, "0")}; margin: ${i % 17}px; }\n`;
  return out.slice(0, size);
}

const APP = css(20_000);
const PRE = css(6_000, 100);
const SIBLING_TEXT = { zstd: "/* zstd sibling */", br: "/* br sibling */", gzip: "/* gzip sibling */" } as const;
const ONLY_GZ = css(3_000, 300);
const OLD = css(3_000, 500);
const CHANGE_A = css(4_000, 700);
const CHANGE_B = css(4_000, 900);
const PNG = new Uint8Array(5000).map((_, i) => (i * 7919) % 251);

type Coding = keyof typeof SIBLING_TEXT;
const CODINGS: readonly Coding[] = ["zstd", "br", "gzip"];

function decode(coding: string | null, bytes: Uint8Array): string {
  if (coding === "zstd") return zstdDecompressSync(bytes).toString();
  if (coding === "br") return brotliDecompressSync(bytes).toString();
  if (coding === "gzip") return gunzipSync(bytes).toString();
  return new TextDecoder().decode(bytes);
}

function encode(coding: Coding, text: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  if (coding === "zstd") return Bun.zstdCompressSync(bytes);
  if (coding === "gzip") return Bun.gzipSync(bytes);
  return require("node:zlib").brotliCompressSync(bytes);
}

/** get asks with an Accept-Encoding (and more fields) and keeps the body as sent: fetch must not decode it. */
async function get(path: string, ae: string, extra: Record<string, string> = {}, method = "GET") {
  const r = await gw.request(HOST, path, { method, headers: { "accept-encoding": ae, ...extra }, decompress: false } as RequestInit);
  const body = new Uint8Array(await r.arrayBuffer());
  return { status: r.status, h: r.headers, body, text: () => decode(r.headers.get("content-encoding"), body) };
}

beforeAll(async () => {
  mkdirSync(pub);
  writeFileSync(join(pub, "app.css"), APP);
  writeFileSync(join(pub, "pre.css"), PRE);
  for (const c of CODINGS) writeFileSync(join(pub, `pre.css${c === "zstd" ? ".zst" : c === "br" ? ".br" : ".gz"}`), encode(c, SIBLING_TEXT[c]));
  writeFileSync(join(pub, "only-gz.css"), ONLY_GZ);
  writeFileSync(join(pub, "only-gz.css.gz"), encode("gzip", SIBLING_TEXT.gzip));
  writeFileSync(join(pub, "old.css"), OLD);
  writeFileSync(join(pub, "old.css.gz"), encode("gzip", SIBLING_TEXT.gzip));
  writeFileSync(join(pub, "change.css"), CHANGE_A);
  writeFileSync(join(pub, "head.css"), css(5_000, 1100));
  writeFileSync(join(pub, "tiny.css"), "a{b:c}");
  writeFileSync(join(pub, "img.png"), PNG);
  for (const f of ["app.css", "pre.css", "only-gz.css", "old.css", "change.css", "tiny.css", "img.png", "head.css"]) utimesSync(join(pub, f), T0, T0);
  for (const f of ["pre.css.zst", "pre.css.br", "pre.css.gz", "only-gz.css.gz"]) utimesSync(join(pub, f), LATER, LATER);
  // A sibling older than its file is stale: it must not be served.
  utimesSync(join(pub, "old.css"), LATER, LATER);
  utimesSync(join(pub, "old.css.gz"), T0, T0);
  gw = await startGateway({ routes: { s: `hosts = ["${HOST}"]\nstatic = "${pub}"\ncache_control = "public, max-age=60"\n` } });
});

afterAll(async () => {
  await gw.cleanup();
  rmSync(site, { recursive: true, force: true });
});

test("each coding is served as the client asks, decodes to the file, varies on Accept-Encoding and has its own ETag", async () => {
  const plain = await get("/app.css", "identity");
  expect(plain.h.get("content-encoding")).toBeNull();
  expect(plain.text()).toBe(APP);
  const base = plain.h.get("etag")!;
  expect(base).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
  for (const c of CODINGS) {
    const r = await get("/app.css", c);
    expect(r.status).toBe(200);
    expect(r.h.get("content-encoding")).toBe(c);
    expect(r.h.get("content-type")).toBe("text/css; charset=utf-8");
    expect(r.h.get("vary")).toBe("accept-encoding");
    expect(r.h.get("etag")).toBe(`${base.slice(0, -1)}-${c}"`);
    expect(r.h.get("cache-control")).toBe("public, max-age=60");
    expect(Number(r.h.get("content-length"))).toBe(r.body.byteLength);
    expect(r.body.byteLength).toBeLessThan(APP.length / 3);
    expect(r.text()).toBe(APP);
    // The second answer comes from the stored form: the same bytes.
    const again = await get("/app.css", c);
    expect(again.body).toEqual(r.body);
  }
  // q-values choose; q=0 refuses a coding; nothing acceptable means the file as it is, still with Vary.
  expect((await get("/app.css", "gzip;q=0.5, br")).h.get("content-encoding")).toBe("br");
  expect((await get("/app.css", "zstd;q=0, br;q=0, gzip")).h.get("content-encoding")).toBe("gzip");
  const refused = await get("/app.css", "zstd;q=0, br;q=0, gzip;q=0");
  expect(refused.h.get("content-encoding")).toBeNull();
  expect(refused.h.get("vary")).toBe("accept-encoding");
  expect(refused.h.get("etag")).toBe(base);
  expect(refused.text()).toBe(APP);
  expect((await get("/app.css", "*;q=0")).h.get("content-encoding")).toBeNull();
});

test("a client without Accept-Encoding gets the file as it is, with Vary", async () => {
  const raw = await rawRequest(gw.httpPort, `GET /app.css HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`);
  const [head, body] = [raw.slice(0, raw.indexOf("\r\n\r\n")), raw.slice(raw.indexOf("\r\n\r\n") + 4)];
  expect(head).toMatch(/^HTTP\/1\.1 200/);
  expect(head).not.toMatch(/content-encoding/i);
  expect(head).toMatch(/\r\nvary: accept-encoding/i);
  expect(body).toBe(APP);
});

test("no compression for a type that does not gain, nor for a file too small to gain; no Vary on them", async () => {
  const png = await get("/img.png", "gzip, br, zstd");
  expect(png.h.get("content-encoding")).toBeNull();
  expect(png.h.get("vary")).toBeNull();
  expect(png.body).toEqual(PNG);
  const tiny = await get("/tiny.css", "gzip");
  expect(tiny.h.get("content-encoding")).toBeNull();
  expect(tiny.text()).toBe("a{b:c}");
});

test("precompressed siblings are served as they are, with the file's type, preferred over compressing; a stale one is not", async () => {
  for (const c of CODINGS) {
    const r = await get("/pre.css", c);
    expect(r.h.get("content-encoding")).toBe(c);
    expect(r.h.get("content-type")).toBe("text/css; charset=utf-8");
    expect(r.h.get("vary")).toBe("accept-encoding");
    expect(r.h.get("etag")).toContain(`-${c}-`);
    expect(Number(r.h.get("content-length"))).toBe(r.body.byteLength);
    expect(r.text()).toBe(SIBLING_TEXT[c]);
  }
  expect((await get("/pre.css", "identity")).text()).toBe(PRE);
  // Only a .gz sibling: a client that prefers zstd still gets the ready gzip, not zstd made on the fly.
  const gz = await get("/only-gz.css", "zstd, br, gzip");
  expect(gz.h.get("content-encoding")).toBe("gzip");
  expect(gz.text()).toBe(SIBLING_TEXT.gzip);
  // ...unless it refuses gzip: then zstd on the fly, from the file itself.
  const z = await get("/only-gz.css", "zstd, gzip;q=0");
  expect(z.h.get("content-encoding")).toBe("zstd");
  expect(z.text()).toBe(ONLY_GZ);
  // old.css.gz is older than old.css: the file is compressed on the fly instead.
  const old = await get("/old.css", "gzip");
  expect(old.h.get("content-encoding")).toBe("gzip");
  expect(old.text()).toBe(OLD);
});

test("If-None-Match answers 304 per coding, only for the representation the request would get", async () => {
  const tags: Record<string, string> = {};
  for (const ae of ["identity", ...CODINGS]) tags[ae] = (await get("/app.css", ae)).h.get("etag")!;
  expect(new Set(Object.values(tags)).size).toBe(4);
  for (const ae of ["identity", ...CODINGS]) {
    const r = await get("/app.css", ae, { "if-none-match": tags[ae]! });
    expect(r.status).toBe(304);
    expect(r.h.get("etag")).toBe(tags[ae]!);
    expect(r.h.get("vary")).toBe("accept-encoding");
    expect(r.body.byteLength).toBe(0);
  }
  // A tag of another coding is another representation: the full answer in the coding asked for.
  const other = await get("/app.css", "br", { "if-none-match": tags.gzip! });
  expect(other.status).toBe(200);
  expect(other.h.get("content-encoding")).toBe("br");
  expect(other.text()).toBe(APP);
  expect((await get("/app.css", "gzip", { "if-none-match": tags.identity! })).status).toBe(200);
  // A precompressed sibling's tag revalidates too.
  const sib = (await get("/pre.css", "br")).h.get("etag")!;
  expect((await get("/pre.css", "br", { "if-none-match": sib })).status).toBe(304);
});

test("HEAD has GET's headers, compressed length included, even when it is the first to ask", async () => {
  const head = await rawRequest(gw.httpPort, `HEAD /head.css HTTP/1.1\r\nHost: ${HOST}\r\nAccept-Encoding: br\r\nConnection: close\r\n\r\n`);
  expect(head.endsWith("\r\n\r\n")).toBe(true);
  const field = (name: string) => new RegExp(`\r\n${name}: ([^\r]*)`, "i").exec(head)?.[1];
  const g = await get("/head.css", "br");
  expect(field("content-encoding")).toBe("br");
  expect(field("content-length")).toBe(String(g.body.byteLength));
  expect(field("etag")).toBe(g.h.get("etag")!);
  expect(field("vary")).toBe("accept-encoding");
});

test("a Range is answered from the file as it is, whatever the client accepts", async () => {
  const r = await get("/app.css", "gzip, br, zstd", { range: "bytes=10-29" });
  expect(r.status).toBe(206);
  expect(r.h.get("content-encoding")).toBeNull();
  expect(r.h.get("content-range")).toBe(`bytes 10-29/${APP.length}`);
  expect(r.h.get("vary")).toBe("accept-encoding");
  expect(r.h.get("etag")).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
  expect(new TextDecoder().decode(r.body)).toBe(APP.slice(10, 30));
});

test("a file that changes is never served from its old compressed form", async () => {
  const first = await get("/change.css", "gzip");
  expect(first.text()).toBe(CHANGE_A);
  const oldTag = first.h.get("etag")!;
  // Same size, new content and mtime: only the mtime in the key tells the forms apart.
  expect(CHANGE_B.length).toBe(CHANGE_A.length);
  writeFileSync(join(pub, "change.css"), CHANGE_B);
  utimesSync(join(pub, "change.css"), LATER, LATER);
  // The source caches stats for 1 s; the new file shows within a few seconds at most.
  const deadline = Date.now() + 5000;
  let r = await get("/change.css", "gzip");
  while (r.h.get("etag") === oldTag && Date.now() < deadline) {
    await Bun.sleep(100);
    r = await get("/change.css", "gzip");
  }
  expect(r.h.get("etag")).not.toBe(oldTag);
  expect(r.h.get("content-encoding")).toBe("gzip");
  expect(r.text()).toBe(CHANGE_B);
  expect((await get("/change.css", "zstd")).text()).toBe(CHANGE_B);
});

test("gatehouse check refuses [cache] on a static site and [paths.cache] on a static path, naming file, line and key", () => {
  const dir = tempDir();
  try {
    mkdirSync(join(dir, "routes"));
    mkdirSync(join(dir, "public"));
    writeFileSync(join(dir, "config.toml"), '[listen]\nhttp = "127.0.0.1:8080"\n');
    writeFileSync(join(dir, "routes", "a.toml"), 'hosts = ["a.example"]\nstatic = "public"\n[cache]\nttl = "1m"\n');
    // The site's [cache] is for its proxied routes: the static /assets/ entry that inherits it is fine, and so is enabled = false.
    writeFileSync(
      join(dir, "routes", "b.toml"),
      'hosts = ["b.example"]\nupstreams = ["http://127.0.0.1:9"]\n[cache]\n[[paths]]\nprefix = "/assets/"\nstatic = "public"\n' +
        '[[paths]]\nprefix = "/off/"\nstatic = "public"\n[paths.cache]\nenabled = false\n[[paths]]\nprefix = "/img/"\nstatic = "public"\n[paths.cache]\n',
    );
    const r = Bun.spawnSync([BUN, MAIN, "check", "-c", "config.toml"], { cwd: dir, timeout: 20_000 });
    expect(r.exitCode).toBe(1);
    const why = "does not apply to a static site: static sites keep their compressed variants themselves; [cache] applies to proxied routes";
    const expected = "(expected no [cache] table on a route with static (or enabled = false); a site's [cache] still applies to its proxied [[paths]])";
    // A [paths.cache] problem points at the [paths.cache] header of its [[paths]] entry (line 15).
    expect(r.stderr.toString().trim().split("\n")).toEqual([
      `routes/a.toml:3: cache: ${why} ${expected}`,
      `routes/b.toml:15: paths[2].cache: ${why} ${expected}`,
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
