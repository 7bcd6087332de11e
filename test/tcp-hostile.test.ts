/** [[tcp]] routes against hostile and careless clients: slow or endless ClientHellos, garbage, silent crowds, clients that never read, resets, connects that hang; each ends in bounded time and memory with every count back at zero. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freePort, startGateway, type TestGateway } from "./harness.ts";
import {
  type Blackhole,
  blackhole,
  type Client,
  clientHello,
  connect,
  type Origin,
  settledOn,
  tcpEndpoints,
  tcpOrigin,
  tlsConnect,
  waitFor,
} from "./tcp-helpers.ts";

let gw: TestGateway;
let echo: Origin;
let sink: Origin;
let hole: Blackhole;
let flood: Origin;
const port = { pt: 0, term: 0, plain: 0, sink: 0, hole: 0, termhole: 0, termflood: 0 };

beforeAll(async () => {
  echo = await tcpOrigin("echo");
  // sink never reads: what a client sends waits in the kernel's buffers, then in the gateway's (bounded), then at the client.
  sink = await tcpOrigin("sink", (s) => s.pause());
  hole = await blackhole();
  // flood sends 256 MiB as fast as its client takes them.
  flood = await tcpOrigin("flood", (s) => {
    const chunk = Buffer.alloc(1 << 20, 7);
    let sent = 0;
    const more = () => {
      while (sent < 256) {
        sent++;
        if (!s.write(chunk)) return void s.once("drain", more);
      }
      s.end();
    };
    more();
  });
  for (const k of Object.keys(port) as (keyof typeof port)[]) port[k] = freePort();
  gw = await startGateway({
    routes: { mail: `hosts = ["mail.test"]\ntls = "internal"\n` },
    extra: `
[[tcp]]
name = "pt"
listen = "127.0.0.1:${port.pt}"
mode = "passthrough"
handshake_timeout = "1s"
[[tcp.sni]]
hosts = ["a.test"]
upstreams = ["tcp://127.0.0.1:${echo.port}"]

[[tcp]]
name = "term"
listen = "127.0.0.1:${port.term}"
mode = "terminate"
site = "mail"
handshake_timeout = "1s"
upstreams = ["tcp://127.0.0.1:${echo.port}"]

[[tcp]]
name = "plain"
listen = "127.0.0.1:${port.plain}"
mode = "plain"
upstreams = ["tcp://127.0.0.1:${echo.port}"]

[[tcp]]
name = "sink"
listen = "127.0.0.1:${port.sink}"
mode = "plain"
idle_timeout = "2s"
upstreams = ["tcp://127.0.0.1:${sink.port}"]

[[tcp]]
name = "hole"
listen = "127.0.0.1:${port.hole}"
mode = "plain"
connect_timeout = "1500ms"
upstreams = ["tcp://127.0.0.1:${hole.port}"]

[[tcp]]
name = "termflood"
listen = "127.0.0.1:${port.termflood}"
mode = "terminate"
site = "mail"
upstreams = ["tcp://127.0.0.1:${flood.port}"]

[[tcp]]
name = "termhole"
listen = "127.0.0.1:${port.termhole}"
mode = "terminate"
site = "mail"
connect_timeout = "1500ms"
upstreams = ["tcp://127.0.0.1:${hole.port}"]
`,
  });
});

afterAll(async () => {
  await gw?.cleanup();
  echo?.stop();
  sink?.stop();
  flood?.stop();
  hole?.stop();
});

const metric = async (name: string, route: string, extra = "") => Number((await gw.metric(`${name}{route="${route}"${extra}}`)) ?? "NaN");
const refusedOf = (route: string, reason: string) => metric("gatehouse_tcp_refused_total", route, `,reason="${reason}"`);

/** settled waits (bounded) until the route has no connection open and its endpoints none either (endpoints false: a blackholed one's count is its connects in progress). */
const settled = (route: string, ms = 5000, endpoints = true) => settledOn(gw, route, ms, endpoints);

/** trickle writes bytes one at a time every ms until the socket closes or they are all sent. */
function trickle(c: Client, bytes: Uint8Array, ms: number): void {
  let i = 0;
  const t = setInterval(() => {
    if (c.closed || i >= bytes.byteLength) return clearInterval(t);
    c.socket.write(bytes.subarray(i, ++i));
  }, ms);
}

