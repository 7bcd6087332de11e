import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { rawRequest, startGateway, tempDir, type TestGateway } from "./harness.ts";

let gw: TestGateway;
const site = tempDir();

beforeAll(async () => {
  mkdirSync(join(site, "public"));
  writeFileSync(join(site, "secret.txt"), "TOP SECRET");
  writeFileSync(join(site, "public", "index.html"), "<h1>static home</h1>");
  writeFileSync(join(site, "public", "big.txt"), "x".repeat(5000));
  gw = await startGateway({
    routes: {
      files: `hosts = ["files.example"]\nstatic = "${join(site, "public")}"\n[[paths]]\nprefix = "/assets/"\nstatic = "${join(site, "public")}"\nstrip_prefix = true\n`,
      welcome: `hosts = ["welcome.example"]\nstatic = "builtin:welcome"\n`,
    },
  });
});

afterAll(() => gw.cleanup());

test("a static site serves files with validators; 304 on revalidation; ranges", async () => {
  const r = await gw.request("files.example", "/");
  expect(r.status).toBe(200);
  expect(await r.text()).toBe("<h1>static home</h1>");
  const etag = r.headers.get("etag")!;
  expect((await gw.request("files.example", "/", { headers: { "if-none-match": etag } })).status).toBe(304);
  const part = await gw.request("files.example", "/big.txt", { headers: { range: "bytes=0-9" } });
  expect(part.status).toBe(206);
  expect(await part.text()).toBe("x".repeat(10));
  const head = await rawRequest(gw.httpPort, "HEAD /big.txt HTTP/1.1\r\nHost: files.example\r\nConnection: close\r\n\r\n");
  expect(head).toMatch(/content-length: 5000/i);
  expect(head.endsWith("\r\n\r\n")).toBe(true);
});

test("strip_prefix mounts the directory under a path", async () => {
  expect(await (await gw.request("files.example", "/assets/index.html")).text()).toBe("<h1>static home</h1>");
});

test("traversal attempts on the wire never reach a file outside the root", async () => {
  for (const target of ["/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt", "/..%5csecret.txt", "/assets/%2e%2e/%2e%2e/secret.txt"]) {
    const raw = await rawRequest(gw.httpPort, `GET ${target} HTTP/1.1\r\nHost: files.example\r\nConnection: close\r\n\r\n`);
    expect(raw).toMatch(/^HTTP\/1\.1 (400|404)/);
    expect(raw).not.toContain("TOP SECRET");
  }
});

test("the built-in welcome page is served from the binary", async () => {
  const r = await gw.request("welcome.example");
  expect(r.status).toBe(200);
  expect(await r.text()).toContain('gatehouse <span class="ok">is running</span>');
});
