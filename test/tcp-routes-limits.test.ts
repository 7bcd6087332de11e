/** [[tcp]] routes under caps: [limits] max_connections and max_connections_per_client (counted with the HTTP listener's connections, by the trusted client address), max_connections_per_upstream across failover and connects that time out, and connects cut short by a reload or a shutdown. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { freePort, startGateway, type TestGateway, writeConfig } from "./harness.ts";
import { type Blackhole, blackhole, type Client, closedBy, connect, type Origin, settledOn, tcpEndpoints, tcpOrigin, waitFor } from "./tcp-helpers.ts";

describe("connection caps", () => {
  let capped: TestGateway;
  let origin: Origin;
  let plainPort: number;
  let tlsPort: number;

  beforeAll(async () => {
    origin = await tcpOrigin("capped");
    plainPort = freePort();
    tlsPort = freePort();
    capped = await startGateway({
      routes: { mail: `hosts = ["mail.test"]\ntls = "internal"\n` },
      listenExtra: `proxy_protocol = ["127.0.0.9/32"]`,
      extra: `
[limits]
max_connections = 5
max_connections_per_client = 2

[[tcp]]
name = "capped"
listen = "127.0.0.1:${plainPort}"
mode = "plain"
upstreams = ["tcp://127.0.0.1:${origin.port}"]

[[tcp]]
name = "captls"
listen = "127.0.0.1:${tlsPort}"
mode = "terminate"
site = "mail"
upstreams = ["tcp://127.0.0.1:${origin.port}"]
`,
    });
  });

  afterAll(async () => {
    await capped?.cleanup();
    origin?.stop();
  });

  const limitRefusals = async () => Number(await capped.metric('gatehouse_tcp_refused_total{route="capped",reason="limit"}'));
  const served = async (from: string, preamble = "") => {
    const c = await connect(plainPort, from);
    c.socket.write(preamble);
    await c.says(`hi from ${from}`, `capped:hi from ${from}`, 3000);
    return c;
  };
  /** turnedAway connects from an address and expects to be closed without a byte. */
  const turnedAway = async (from: string, preamble = "") => {
    expect(await closedBy(plainPort, from, preamble, 1500)).toEqual({ closed: true, read: "" });
  };
  const closeAll = async (cs: Client[]) => {
    for (const c of cs) c.socket.end();
    await waitFor(() => cs.every((c) => c.closed), 3000);
    await settledOn(capped, "capped");
  };

  test("max_connections_per_client: a third connection from one address is closed at once, never reaches the upstream, and is counted; other addresses are served", async () => {
    const before = { refused: await limitRefusals(), upstream: origin.received.length };
    const a = [await served("127.0.0.2"), await served("127.0.0.2")];
    await turnedAway("127.0.0.2");
    expect(await limitRefusals()).toBe(before.refused + 1);
    const b = [await served("127.0.0.3"), await served("127.0.0.3")];
    expect(origin.received.length - before.upstream).toBe(4);
    // A close makes room for that client again.
    a[0]!.socket.end();
    await a[0]!.until((x) => x.closed, 3000);
    await Bun.sleep(100);
    a[0] = await served("127.0.0.2");
    await closeAll([...a, ...b]);
  });

  test("max_connections counts the HTTP listener's connections and the [[tcp]] listeners' together", async () => {
    const tcp = [await served("127.0.0.2"), await served("127.0.0.3"), await served("127.0.0.4"), await served("127.0.0.5")];
    // The fifth connection of the gateway is an HTTP one: admitted; a sixth, of either kind, is over max_connections.
    const http = await connect(capped.httpPort, "127.0.0.6");
    http.socket.write("GET /healthz HTTP/1.1\r\nHost: x.test\r\n\r\n");
    await http.until((x) => x.text.includes("\r\n\r\n"), 3000);
    await turnedAway("127.0.0.7");
    const httpOver = await connect(capped.httpPort, "127.0.0.8");
    httpOver.socket.write("GET / HTTP/1.1\r\nHost: x.test\r\n\r\n");
    await httpOver.until((x) => x.closed, 3000);
    expect(httpOver.text).toStartWith("HTTP/1.1 503");
    http.socket.end();
    await closeAll(tcp);
  });

  test("behind a trusted PROXY preamble the cap is per client the preamble names", async () => {
    const pp = (client: string) => `PROXY TCP4 ${client} 127.0.0.1 40000 ${plainPort}\r\n`;
    const a = [await served("127.0.0.9", pp("10.0.0.7")), await served("127.0.0.9", pp("10.0.0.7"))];
    await turnedAway("127.0.0.9", pp("10.0.0.7"));
    const b = await served("127.0.0.9", pp("10.0.0.8"));
    await closeAll([...a, b]);
  });

  test("clients that reset as soon as they are connected (their address may be gone by accept): the gauge and every count come back to 0", async () => {
    // With listen.proxy_protocol set the peer's address is looked up at once; a socket reset before its open handler has none.
    for (let i = 0; i < 60; i++) (await connect(plainPort, "127.0.0.2")).socket.resetAndDestroy();
    await settledOn(capped, "capped");
    const a = [await served("127.0.0.2"), await served("127.0.0.2")];
    await closeAll(a);
  });

  test("every way a connection ends before its pipe releases its count: failed handshakes, resets, silence", async () => {
    for (let i = 0; i < 4; i++) {
      const c = await connect(tlsPort, "127.0.0.2");
      c.socket.write("not tls\r\n");
      await c.until((x) => x.closed, 1500);
      const r = await connect(plainPort, "127.0.0.2");
      r.socket.resetAndDestroy();
    }
    await Bun.sleep(300);
    const a = [await served("127.0.0.2"), await served("127.0.0.2")];
    await closeAll(a);
  });
});

