/** The admin status page (GET /status) in a real browser: headless Chromium loads it from a running gateway and the test reads the rendered DOM. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { escapeHtml, renderStatus } from "../src/observability/status-page.ts";
import { freePort, origin, startGateway, type TestGateway } from "./harness.ts";
import { type Client, clientHello, connect } from "./tcp-helpers.ts";

const CHROMIUM = "/usr/bin/chromium";

const up = origin(() => new Response("hello", { headers: { "cache-control": "public, max-age=60" } }));
const UP = `http://127.0.0.1:${up.port}`;
/** echo is a TCP origin that answers each chunk with "echo:" and the chunk: fewer bytes in than out. */
const echo = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (s, d) => void s.write(`echo:${d}`) } });
/** DEAD is a loopback port nothing listens on: connects to it are refused. */
const DEAD = `tcp://127.0.0.1:${freePort()}`;
const SNI_UP = `tcp://127.0.0.1:${freePort()}`;
const plainPort = freePort();
const sniPort = freePort();
const imapsPort = freePort();
let gw: TestGateway;
/** held is a connection through the plain [[tcp]] route, open while the page is read. */
let held: Client | undefined;
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
    extra: `
[[tcp]]
name = "plain"
listen = "127.0.0.1:${plainPort}"
mode = "plain"
upstreams = ["tcp://127.0.0.1:${echo.port}"]

[[tcp]]
name = "bysni"
listen = "127.0.0.1:${sniPort}"
mode = "passthrough"
default = ["${DEAD}"]
[[tcp.sni]]
hosts = ["git.test", "*.apps.test"]
upstreams = ["${SNI_UP}"]

[[tcp]]
name = "imaps"
listen = "127.0.0.1:${imapsPort}"
mode = "terminate"
site = "secure"
upstreams = ["tcp://127.0.0.1:${echo.port}"]
send_proxy_protocol = 2
`,
  });
  // 10 bytes in, 15 out, and the connection stays open.
  held = await connect(plainPort);
  expect(await held.says("hello tcp\n", "echo:hello tcp\n")).toBe("echo:hello tcp\n");
  // A name no [[tcp.sni]] entry takes goes to the default, which refuses: one upstream failure, one refusal (no_upstream).
  const other = await connect(sniPort);
  other.socket.write(await clientHello("other.test"));
  await other.until((c) => c.closed);
  other.socket.destroy();
  for (const deadline = Date.now() + 5000; (await gw.metric('gatehouse_tcp_refused_total{route="bysni",reason="no_upstream"}')) !== "1"; ) {
    if (Date.now() > deadline) throw new Error("the refusal was not counted within 5 s");
    await Bun.sleep(20);
  }
  // One miss and one hit: a hit ratio of 50 %.
  for (let i = 0; i < 2; i++) expect((await gw.request("shop.test", "/page")).status).toBe(200);
  // A reload that fails (a problem text with HTML in it), then one that succeeds.
  gw.writeRoute("broken", `hosts = ["broken.test"]\nupstreams = ["<b>&amp;"]\n`);
  expect((await gw.reload()).msg).toStartWith("config rejected");
  gw.removeRoute("broken");
  expect((await gw.reload()).msg).toBe("config reloaded");
}, 30_000);

