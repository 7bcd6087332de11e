import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { directorySource, embeddedSource } from "./file-source.ts";
import type { Answered } from "../lib/reply.ts";
import { staticHandler } from "./handler.ts";

let base: string;
let root: string;
let serve: ReturnType<typeof staticHandler>;
const MTIME = new Date("2026-01-02T03:04:05Z");

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), "gatehouse-static-"));
  root = join(base, "public");
  mkdirSync(join(root, "docs"), { recursive: true });
  mkdirSync(join(root, ".git"));
  mkdirSync(join(root, ".well-known"));
  writeFileSync(join(base, "secret.txt"), "outside the root");
  writeFileSync(join(root, "index.html"), "<h1>home</h1>");
  writeFileSync(join(root, "app.js"), "console.log(1)");
  writeFileSync(join(root, "style.css"), "body{}");
  writeFileSync(join(root, "data.bin"), "0123456789");
  writeFileSync(join(root, "docs", "index.html"), "docs");
  writeFileSync(join(root, ".env"), "SECRET=1");
  writeFileSync(join(root, ".well-known", "security.txt"), "contact");
  symlinkSync(join(base, "secret.txt"), join(root, "escape.txt"));
  symlinkSync(join(root, "app.js"), join(root, "alias.js"));
  for (const f of ["index.html", "app.js", "data.bin"]) utimesSync(join(root, f), MTIME, MTIME);
  serve = staticHandler(directorySource(root, { ttlMs: 0 }), { cacheControl: "public, max-age=60" });
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

/** ask is a request as the static handler reads it. */
const ask = (headers: Record<string, string> = {}, method = "GET", query = "") => ({ method, headers: new Headers(headers), query });
/** now takes an answer that must not have waited: without Accept-Encoding nothing is compressed, so every answer is an immediate Response. */
function now(r: Answered | Promise<Answered>): Response {
  if (!(r instanceof Response)) throw new Error("expected an immediate Response");
  return r;
}
const get = (path: string, headers: Record<string, string> = {}, method = "GET") => now(serve(ask(headers, method), path));

test("files are served with content type, length, validators and cache-control", async () => {
  const r = get("/app.js");
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
  expect(r.headers.get("content-length")).toBe("14");
  expect(r.headers.get("last-modified")).toBe(MTIME.toUTCString());
  expect(r.headers.get("etag")).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
  expect(r.headers.get("cache-control")).toBe("public, max-age=60");
  expect(await r.text()).toBe("console.log(1)");
  expect(get("/style.css").headers.get("content-type")).toBe("text/css; charset=utf-8");
  expect(get("/data.bin").headers.get("content-type")).toBe("application/octet-stream");
});

test("directories serve index.html, and get a trailing slash by redirect first", async () => {
  expect(await get("/").text()).toBe("<h1>home</h1>");
  const r = now(serve(ask({}, "GET", "?x=1"), "/docs"));
  expect(r.status).toBe(308);
  expect(r.headers.get("location")).toBe("/docs/?x=1");
  expect(await get("/docs/").text()).toBe("docs");
});

test("conditional requests: If-None-Match and If-Modified-Since give 304, If-Match and If-Unmodified-Since give 412", () => {
  const etag = get("/app.js").headers.get("etag")!;
  expect(get("/app.js", { "if-none-match": etag }).status).toBe(304);
  expect(get("/app.js", { "if-none-match": `"other", W/${etag}` }).status).toBe(304);
  expect(get("/app.js", { "if-none-match": '"other"' }).status).toBe(200);
  expect(get("/app.js", { "if-modified-since": MTIME.toUTCString() }).status).toBe(304);
  expect(get("/app.js", { "if-modified-since": new Date(MTIME.getTime() - 1000).toUTCString() }).status).toBe(200);
  // If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3).
  expect(get("/app.js", { "if-none-match": '"other"', "if-modified-since": MTIME.toUTCString() }).status).toBe(200);
  expect(get("/app.js", { "if-match": '"other"' }).status).toBe(412);
  expect(get("/app.js", { "if-match": etag }).status).toBe(200);
  expect(get("/app.js", { "if-unmodified-since": new Date(MTIME.getTime() - 5000).toUTCString() }).status).toBe(412);
});

test("ranges: 206 for one range, suffix and open ranges, 416 past the end, full body for several ranges or a stale If-Range", async () => {
  const r = get("/data.bin", { range: "bytes=2-5" });
  expect(r.status).toBe(206);
  expect(r.headers.get("content-range")).toBe("bytes 2-5/10");
  expect(r.headers.get("content-length")).toBe("4");
  expect(await r.text()).toBe("2345");
  expect(await get("/data.bin", { range: "bytes=-3" }).text()).toBe("789");
  expect(await get("/data.bin", { range: "bytes=7-" }).text()).toBe("789");
  expect(await get("/data.bin", { range: "bytes=8-100" }).text()).toBe("89");
  const bad = get("/data.bin", { range: "bytes=10-" });
  expect(bad.status).toBe(416);
  expect(bad.headers.get("content-range")).toBe("bytes */10");
  expect(get("/data.bin", { range: "bytes=0-1,4-5" }).status).toBe(200);
  expect(get("/data.bin", { range: "lines=1-2" }).status).toBe(200);
  expect(get("/data.bin", { range: "bytes=0-1", "if-range": '"stale"' }).status).toBe(200);
  const etag = get("/data.bin").headers.get("etag")!;
  expect(get("/data.bin", { range: "bytes=0-1", "if-range": etag }).status).toBe(206);
});

test("HEAD has the headers of GET and no body; other methods get 405", async () => {
  const r = get("/app.js", {}, "HEAD");
  expect(r.status).toBe(200);
  expect(r.headers.get("content-length")).toBe("14");
  expect(await r.text()).toBe("");
  const post = get("/app.js", {}, "POST");
  expect(post.status).toBe(405);
  expect(post.headers.get("allow")).toBe("GET, HEAD");
});

test("nothing outside the root is served: traversal, encoded traversal, backslashes, NUL, symlinks out", () => {
  for (const p of ["/../secret.txt", "/%2e%2e/secret.txt", "/docs/..%2f..%2fsecret.txt", "/..%5csecret.txt", "/app.js%00.png", "/%E0%A4%A", "/./app.js"]) {
    expect([400, 404]).toContain(get(p).status);
  }
  expect(get("/escape.txt").status).toBe(404);
  expect(get("/alias.js").status).toBe(200);
});

test("dotfiles are hidden except /.well-known/", async () => {
  expect(get("/.env").status).toBe(404);
  expect(get("/.git/").status).toBe(404);
  expect(await get("/.well-known/security.txt").text()).toBe("contact");
  expect(get("/missing.html").status).toBe(404);
});

test("an embedded source serves its pages with the same rules", async () => {
  const s = staticHandler(embeddedSource({ "/index.html": { body: "<p>hi</p>" } }, MTIME));
  const r = now(s(ask(), "/"));
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toBe("text/html; charset=utf-8");
  expect(await r.text()).toBe("<p>hi</p>");
  expect(now(s(ask({ "if-none-match": r.headers.get("etag")! }), "/")).status).toBe(304);
  expect(now(s(ask(), "/nope")).status).toBe(404);
});
