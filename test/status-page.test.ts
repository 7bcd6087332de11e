/** The admin status page (GET /status) in a real browser: headless Chromium loads it from a running gateway and the test reads the rendered DOM. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, origin, startGateway, type TestGateway } from "./harness.ts";

const CHROMIUM = "/usr/bin/chromium";

const up = origin(() => new Response("hello", { headers: { "cache-control": "public, max-age=60" } }));
const UP = `http://127.0.0.1:${up.port}`;
let gw: TestGateway;
/** profile is Chromium's user data directory, thrown away at the end. */
const profile = mkdtempSync(join(tmpdir(), "gatehouse-chromium-"));

beforeAll(async () => {
  const hash = await Bun.password.hash("correct horse", { algorithm: "bcrypt", cost: 4 });
  gw = await startGateway({
    listenExtra: `https = "127.0.0.1:${freePort()}"`,
    routes: {
      shop: `hosts = ["shop.test", "www.shop.test"]
upstreams = ["${UP}"]
[cache]
[[rate_limit]]
key = "client"
rate = "10/s"
burst = 20
[[paths]]
prefix = "/api/"
name = "<b>&api"
upstreams = ["${UP}"]
[paths.basic_auth]
users = { alice = "${hash}" }
`,
      docs: `hosts = ["docs.test"]\nstatic = "builtin:welcome"\n`,
      secure: `hosts = ["secure.test"]\ntls = "internal"\nhttps_redirect = false\nupstreams = ["${UP}"]\n`,
    },
  });
  // One miss and one hit: a hit ratio of 50 %.
  for (let i = 0; i < 2; i++) expect((await gw.request("shop.test", "/page")).status).toBe(200);
  // A reload that fails (a problem text with HTML in it), then one that succeeds.
  gw.writeRoute("broken", `hosts = ["broken.test"]\nupstreams = ["<b>&amp;"]\n`);
  expect((await gw.reload()).msg).toStartWith("config rejected");
  gw.removeRoute("broken");
  expect((await gw.reload()).msg).toBe("config reloaded");
}, 30_000);

afterAll(async () => {
  await gw?.cleanup();
  up.stop(true);
  rmSync(profile, { recursive: true, force: true });
});

