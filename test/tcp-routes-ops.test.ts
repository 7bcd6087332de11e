/** [[tcp]] routes in operation: failover from a dead endpoint, health checks and caps, reloads under open connections, a listener that cannot bind, shutdown's drain, `gatehouse upgrade`, `gatehouse check`, and workers = 2. */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { BUN, freePort, MAIN, startGateway, type TestGateway, writeConfig } from "./harness.ts";
import { type Client, connect, type Origin, route, tcpOrigin, waitFor } from "./tcp-helpers.ts";

const origins: Origin[] = [];
const gateways: TestGateway[] = [];
afterAll(async () => {
  for (const g of gateways) await g.cleanup();
  for (const o of origins) o.stop();
});

async function origin(tag: string): Promise<Origin> {
  const o = await tcpOrigin(tag);
  origins.push(o);
  return o;
}

/** refused says whether a connect to port is refused (nothing listens there). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port }, () => {
      s.destroy();
      resolve(false);
    });
    s.on("error", () => resolve(true));
  });
}

describe("failover", () => {
  test("a dead first endpoint is skipped: every connection reaches the live one, and the failed connects are counted", async () => {
    const live = await origin("live");
    const dead = freePort();
    const dead2 = freePort();
    const port = freePort();
    const allDead = freePort();
    const gw = await startGateway({ extra: route("fo", port, [dead, live.port]) + route("dead", allDead, [dead, dead2]) });
    gateways.push(gw);
    const clients: Client[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await connect(port);
      expect(await c.says(`m${i}`, `live:m${i}`)).toBe(`live:m${i}`);
      clients.push(c);
    }
    expect(Number(await gw.metric('gatehouse_tcp_upstream_failures_total{route="fo"}'))).toBeGreaterThanOrEqual(1);
    await gw.waitForLog((l) => l.msg === "tcp upstream endpoint ejected" && l.upstream === `tcp://127.0.0.1:${dead}`);
    for (const c of clients) c.socket.end();
    // Every endpoint dead: the client is closed at once, and nothing hangs.
    const t0 = Date.now();
    const c = await connect(allDead);
    await c.until((x) => x.closed, 3000);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(c.data.byteLength).toBe(0);
    expect(await gw.metric('gatehouse_tcp_refused_total{route="dead",reason="no_upstream"}')).toBe("1");
    expect(await gw.metric('gatehouse_tcp_upstream_failures_total{route="dead"}')).toBe("2");
    expect(await gw.metric('gatehouse_tcp_connections_open{route="dead"}')).toBe("0");
  });
});

describe("health checks and caps", () => {
  test("an endpoint whose TCP health checks fail gets no connections; a full endpoint is skipped, and with all full the client is closed", async () => {
    const a = await origin("a");
    const b = await origin("b");
    const c = await origin("c");
    const checked = freePort();
    const capped = freePort();
    const health = `[tcp.health]\ninterval = "200ms"\ntimeout = "100ms"\nunhealthy_threshold = 1\nhealthy_threshold = 1\n`;
    const gw = await startGateway({
      extra: route("checked", checked, [a.port, b.port], health) + route("capped", capped, [b.port, c.port], "max_connections_per_upstream = 1"),
    });
    gateways.push(gw);
    a.stop();
    type Row = { kind?: string; route: string; upstream: string; healthy: boolean; open: number };
    const rows = async () => (await (await fetch(`${gw.admin}/upstreams`)).json()) as Row[];
    const deadline = Date.now() + 5000;
    while (!(await rows()).some((r) => r.kind === "tcp" && r.upstream === `tcp://127.0.0.1:${a.port}` && !r.healthy)) {
      expect(Date.now()).toBeLessThan(deadline);
      await Bun.sleep(50);
    }
    const clients: Client[] = [];
    for (let i = 0; i < 4; i++) {
      const x = await connect(checked);
      expect(await x.says(`h${i}`, `b:h${i}`)).toBe(`b:h${i}`);
      clients.push(x);
    }
    // The unhealthy endpoint was never tried.
    expect(await gw.metric('gatehouse_tcp_upstream_failures_total{route="checked"}')).toBe("0");
    // One connection per endpoint: the first two take one each, the third finds both full.
    const first = await connect(capped);
    const second = await connect(capped);
    const tags = [(await first.says("1", ":1")).split(":")[0], (await second.says("2", ":2")).split(":")[0]].sort();
    expect(tags).toEqual(["b", "c"]);
    // Closed at once: the connect itself may already see the reset.
    const third = await connect(capped).catch(() => undefined);
    await third?.until((x) => x.closed, 3000);
    expect(await gw.metric('gatehouse_tcp_refused_total{route="capped",reason="no_upstream"}')).toBe("1");
    expect((await rows()).filter((r) => r.route === "capped").map((r) => r.open)).toEqual([1, 1]);
    for (const x of [...clients, first, second]) x.socket.end();
  });
});

describe("reload and shutdown", () => {
  test("a reload keeps open connections going; changed upstreams apply to new ones; an added route listens; a removed one stops accepting", async () => {
    const one = await origin("one");
    const two = await origin("two");
    const keepPort = freePort();
    const gonePort = freePort();
    const addedPort = freePort();
    const gw = await startGateway({ extra: route("keep", keepPort, [one.port]) + route("gone", gonePort, [one.port]) });
    gateways.push(gw);
    const open: Client[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await connect(keepPort);
      expect(await c.says(`before${i}`, `one:before${i}`)).toBe(`one:before${i}`);
      open.push(c);
    }
    const goneConn = await connect(gonePort);
    expect(await goneConn.says("g1", "one:g1")).toBe("one:g1");
    writeConfig(gw.dir, gw.httpPort, gw.adminPort, { extra: route("keep", keepPort, [two.port]) + route("added", addedPort, [two.port]) });
    expect((await gw.reload()).msg).toBe("config reloaded");
    // Open connections keep their upstream and their bytes flow both ways; none was lost.
    for (let i = 0; i < 5; i++) expect(await open[i]!.says(`after${i}`, `one:after${i}`)).toBe(`one:after${i}`);
    expect(open.every((c) => !c.closed)).toBe(true);
    expect(await gw.metric('gatehouse_tcp_connections_open{route="keep"}')).toBe("5");
    // New connections get the new upstreams; the added route serves.
    const fresh = await connect(keepPort);
    expect(await fresh.says("new", "two:new")).toBe("two:new");
    const added = await connect(addedPort);
    expect(await added.says("a", "two:a")).toBe("two:a");
    // The removed route's listener is closed; its open connection drains (until shutdown_grace).
    expect(await refused(gonePort)).toBe(true);
    expect(await goneConn.says("g2", "one:g2")).toBe("one:g2");
    for (const c of [...open, fresh, added, goneConn]) c.socket.end();
    await waitFor(() => goneConn.closed && open.every((c) => c.closed), 3000);
  });

  test("a config whose [[tcp]] listener cannot bind is rejected whole, and the running routes keep serving", async () => {
    const one = await origin("one");
    const port = freePort();
    const gw = await startGateway({ extra: route("r", port, [one.port]) });
    gateways.push(gw);
    const squatter = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      writeConfig(gw.dir, gw.httpPort, gw.adminPort, { extra: route("r", port, [one.port]) + route("taken", squatter.port, [one.port]) });
      const outcome = await gw.reload();
      expect(outcome.msg).toStartWith("config rejected");
      expect(JSON.stringify(outcome.problems)).toContain(`[[tcp]] \\"taken\\" listen = 127.0.0.1:${squatter.port}: cannot bind`);
      // Nothing of the rejected config outlives it: no series and no endpoints of the route that never went live.
      expect(await (await fetch(`${gw.admin}/metrics`)).text()).not.toContain('route="taken"');
      expect(JSON.stringify(await (await fetch(`${gw.admin}/upstreams`)).json())).not.toContain('"taken"');
      const c = await connect(port);
      expect(await c.says("still", "one:still")).toBe("one:still");
      c.socket.end();
    } finally {
      squatter.stop(true);
    }
  });

  test("SIGTERM stops accepting and lets an open connection finish within the grace period", async () => {
    const one = await origin("one");
    const port = freePort();
    const gw = await startGateway({ extra: route("r", port, [one.port]) });
    gateways.push(gw);
    const c = await connect(port);
    expect(await c.says("x", "one:x")).toBe("one:x");
    gw.proc.kill("SIGTERM");
    await gw.waitForLog((l) => l.msg === "draining");
    expect(await refused(port)).toBe(true);
    expect(await c.says("y", "one:y")).toBe("one:y");
    const t0 = Date.now();
    c.socket.end();
    // The gateway exits once its last connection is done, well before the 5 s grace.
    expect(await Promise.race([gw.proc.exited, Bun.sleep(4000).then(() => -1)])).toBe(0);
    expect(Date.now() - t0).toBeLessThan(4000);
  });
});

describe("gatehouse upgrade", () => {
  test("the new instance takes the [[tcp]] listener over; an open connection goes on with the old one until it ends", async () => {
    const one = await origin("one");
    const port = freePort();
    const g = await startGateway({ extra: route("u", port, [one.port]) });
    gateways.push(g);
    let newPid = 0;
    try {
      const held = await connect(port);
      expect(await held.says("a", "one:a")).toBe("one:a");
      const r = Bun.spawnSync([BUN, MAIN, "upgrade", "-c", join(g.dir, "config.toml")], { cwd: g.dir });
      expect(r.stderr.toString()).toBe("");
      expect(r.exitCode).toBe(0);
      newPid = Number(readFileSync(join(g.dir, "gatehouse.pid"), "utf8"));
      expect(newPid).not.toBe(g.proc.pid);
      // The old instance drains: it accepts nothing more, and its open connection still carries bytes both ways.
      await g.waitForLog((l) => l.msg === "draining");
      expect(g.proc.exitCode).toBeNull();
      expect(await held.says("b", "one:b")).toBe("one:b");
      const fresh = await connect(port);
      expect(await fresh.says("c", "one:c")).toBe("one:c");
      held.socket.end();
      expect(await Promise.race([g.proc.exited, Bun.sleep(4000).then(() => -1)])).toBe(0);
      // After the old one is gone, the new one serves both the connection it accepted and new ones.
      expect(await fresh.says("d", "one:d")).toBe("one:d");
      const later = await connect(port);
      expect(await later.says("e", "one:e")).toBe("one:e");
      for (const c of [fresh, later]) c.socket.end();
    } finally {
      if (newPid > 0) process.kill(newPid, "SIGTERM");
      for (let i = 0; i < 200 && newPid > 0 && existsSync(`/proc/${newPid}`); i++) await Bun.sleep(50);
    }
  }, 30_000);
});

describe("gatehouse check", () => {
  test("every problem of a [[tcp]] entry is reported with file, line, key and what was expected", async () => {
    const port = freePort();
    const dir = (await import("./harness.ts")).tempDir("gatehouse-tcp-check-");
    const extra = `
[[tcp]]
name = "Bad Name"
listen = "127.0.0.1:${port}"
mode = "tls"
upstreams = ["http://10.0.0.1:80"]
send_proxy_protocol = 1

[[tcp]]
name = "term"
listen = "127.0.0.1:8080"
mode = "terminate"
upstreams = ["tcp://10.0.0.1:143"]

[[tcp]]
name = "term"
listen = "127.0.0.1:${port + 1}"
mode = "plain"
site = "web"
upstreams = ["tcp://10.0.0.1:143"]
idle_timout = "1m"
[[tcp.sni]]
hosts = ["A.test"]
upstreams = ["tcp://10.0.0.1:143"]

[[tcp]]
name = "nosite"
listen = "127.0.0.1:${port + 2}"
mode = "terminate"
site = "missing"
upstreams = ["tcp://10.0.0.1:143"]

[[tcp]]
name = "offsite"
listen = "127.0.0.1:${port + 3}"
mode = "terminate"
site = "plainweb"
upstreams = ["tcp://10.0.0.1:143"]
`;
    const path = writeConfig(dir, 8080, freePort(), {
      extra,
      routes: { plainweb: `hosts = ["plain.test"]\ntls = "off"\nupstreams = ["http://127.0.0.1:1"]\n` },
    });
    const text = await Bun.file(path).text();
    const lineOf = (needle: string, from = 0) => text.slice(0, text.indexOf(needle, from)).split("\n").length;
    const p = Bun.spawnSync([BUN, MAIN, "check", "-c", path], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    const out = p.stdout.toString() + p.stderr.toString();
    expect(p.exitCode).toBe(1);
    const file = join(dir, "config.toml");
    const has = (line: number, key: string, words: string) => {
      const hit = out.split("\n").find((l) => l.includes(`:${line}: ${key}:`) && l.includes(words));
      if (hit === undefined) throw new Error(`no line "${line}: ${key}: …${words}…" in:\n${out}`);
    };
    expect(out).toContain(file.split("/").pop()!);
    has(lineOf('name = "Bad Name"'), "tcp[0].name", "is not a route name");
    has(lineOf('mode = "tls"'), "tcp[0].mode", '"tls" is not allowed');
    has(lineOf('upstreams = ["http://10.0.0.1:80"]'), "tcp[0].upstreams[0]", '"tcp://HOST:PORT"');
    has(lineOf("send_proxy_protocol = 1"), "tcp[0].send_proxy_protocol", "2 (PROXY protocol version 2)");
    has(lineOf('listen = "127.0.0.1:8080"'), "tcp[1].listen", "is also listen.http");
    // A missing key is reported at its entry's header.
    has(lineOf('name = "term"') - 1, "tcp[1].site", 'missing: mode = "terminate" needs the site');
    has(lineOf('name = "term"', text.indexOf('name = "term"') + 5), "tcp[2].name", "names another [[tcp]] entry too");
    has(lineOf('site = "web"'), "tcp[2].site", 'is set on a route with mode = "plain"');
    has(lineOf("idle_timout"), "tcp[2].idle_timout", 'unknown key, did you mean "idle_timeout"?');
    has(lineOf("[[tcp.sni]]"), "tcp[2].sni[0]", '[[tcp.sni]] entries on a route with mode = "plain"');
    has(lineOf('hosts = ["A.test"]'), "tcp[2].sni[0].hosts[0]", '"A.test" is not a server name');
    has(lineOf('site = "missing"'), "tcp[3].site", 'no route file "missing.toml"');
    has(lineOf('site = "plainweb"'), "tcp[4].site", 'has tls = "off"');
  });
});

describe("workers", () => {
  test("with workers = 2 the [[tcp]] listener is shared: every connection is served and the supervisor's metrics add both workers' counts", async () => {
    const one = await origin("one");
    const port = freePort();
    const gw = await startGateway({ top: "workers = 2", extra: route("w", port, [one.port]) });
    gateways.push(gw);
    const clients: Client[] = [];
    for (let i = 0; i < 12; i++) {
      const c = await connect(port);
      expect(await c.says(`w${i}`, `one:w${i}`)).toBe(`one:w${i}`);
      clients.push(c);
    }
    for (const c of clients) c.socket.end();
    await waitFor(() => clients.every((c) => c.closed), 5000);
    expect(await gw.metric('gatehouse_tcp_connections_total{route="w"}')).toBe("12");
    expect(await gw.metric('gatehouse_tcp_bytes_total{route="w",direction="in"}')).toBe(String(clients.reduce((n, _, i) => n + `w${i}`.length, 0)));
  }, 30_000);
});
