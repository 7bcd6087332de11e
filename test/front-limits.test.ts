/** The gateway's plain HTTP listener under its [limits] and [listen] settings, end to end: timeouts, PROXY protocol preambles and connection caps. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { origin, startGateway, type TestGateway } from "./harness.ts";
import { Client } from "./raw-client.ts";

const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

/** metric sums the samples of a metric whose labels include the given ones, from the admin listener's /metrics. */
async function metric(g: TestGateway, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${g.admin}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n"))
    if (line.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

/** echo is a Bun.serve origin that records the path and X-Forwarded-For of each request. */
const seen: { path: string; xff: string | null }[] = [];
const echo = origin((req) => {
  const path = new URL(req.url).pathname;
  seen.push({ path, xff: req.headers.get("x-forwarded-for") });
  return new Response(`echo ${path}`);
});

/** partial is a raw origin that keeps every connection's bytes and whether it closed, and answers a request only once its whole Content-Length body is in. */
const partial: { bytes: string; closed: boolean }[] = [];
const slowBody = Bun.listen<{ c: { bytes: string; closed: boolean } }>({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open(s) {
      s.data = { c: { bytes: "", closed: false } };
      partial.push(s.data.c);
    },
    data(s, d) {
      const c = s.data.c;
      c.bytes += Buffer.from(d).toString("latin1");
      const end = c.bytes.indexOf("\r\n\r\n");
      const length = Number(/content-length: (\d+)/i.exec(c.bytes.slice(0, end))?.[1] ?? 0);
      if (end >= 0 && c.bytes.length >= end + 4 + length) {
        c.bytes = "";
        s.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
      }
    },
    close(s) {
      s.data.c.closed = true;
    },
  },
});

const routes = {
  echo: `hosts = ["echo.test"]\nupstreams = ["http://127.0.0.1:${echo.port}"]\n`,
  body: `hosts = ["body.test"]\nupstreams = ["http://127.0.0.1:${slowBody.port}"]\n`,
};
let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway({
    routes,
    listenExtra: `idle_timeout = "3s"\nproxy_protocol = ["127.0.0.2/32"]`,
    extra: `[limits]\nheader_timeout = "500ms"\nbody_timeout = "500ms"\n`,
  });
});
afterAll(async () => {
  await gw?.cleanup();
  echo.stop(true);
  slowBody.stop(true);
});

/** exchange sends bytes on a new connection (from a chosen source) and waits for the close or a quiet spell. */
async function exchange(bytes: string | Uint8Array, from?: string, port = gw.httpPort): Promise<Client> {
  const c = await Client.open(port, from);
  c.send(bytes);
  await c.settle();
  return c;
}

test("header_timeout: half a head and then nothing gets 408 and a close within the timeout; logged as refused and counted under route -", async () => {
  const counted = await metric(gw, "gatehouse_requests_total", { route: "-", code: "408" });
  const logs = gw.logs.length;
  const c = await Client.open(gw.httpPort);
  const t0 = performance.now();
  c.send("GET /late HTTP/1.1\r\nHost: echo.test\r\n");
  await c.until((x) => x.closed, 3000, "the close");
  const ms = performance.now() - t0;
  expect(ms).toBeGreaterThanOrEqual(450);
  expect(ms).toBeLessThan(2000);
  expect(statuses(c.text)).toEqual([408]);
  const line = await gw.waitForLog((l) => l.msg === "refused" && l.status === 408, 2000, logs);
  expect(line.client).toBe("127.0.0.1");
  expect(await metric(gw, "gatehouse_requests_total", { route: "-", code: "408" })).toBe(counted + 1);
  expect(seen.some((s) => s.path === "/late")).toBe(false);
});

test("body_timeout: a body that stops after 10 of 100 bytes gets 408 and a close; the origin's request is cut, the endpoint not marked failed", async () => {
  const outcome = (o: string) => metric(gw, "gatehouse_upstream_requests_total", { route: "body", outcome: o });
  const [errors, aborted] = [await outcome("error"), await outcome("aborted")];
  const unrouted = await metric(gw, "gatehouse_requests_total", { route: "-", code: "408" });
  const conns = partial.length;
  const c = await Client.open(gw.httpPort);
  c.send("POST /upload HTTP/1.1\r\nHost: body.test\r\nContent-Length: 100\r\n\r\n0123456789");
  await c.until((x) => x.closed, 3000, "the close");
  expect(statuses(c.text)).toEqual([408]);
  // The origin got the head and the 10 bytes, then its connection was closed (or got nothing, if the gateway reads small bodies whole first).
  const cut = partial.slice(conns);
  const deadline = Date.now() + 2000;
  while (cut.some((p) => !p.closed) && Date.now() < deadline) await Bun.sleep(10);
  for (const p of cut) {
    expect(p.closed).toBe(true);
    expect(p.bytes.slice(p.bytes.indexOf("\r\n\r\n") + 4)).toBe("0123456789");
  }
  const after = await exchange("GET /after HTTP/1.1\r\nHost: body.test\r\nConnection: close\r\n\r\n");
  expect([statuses(after.text), after.text.endsWith("\r\n\r\nok")]).toEqual([[200], true]);
  expect(await outcome("error")).toBe(errors);
  expect(await outcome("aborted")).toBe(aborted + (cut.length > 0 ? 1 : 0));
  const line = await gw.waitForLog((l) => l.msg === "access" && l.path === "/upload", 2000);
  expect([line.status, line.route]).toEqual([408, "body"]);
  expect(await metric(gw, "gatehouse_requests_total", { route: "body", code: "408" })).toBe(1);
  // One request, counted once: under its route, not also under "-" as a request refused before routing.
  expect(await metric(gw, "gatehouse_requests_total", { route: "-", code: "408" })).toBe(unrouted);
});