describe("handshakes", () => {
  test("passthrough: a ClientHello one byte at a time is cut at handshake_timeout, counted, and nothing stays open", async () => {
    const hello = await clientHello("a.test");
    const before = await refusedOf("pt", "handshake");
    const c = await connect(port.pt);
    const t0 = Date.now();
    trickle(c, hello, 100);
    await c.until((x) => x.closed, 4000);
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(await refusedOf("pt", "handshake")).toBe(before + 1);
    await settled("pt");
  });

  test("terminate: a ClientHello one byte at a time is cut at handshake_timeout, counted, and nothing stays open", async () => {
    const hello = await clientHello("mail.test");
    const before = await refusedOf("term", "handshake");
    const c = await connect(port.term);
    const t0 = Date.now();
    trickle(c, hello, 100);
    await c.until((x) => x.closed, 4000);
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(await refusedOf("term", "handshake")).toBe(before + 1);
    await settled("term");
  });

  test("an endless 'ClientHello' (a record header, then garbage without end) is closed once it passes 16 KiB, on both TLS modes", async () => {
    for (const p of [port.pt, port.term]) {
      const c = await connect(p);
      c.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xff, 0xff]));
      const junk = Buffer.alloc(4096, 0x41);
      for (let i = 0; i < 64 && !c.closed; i++) {
        c.socket.write(junk);
        await Bun.sleep(5);
      }
      await c.until((x) => x.closed, 3000);
    }
    await settled("pt");
    await settled("term");
  });

  test("garbage, and a PROXY preamble from a source not trusted, are refused at once (well before handshake_timeout), each counted", async () => {
    const refused = async (route: string) => Number((await gw.metric(`gatehouse_tcp_refused_total{route="${route}",reason="handshake"}`)) ?? 0);
    for (const text of ["GET / HTTP/1.1\r\nHost: x\r\n\r\n", "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n"]) {
      for (const [route, p] of [
        ["pt", port.pt],
        ["term", port.term],
      ] as const) {
        const before = await refused(route);
        const c = await connect(p);
        const t0 = performance.now();
        c.socket.write(text);
        await c.until((x) => x.closed, 1500);
        expect(performance.now() - t0).toBeLessThan(500);
        const end = performance.now() + 2000;
        while ((await refused(route)) !== before + 1 && performance.now() < end) await Bun.sleep(20);
        expect(await refused(route)).toBe(before + 1);
      }
    }
    await settled("pt");
    await settled("term");
  });

  test("on a plain route, a PROXY preamble from a source not trusted is refused, never passed to the upstream as the client's words", async () => {
    const before = Number((await gw.metric('gatehouse_tcp_refused_total{route="plain",reason="handshake"}')) ?? 0);
    const c = await connect(port.plain);
    c.socket.write("PROXY TCP4 10.9.9.9 10.0.0.2 1234 25\r\nEHLO spoofed\r\n");
    await c.until((x) => x.closed, 1500);
    // The echo origin would have sent the line back.
    expect(c.text).not.toContain("PROXY");
    expect(Number(await gw.metric('gatehouse_tcp_refused_total{route="plain",reason="handshake"}'))).toBe(before + 1);
    // A client that speaks its protocol is served as before.
    const ok = await connect(port.plain);
    ok.socket.write("hello\n");
    await ok.until((x) => x.text.includes("hello"), 2000);
    ok.socket.end();
    await settled("plain");
  });

  test("2000 connections that never send a byte are all closed by handshake_timeout; the gauge comes back to 0", async () => {
    const clients: Client[] = [];
    // From 10 addresses: 200 each, under max_connections_per_client's default of 256.
    for (let i = 0; i < 2000; i++) clients.push(await connect(i % 2 === 0 ? port.pt : port.term, `127.0.0.${10 + (i % 10)}`));
    await waitFor(
      () => clients.every((c) => c.closed),
      6000,
      () => `${clients.filter((c) => !c.closed).length} still open`,
    );
    await settled("pt");
    await settled("term");
  }, 30_000);
});