afterAll(async () => {
  held?.socket.destroy();
  await gw?.cleanup();
  up.stop(true);
  echo.stop(true);
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

test("Chromium renders /status: sites and routes, the certificate, endpoints with health, TCP routes, the cache, and both reloads", async () => {
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

  expect(dom).toContain('<a href="#tcp">TCP routes</a>');
  const tcp = rows(section(dom, "tcp"));
  expect(tcp).toEqual([
    ["plain", `127.0.0.1:${plainPort}`, "plain", "–", `tcp://127.0.0.1:${echo.port}`, "no", "1", "1", "in 10 B out 15 B", "0", "0"],
    [
      "bysni",
      `127.0.0.1:${sniPort}`,
      "passthrough",
      "git.test, *.apps.test other names: default",
      `git.test, *.apps.test: ${SNI_UP} default: ${DEAD}`,
      "no",
      "0",
      "1",
      "in 0 B out 0 B",
      "1",
      "no_upstream 1",
    ],
    ["imaps", `127.0.0.1:${imapsPort}`, "terminate", "certificate of secure", `tcp://127.0.0.1:${echo.port}`, "v2", "0", "0", "in 0 B out 0 B", "0", "0"],
  ]);
  expect(section(dom, "tcp")).toContain('<a href="#site-secure">secure</a>');

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
  // UPDATE_DOCS_SCREENSHOT=1 bun test test/status-page.test.ts refreshes the picture docs/operations.md shows.
  if (process.env.UPDATE_DOCS_SCREENSHOT === "1") copyFileSync(png, join(import.meta.dir, "..", "docs", "status.png"));
}, 60_000);

test("with workers = 2 the supervisor's page lists its workers, each worker's endpoints, and the cache and TCP figures merged over them", async () => {
  const tcpPort = freePort();
  const sup = await startGateway({
    top: "workers = 2",
    routes: { shop: `hosts = ["shop.test"]\nupstreams = ["${UP}"]\n[cache]\n` },
    extra: `[[tcp]]\nname = "plain"\nlisten = "127.0.0.1:${tcpPort}"\nmode = "plain"\nupstreams = ["tcp://127.0.0.1:${echo.port}"]\n`,
  });
  let client: Client | undefined;
  try {
    // Two connections, wherever they land; one stays open.
    const first = await connect(tcpPort);
    await first.says("one\n", "echo:one\n");
    first.socket.end();
    await first.until((c) => c.closed);
    client = await connect(tcpPort);
    await client.says("two\n", "echo:two\n");
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
    expect(
      endpoints
        .filter((e) => e[0] === "shop")
        .map((e) => e.slice(0, 4))
        .sort(),
    ).toEqual([
      ["shop", UP, "1", "✓ healthy"],
      ["shop", UP, "2", "✓ healthy"],
    ]);
    const cache = text(section(html, "cache"));
    const lookups = /hit (\d+) · miss (\d+)/.exec(cache);
    expect(Number(lookups?.[1]) + Number(lookups?.[2])).toBe(6);
    expect(Number(lookups?.[2])).toBeGreaterThanOrEqual(1);
    expect(cache).toMatch(/Objects[12]Hit ratio/);
    expect(cache).toContain("of 512.0 MiB"); // [cache] max_size of each worker
    // The closed connection's gauge may lag its FIN by a moment: open is 1 once the worker has seen it.
    let tcp = rows(section(html, "tcp"));
    for (const deadline = Date.now() + 5000; tcp[0]?.[6] !== "1" && Date.now() < deadline; await Bun.sleep(50))
      tcp = rows(section(await (await fetch(`${sup.admin}/status`)).text(), "tcp"));
    expect(tcp).toEqual([["plain", `127.0.0.1:${tcpPort}`, "plain", "–", `tcp://127.0.0.1:${echo.port}`, "no", "1", "2", "in 8 B out 18 B", "0", "0"]]);
    expect(rows(section(html, "reloads")).map((r) => r.slice(1, 3))).toEqual([["start", "✓ success"]]);
  } finally {
    client?.socket.destroy();
    await sup.cleanup();
  }
}, 60_000);

test("without [[tcp]] entries the TCP section says so in one line", async () => {
  const plain = await startGateway({ routes: { docs: `hosts = ["docs.test"]\nstatic = "builtin:welcome"\n` } });
  try {
    const html = await (await fetch(`${plain.admin}/status`)).text();
    expect(section(html, "tcp")).toBe('<h2>TCP routes</h2><p class="empty">No TCP routes (no [[tcp]] entries).</p>');
  } finally {
    await plain.cleanup();
  }
}, 30_000);

test("the TCP section escapes what it shows", () => {
  const EVIL = `<b>&"x'</b><script>alert(1)</script>`;
  const figures = { open: 0, accepted: 0, bytesIn: 0, bytesOut: 0, upstreamFailures: 0, refused: { [EVIL]: 1 } };
  const html = renderStatus({
    now: Date.now(),
    version: "0",
    ready: true,
    configFile: undefined,
    sites: [],
    certificates: [],
    endpoints: [],
    cache: undefined,
    workers: undefined,
    reloads: [],
    tcp: [
      { name: EVIL, listen: EVIL, mode: "terminate", site: EVIL, sni: [], upstreams: [EVIL], proxyV2: false, ...figures },
      { name: EVIL, listen: EVIL, mode: "passthrough", sni: [{ hosts: [EVIL], upstreams: [EVIL] }], upstreams: [], proxyV2: true, ...figures },
    ],
  });
  expect(html).not.toContain("<script");
  expect(html).not.toContain("<b>");
  expect(html.split(escapeHtml(EVIL)).length - 1).toBe(12);
});