test("idle_timeout (3s) keeps a keep-alive connection open past header_timeout (500ms) between requests", async () => {
  const c = await Client.open(gw.httpPort);
  c.send("GET /one HTTP/1.1\r\nHost: echo.test\r\n\r\n");
  await c.until((x) => x.text.endsWith("echo /one"), 3000, "the first answer");
  await Bun.sleep(1500);
  expect(c.closed).toBe(false);
  c.send("GET /two HTTP/1.1\r\nHost: echo.test\r\n\r\n");
  await c.until((x) => x.text.endsWith("echo /two"), 3000, "the second answer");
  expect([statuses(c.text), c.closed]).toEqual([[200, 200], false]);
  c.end();
});

test("PROXY v1 and v2 from a listed source name the client (X-Forwarded-For, access log); from another source refused; a cut preamble reaches nothing", async () => {
  const req = (path: string) => `GET ${path} HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n`;
  const v1 = await exchange(`PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n${req("/pp1")}`, "127.0.0.2");
  expect([statuses(v1.text), v1.text.endsWith("echo /pp1")]).toEqual([[200], true]);
  const v2Block = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0, 12, 203, 0, 113, 10, 127, 0, 0, 1, 0x15, 0xb3, 0, 80];
  const v2 = await exchange(Buffer.concat([Uint8Array.from(v2Block), Buffer.from(req("/pp2"))]), "127.0.0.2");
  expect([statuses(v2.text), v2.text.endsWith("echo /pp2")]).toEqual([[200], true]);
  expect(seen.filter((s) => s.path.startsWith("/pp")).map((s) => [s.path, s.xff?.split(",").at(-1)?.trim()])).toEqual([
    ["/pp1", "203.0.113.9"],
    ["/pp2", "203.0.113.10"],
  ]);
  for (const [path, client] of [
    ["/pp1", "203.0.113.9"],
    ["/pp2", "203.0.113.10"],
  ]) {
    const line = await gw.waitForLog((l) => l.msg === "access" && l.path === path, 2000);
    expect(line.client).toBe(client!);
  }
  const refused = await exchange(`PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n${req("/pp3")}`, "127.0.0.3");
  expect([statuses(refused.text), refused.closed]).toEqual([[400], true]);
  expect(refused.text).toContain("PROXY protocol preamble from a source"); // not just an unreadable request line
  const cutShort = await Client.open(gw.httpPort, "127.0.0.2");
  cutShort.send("PROXY TCP4 203.0.113.9 127.0");
  await Bun.sleep(100);
  cutShort.end();
  await cutShort.until((x) => x.closed, 3000, "the close");
  await Bun.sleep(200);
  expect(seen.filter((s) => s.path.startsWith("/pp")).length).toBe(2);
});

test("max_connections_per_client = 2: a third connection from one client gets 503 with Retry-After and a close; others are served; a close makes room", async () => {
  const g = await startGateway({ routes, extra: "[limits]\nmax_connections_per_client = 2\n" });
  try {
    const served = async (from: string) => {
      const c = await Client.open(g.httpPort, from);
      c.send(`GET /cap-${from} HTTP/1.1\r\nHost: echo.test\r\n\r\n`);
      await c.until((x) => x.text.endsWith(`echo /cap-${from}`) || x.closed, 3000, `an answer for ${from}`);
      return c;
    };
    const [a1, a2] = [await served("127.0.0.4"), await served("127.0.0.4")];
    expect([statuses(a1.text), statuses(a2.text), a1.closed, a2.closed]).toEqual([[200], [200], false, false]);
    const a3 = await Client.open(g.httpPort, "127.0.0.4");
    await a3.until((x) => x.closed, 3000, "the third connection's close");
    expect(statuses(a3.text)).toEqual([503]);
    expect(a3.text.toLowerCase()).toContain("\r\nretry-after: ");
    const other = await served("127.0.0.5");
    expect([statuses(other.text), other.closed]).toEqual([[200], false]);
    a1.end();
    await a1.until((x) => x.closed, 3000, "a1's close");
    await Bun.sleep(200);
    const again = await served("127.0.0.4");
    expect([statuses(again.text), again.closed]).toEqual([[200], false]);
    for (const c of [a2, other, again]) c.end();
  } finally {
    await g.cleanup();
  }
});