/** chromium runs headless Chromium with args (loopback only: no background networking), bounded to 30 s; it returns stdout. */
async function chromium(...args: string[]): Promise<string> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install the Debian package chromium`);
  const proc = Bun.spawn(
    [
      CHROMIUM,
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-extensions",
      `--user-data-dir=${profile}`,
      ...args,
    ],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 30_000, killSignal: "SIGKILL" },
  );
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`chromium exited with ${code}:\n${err.slice(-2000)}`);
  return out;
}

const ENTITIES: Record<string, string> = { "&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"', "&#39;": "'", "&nbsp;": " " };

/** text is what a piece of serialized DOM reads as: tags dropped (a <br> as a space), entities decoded, white space collapsed. */
function text(html: string): string {
  return html
    .replace(/<br>/g, " ")
    .replace(/<[^>]*>/g, "")
    .replace(/&(?:lt|gt|amp|quot|#39|nbsp);/g, (e) => ENTITIES[e]!)
    .replace(/\s+/g, " ")
    .trim();
}

/** section is the serialized DOM of one <section id>; rows are its table rows, each as its cells' texts. */
function section(dom: string, id: string): string {
  const m = new RegExp(`<section id="${id}">([\\s\\S]*?)</section>`).exec(dom);
  if (!m) throw new Error(`no section ${id} in the rendered page`);
  return m[1]!;
}

function rows(html: string): string[][] {
  return [...html.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((r) => [...r[1]!.matchAll(/<td>([\s\S]*?)<\/td>/g)].map((c) => text(c[1]!))).filter((r) => r.length);
}

test("Chromium renders /status: sites and routes, the certificate, endpoints with health, the cache, and both reloads", async () => {
  const res = await fetch(`${gw.admin}/status`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
  expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
  await res.text();

  const dom = await chromium("--dump-dom", `${gw.admin}/status`);
  expect(dom).toContain("<title>gatehouse status</title>");
  // Names from config files are text, never markup: the route name <b>&api is no <b> element.
  expect(dom).not.toMatch(/<b>/);

  const sites = section(dom, "sites");
  expect(text(sites)).toContain("shop");
  expect(text(sites)).toContain("hosts shop.test, www.shop.test · tls off");
  const routes = rows(sites);
  expect(routes).toContainEqual(["shop", "/", "proxy", UP, "✓ cached", "rate limit 10/s (burst 20) per client"]);
  expect(routes).toContainEqual(["<b>&api", "/api", "proxy", UP, "✓ cached", "rate limit 10/s (burst 20) per client basic auth"]);
  expect(routes).toContainEqual(["docs", "/", "static", "builtin:welcome", "– no cache", "–"]);

  const certs = rows(section(dom, "certificates"));
  expect(certs).toHaveLength(1);
  expect(certs[0]![0]).toBe("secure");
  expect(certs[0]![1]).toBe("internal");
  expect(certs[0]![2]).toBe("secure.test");
  expect(certs[0]![4]).toMatch(/^✓ \d+ days left$/);
  expect(certs[0]![5]).toMatch(/UTC \(in \d+ d\)$/); // the planned renewal, in the future

  const endpoints = rows(section(dom, "endpoints"));
  const shop = endpoints.find((r) => r[0] === "shop");
  expect(shop?.slice(0, 4)).toEqual(["shop", UP, "✓ healthy", "0"]);
  expect(endpoints.find((r) => r[0] === "<b>&api")?.slice(1, 3)).toEqual([UP, "✓ healthy"]);

  const cache = text(section(dom, "cache"));
  expect(cache).toContain("Objects1");
  expect(cache).toContain("Hit ratio50.0 %");
  expect(cache).toMatch(/Lookups.*hit 1 · miss 1/);

  expect(text(section(dom, "workers"))).toContain("One process (workers = 1)");

  const reloads = rows(section(dom, "reloads"));
  expect(reloads.map((r) => r.slice(1, 3))).toEqual([
    ["reload 2", "✓ success"],
    ["reload 1", "✗ failure"],
    ["start", "✓ success"],
  ]);
  expect(reloads[1]![3]).toContain('routes/broken.toml:2: upstreams[0]: cannot read "<b>&amp;" as a URL');
  expect(reloads[0]![3]).toBe("–");
}, 60_000);

test("Chromium takes a screenshot of /status: a PNG of the window's size with something on it", async () => {
  const png = join(profile, "status.png");
  await chromium("--window-size=1280,1600", "--hide-scrollbars", `--screenshot=${png}`, `${gw.admin}/status`);
  const bytes = readFileSync(png);
  expect([...bytes.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  // IHDR: width and height, big-endian, at bytes 16 and 20.
  expect([bytes.readUInt32BE(16), bytes.readUInt32BE(20)]).toEqual([1280, 1600]);
  // A blank page compresses to a few KB; tables of text do not.
  expect(bytes.length).toBeGreaterThan(30_000);
}, 60_000);

test("with workers = 2 the supervisor's page lists its workers, each worker's endpoints and the cache merged over them", async () => {
  const sup = await startGateway({ top: "workers = 2", routes: { shop: `hosts = ["shop.test"]\nupstreams = ["${UP}"]\n[cache]\n` } });
  try {
    // Each worker has its own cache: a miss, then hits, wherever the connections land.
    for (let i = 0; i < 6; i++) expect((await sup.request("shop.test", "/merged")).status).toBe(200);
    const res = await fetch(`${sup.admin}/status`);
    expect(res.status).toBe(200);
    const html = await res.text();
    const workers = rows(section(html, "workers"));
    expect(workers.map((w) => [w[0], w[2]])).toEqual([
      ["1", "✓ ready"],
      ["2", "✓ ready"],
    ]);
    const endpoints = rows(section(html, "endpoints"));
    expect(endpoints.map((e) => e.slice(0, 4)).sort()).toEqual([
      ["shop", UP, "1", "✓ healthy"],
      ["shop", UP, "2", "✓ healthy"],
    ]);
    const cache = text(section(html, "cache"));
    const lookups = /hit (\d+) · miss (\d+)/.exec(cache);
    expect(Number(lookups?.[1]) + Number(lookups?.[2])).toBe(6);
    expect(Number(lookups?.[2])).toBeGreaterThanOrEqual(1);
    expect(cache).toMatch(/Objects[12]Hit ratio/);
    expect(cache).toContain("of 512.0 MiB"); // [cache] max_size of each worker
    expect(rows(section(html, "reloads")).map((r) => r.slice(1, 3))).toEqual([["start", "✓ success"]]);
  } finally {
    await sup.cleanup();
  }
}, 60_000);