describe("streams", () => {
  test("an upstream that never reads holds the client back: the gateway keeps a bounded amount, the client's writes wait; a reset ends it by idle_timeout", async () => {
    const c = await connect(port.sink);
    const rss0 = gw.memory().rssKiB;
    const chunk = Buffer.alloc(1 << 20, 1);
    let written = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 1500 && written < 256) {
      if (c.socket.write(chunk)) written++;
      else await Promise.race([new Promise((r) => c.socket.once("drain", r)), Bun.sleep(200)]);
    }
    expect(written).toBeLessThan(256);
    expect(gw.memory().rssKiB - rss0).toBeLessThan(48 * 1024);
    // Gone without reading: what waits for the upstream is given until idle_timeout (2s here), then the connection is cut.
    c.socket.resetAndDestroy();
    await settled("sink", 4000);
  }, 20_000);

  test("terminate: a TLS client that never reads holds the upstream back: the gateway keeps a bounded amount", async () => {
    const { client } = await tlsConnect(port.termflood, "mail.test");
    client.socket.pause();
    const rss0 = gw.memory().rssKiB;
    await Bun.sleep(1500);
    // 256 MiB wait at the origin, not in the gateway.
    expect(gw.memory().rssKiB - rss0).toBeLessThan(48 * 1024);
    client.socket.destroy();
    await settled("termflood");
  }, 20_000);

  test("a client that resets mid-stream: its upstream connection is closed and every count comes back", async () => {
    const c = await connect(port.plain);
    expect(await c.says("hello", "echo:hello")).toBe("echo:hello");
    c.socket.resetAndDestroy();
    await settled("plain");
  });

  test("a half-closed client still gets the upstream's answer, then both ends close", async () => {
    const c = await connect(port.plain);
    c.socket.end("last words");
    await c.until((x) => x.text.includes("echo:last words") && x.closed, 3000);
    await settled("plain");
  });
});

describe("connects in progress", () => {
  test("plain: a client that sends a flood while its upstream connect hangs is held back (bounded memory); after connect_timeout it is closed and counted", async () => {
    const before = { refused: await refusedOf("hole", "no_upstream"), failed: await metric("gatehouse_tcp_upstream_failures_total", "hole") };
    const c = await connect(port.hole);
    const rss0 = gw.memory().rssKiB;
    const chunk = Buffer.alloc(1 << 20, 2);
    let written = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 1000 && written < 256 && !c.closed) {
      if (c.socket.write(chunk)) written++;
      else await Promise.race([new Promise((r) => c.socket.once("drain", r)), Bun.sleep(200)]);
    }
    expect(written).toBeLessThan(256);
    expect(gw.memory().rssKiB - rss0).toBeLessThan(48 * 1024);
    await c.until((x) => x.closed, 4000);
    expect(await refusedOf("hole", "no_upstream")).toBe(before.refused + 1);
    expect(await metric("gatehouse_tcp_upstream_failures_total", "hole")).toBe(before.failed + 1);
    await settled("hole", 5000, false);
  }, 20_000);

  test("terminate: a TLS client that floods while its upstream connect hangs is held back too", async () => {
    const { client } = await tlsConnect(port.termhole, "mail.test");
    const rss0 = gw.memory().rssKiB;
    const chunk = Buffer.alloc(1 << 20, 3);
    let written = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 1000 && written < 256 && !client.closed) {
      if (client.socket.write(chunk)) written++;
      else await Promise.race([new Promise((r) => client.socket.once("drain", r)), Bun.sleep(200)]);
    }
    expect(written).toBeLessThan(256);
    expect(gw.memory().rssKiB - rss0).toBeLessThan(48 * 1024);
    await client.until((x) => x.closed, 4000);
    await settled("termhole", 5000, false);
  }, 20_000);

  test("clients that leave while their upstream connect hangs: the gauge comes back to 0 by connect_timeout (a paused socket learns of its close then); the endpoint counts the connects until the kernel ends them", async () => {
    const lingering = (await tcpEndpoints(gw.admin, "hole"))[0]?.open ?? 0;
    const cs: Client[] = [];
    for (let i = 0; i < 5; i++) cs.push(await connect(port.hole));
    await Bun.sleep(200);
    expect((await tcpEndpoints(gw.admin, "hole"))[0]?.open).toBe(lingering + 5);
    for (const c of cs) c.socket.destroy();
    await settled("hole", 3000, false);
    // connect_timeout has passed: the attempts go on in the kernel, and they are still counted (none is lost from the count either).
    expect((await tcpEndpoints(gw.admin, "hole"))[0]?.open).toBe(lingering + 5);
  }, 10_000);
});