describe("upstream connects", () => {
  let g: TestGateway;
  let live: Origin;
  let holePort: number;
  let racePort: number;
  let reloadedPort: number;
  let hole2: Blackhole;
  const reloadedRoute = () => `
[[tcp]]
name = "reloaded"
listen = "127.0.0.1:${reloadedPort}"
mode = "plain"
connect_timeout = "1s"
upstreams = ["tcp://127.0.0.1:${hole2.port}"]
`;
  const config = (reloaded: boolean) => `${reloaded ? reloadedRoute() : ""}
[[tcp]]
name = "lingering"
listen = "127.0.0.1:${holePort}"
mode = "plain"
connect_timeout = "300ms"
max_connections_per_upstream = 3
upstreams = ["tcp://127.0.0.1:${hole2.port}"]

[[tcp]]
name = "race"
listen = "127.0.0.1:${racePort}"
mode = "plain"
connect_timeout = "1s"
max_connections_per_upstream = 1
upstreams = ["tcp://127.0.0.1:${hole2.port}", "tcp://127.0.0.1:${live.port}"]
`;

  beforeAll(async () => {
    live = await tcpOrigin("live");
    hole2 = await blackhole();
    holePort = freePort();
    racePort = freePort();
    reloadedPort = freePort();
    g = await startGateway({ extra: config(true) });
  });

  afterAll(async () => {
    await g?.cleanup();
    live?.stop();
    hole2?.stop();
  });

  const fds = () => readdirSync(`/proc/${g.proc.pid}/fd`).length;

  test("a connect that timed out still holds its socket until the kernel gives up: it stays counted against max_connections_per_upstream, so a dead upstream cannot pile up sockets", async () => {
    const before = fds();
    for (let i = 0; i < 12; i++) expect(await closedBy(holePort)).toEqual({ closed: true, read: "" });
    // Without the count, each of the 12 clients leaves a connect in progress (an fd) for about two minutes.
    expect(fds() - before).toBeLessThanOrEqual(4);
    expect((await tcpEndpoints(g.admin, "lingering"))[0]?.open).toBe(3);
  }, 20_000);

  test("max_connections_per_upstream holds when a connection fails over to an endpoint that filled up meanwhile", async () => {
    // The first connection waits for the blackholed endpoint; the second takes the live one (its cap is 1); the first then fails over to a full endpoint.
    const first = await connect(racePort);
    await Bun.sleep(100);
    const second = await connect(racePort);
    expect(await second.says("x", "live:x")).toBe("live:x");
    await first.until((x) => x.closed, 3000);
    const eps = await tcpEndpoints(g.admin, "race");
    expect(eps.find((e) => e.upstream.endsWith(`:${live.port}`))?.open).toBe(1);
    second.socket.end();
  }, 10_000);

  test("a reload that removes a route while a connection of it is connecting: the connection ends at connect_timeout, counted out, and the listener is gone", async () => {
    const c = await connect(reloadedPort);
    await Bun.sleep(100);
    writeConfig(g.dir, g.httpPort, g.adminPort, { extra: config(false) });
    expect((await g.reload()).msg).toBe("config reloaded");
    await c.until((x) => x.closed, 3000);
    await settledOn(g, "reloaded", 3000, false);
    expect(await closedBy(reloadedPort)).toEqual({ closed: true, read: "" });
    expect(await g.metric('gatehouse_tcp_refused_total{route="reloaded",reason="no_upstream"}')).toBe("1");
  }, 10_000);

  test("SIGTERM while a connection is connecting: it ends at connect_timeout and the gateway exits without waiting for shutdown_grace", async () => {
    const p = freePort();
    const one = await startGateway({ extra: reloadedRoute().replace(`${reloadedPort}`, `${p}`) });
    try {
      const c = await connect(p);
      await Bun.sleep(100);
      const t0 = Date.now();
      expect(await one.stop()).toBe(0);
      // connect_timeout is 1s, shutdown_grace 5s.
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(c.closed).toBe(true);
    } finally {
      await one.cleanup();
    }
  }, 15_000);
});
