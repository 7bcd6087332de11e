/** [[tcp]] routes end to end on loopback: plain TCP (20 MB each way, half-close), TLS termination with a site's certificate and PROXY v2 to the origin, SNI passthrough to two TLS origins, and their metrics. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes, X509Certificate } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseProxyHeader } from "../src/front/proxy-protocol.ts";
import { freePort, startGateway, tempDir, type TestGateway } from "./harness.ts";
import { connect, type Origin, selfSigned, sha256, tcpOrigin, tlsConnect, tlsOrigin, waitFor } from "./tcp-helpers.ts";

const MB20 = 20 * 1024 * 1024;

describe("plain and terminate", () => {
  let gw: TestGateway;
  let echo: Origin;
  let bulk: Origin;
  let imap: Origin;
  const bulkFromOrigin = randomBytes(MB20);
  let plainPort: number;
  let bulkPort: number;
  let imapsPort: number;
  let tlsBulkPort: number;
  let floodPort: number;
  let flood: Origin;
  const FLOOD = 128 * 1024 * 1024;
  let ca: string;

  beforeAll(async () => {
    echo = await tcpOrigin("echo");
    // bulk sends 20 MB at once, and after the client's FIN the SHA-256 of everything the client sent: the answer comes after the half-close.
    bulk = await tcpOrigin("bulk", (s, i) => {
      s.write(bulkFromOrigin);
      s.on("end", () => s.end(`SHA:${sha256(bulk.received[i]!)}`));
    });
    // imap speaks first, like dovecot: a greeting as soon as it is connected, then an echo.
    imap = await tcpOrigin("imap", (s) => {
      s.write("* OK IMAP ready\r\n");
      s.on("end", () => s.end());
      s.on("data", (d) => {
        if (!d.includes("\r\n")) return;
        s.write(`reply:${d.toString().trim().split("\r\n").at(-1)}\r\n`);
      });
    });
    // flood sends 128 MB as fast as its client takes them.
    flood = await tcpOrigin("flood", (s) => {
      const chunk = Buffer.alloc(1024 * 1024, 7);
      let sent = 0;
      const more = () => {
        while (sent < FLOOD) {
          sent += chunk.byteLength;
          if (!s.write(chunk)) return void s.once("drain", more);
        }
        s.end();
      };
      more();
    });
    floodPort = freePort();
    plainPort = freePort();
    bulkPort = freePort();
    imapsPort = freePort();
    tlsBulkPort = freePort();
    gw = await startGateway({
      routes: { mail: `hosts = ["mail.test"]\ntls = "internal"\n` },
      extra: `
[[tcp]]
name = "plain"
listen = "127.0.0.1:${plainPort}"
mode = "plain"
upstreams = ["tcp://127.0.0.1:${echo.port}"]

[[tcp]]
name = "flood"
listen = "127.0.0.1:${floodPort}"
mode = "plain"
upstreams = ["tcp://127.0.0.1:${flood.port}"]

[[tcp]]
name = "bulk"
listen = "127.0.0.1:${bulkPort}"
mode = "plain"
upstreams = ["tcp://127.0.0.1:${bulk.port}"]

[[tcp]]
name = "imaps"
listen = "127.0.0.1:${imapsPort}"
mode = "terminate"
site = "mail"
upstreams = ["tcp://127.0.0.1:${imap.port}"]
send_proxy_protocol = 2

[[tcp]]
name = "tlsbulk"
listen = "127.0.0.1:${tlsBulkPort}"
mode = "terminate"
site = "mail"
upstreams = ["tcp://127.0.0.1:${bulk.port}"]
`,
    });
    ca = readFileSync(join(gw.dir, "certs/internal-ca/ca.pem"), "utf8");
  });

  afterAll(async () => {
    await gw?.cleanup();
    for (const o of [echo, bulk, imap, flood]) o?.stop();
  });

  test("plain: bytes go both ways, each connection on its own", async () => {
    const a = await connect(plainPort);
    const b = await connect(plainPort);
    expect(await a.says("hello", "echo:hello")).toBe("echo:hello");
    expect(await b.says("other", "echo:other")).toBe("echo:other");
    expect(await a.says("again", "echo:again")).toBe("echo:again");
    a.socket.end();
    b.socket.end();
    await a.until((c) => c.closed);
  });

  test("plain: 20 MB each way arrive whole (SHA-256), and the answer sent after the client's FIN arrives", async () => {
    const fromClient = randomBytes(MB20);
    const c = await connect(bulkPort);
    c.socket.write(fromClient);
    // Half-close: the client sends no more, and still reads the origin's answer to what it sent.
    c.socket.end();
    await c.until((x) => x.closed, 30_000);
    expect(c.data.byteLength).toBe(MB20 + 4 + 64);
    expect(sha256(c.data.subarray(0, MB20))).toBe(sha256(bulkFromOrigin));
    expect(c.data.subarray(MB20).toString()).toBe(`SHA:${sha256(fromClient)}`);
    // Each way counted once, exactly: the client's 20 MB in, the origin's 20 MB and its answer out.
    await waitFor(() => gw.logs.some((l) => l.msg === "tcp connection" && l.route === "bulk"), 5000);
    expect(await gw.metric('gatehouse_tcp_bytes_total{route="bulk",direction="in"}')).toBe(String(MB20));
    expect(await gw.metric('gatehouse_tcp_bytes_total{route="bulk",direction="out"}')).toBe(String(MB20 + 68));
    expect(await gw.metric('gatehouse_tcp_connections_total{route="bulk"}')).toBe("1");
    expect(await gw.metric('gatehouse_tcp_connections_open{route="bulk"}')).toBe("0");
  }, 60_000);

  test("plain: a client that does not read holds the upstream back; the gateway buffers a bounded amount, then everything arrives", async () => {
    const c = await connect(floodPort);
    c.socket.pause();
    const rss0 = gw.memory().rssKiB;
    await Bun.sleep(1500);
    const grew = gw.memory().rssKiB - rss0;
    // 128 MB wait at the origin, not in the gateway: a few kernel buffers' worth at most.
    expect(grew).toBeLessThan(48 * 1024);
    let total = 0;
    c.socket.removeAllListeners("data");
    c.socket.on("data", (d: Buffer) => {
      total += d.byteLength;
    });
    c.socket.resume();
    await c.until((x) => x.closed, 30_000);
    expect(total).toBe(FLOOD);
    c.socket.end();
  }, 60_000);

  test("terminate: the site's certificate, the origin's greeting, and a PROXY v2 header naming the client's address", async () => {
    const { client, peer } = await tlsConnect(imapsPort, "mail.test", ca, "127.0.0.2");
    // The certificate is the site's (the one /certificates lists), verified against the internal CA.
    const certs = (await (await fetch(`${gw.admin}/certificates`)).json()) as { name: string; fingerprint_sha256: string }[];
    const site = certs.find((c) => c.name === "mail")!;
    expect(peer.fingerprint256.replaceAll(":", "").toLowerCase()).toBe(site.fingerprint_sha256.replaceAll(":", "").toLowerCase());
    expect(peer.subjectaltname).toContain("DNS:mail.test");
    await client.until((c) => c.text.includes("* OK IMAP ready\r\n"));
    expect(await client.says("a1 LOGIN x y\r\n", "reply:a1 LOGIN x y")).toContain("reply:a1 LOGIN x y");
    const got = imap.received.at(-1)!;
    const header = parseProxyHeader(got) as { kind: string; bytes: number };
    expect(header).toMatchObject({
      kind: "proxy",
      source: { address: "127.0.0.2", port: client.socket.localPort! },
      destination: { address: "127.0.0.1", port: imapsPort },
    });
    // After the addresses, the TLVs of a terminated connection: the server name (PP2_TYPE_AUTHORITY) and PP2_TYPE_SSL with the client flag SSL.
    const tlvs = got.subarray(28, header.bytes);
    expect([tlvs[0], tlvs.readUInt16BE(1), tlvs.subarray(3, 12).toString()]).toEqual([0x02, 9, "mail.test"]);
    expect([tlvs[12], tlvs[15]]).toEqual([0x20, 0x01]);
    // Then exactly what the client wrote, decrypted.
    expect(got.subarray(header.bytes).toString()).toBe("a1 LOGIN x y\r\n");
    client.socket.end();
    await client.until((c) => c.closed);
  });

  test("terminate: 20 MB each way through TLS arrive whole (SHA-256), and a close_notify from the client is passed on as a FIN", async () => {
    const fromClient = randomBytes(MB20);
    const { client } = await tlsConnect(tlsBulkPort, "mail.test", ca);
    client.socket.write(fromClient);
    client.socket.end();
    await client.until((x) => x.closed, 30_000);
    expect(client.data.byteLength).toBe(MB20 + 4 + 64);
    expect(sha256(client.data.subarray(0, MB20))).toBe(sha256(bulkFromOrigin));
    expect(client.data.subarray(MB20).toString()).toBe(`SHA:${sha256(fromClient)}`);
  }, 60_000);

  test("terminate: openssl s_client verifies the site's certificate and talks to the origin", async () => {
    const p = Bun.spawn(
      [
        "openssl",
        "s_client",
        "-connect",
        `127.0.0.1:${imapsPort}`,
        "-servername",
        "mail.test",
        "-CAfile",
        join(gw.dir, "certs/internal-ca/ca.pem"),
        "-quiet",
        "-no_ign_eof",
        "-verify_return_error",
      ],
      { stdin: "pipe", stdout: "pipe", stderr: "pipe" },
    );
    const timer = setTimeout(() => p.kill(), 8000);
    await Bun.sleep(300);
    p.stdin.write("a2 NOOP\r\n");
    await p.stdin.flush();
    await Bun.sleep(300);
    p.stdin.end();
    const out = await new Response(p.stdout).text();
    clearTimeout(timer);
    expect(out).toContain("* OK IMAP ready");
    expect(out).toContain("reply:a2 NOOP");
  });

  test("the metrics of TCP routes pass promtool", async () => {
    const text = await (await fetch(`${gw.admin}/metrics`)).text();
    expect(text).toContain('gatehouse_tcp_connections_total{route="imaps"}');
    const promtool = Bun.spawnSync(["promtool", "check", "metrics"], { stdin: new TextEncoder().encode(text) });
    expect(promtool.stderr.toString() + promtool.stdout.toString()).toBe("");
    expect(promtool.exitCode).toBe(0);
  });

  test("a changed certificate serves new connections; an open connection keeps going", async () => {
    const before = await tlsConnect(imapsPort, "mail.test", ca);
    await before.client.until((c) => c.text.includes("* OK IMAP ready"));
    // New names make the internal CA issue a new certificate for the site; the reload does not touch the route.
    gw.writeRoute("mail", `hosts = ["mail.test", "imap.mail.test"]\ntls = "internal"\n`);
    expect((await gw.reload()).msg).toBe("config reloaded");
    const after = await tlsConnect(imapsPort, "imap.mail.test", ca);
    expect(after.peer.fingerprint256).not.toBe(before.peer.fingerprint256);
    expect(after.peer.subjectaltname).toContain("DNS:imap.mail.test");
    await after.client.until((c) => c.text.includes("* OK IMAP ready"));
    expect(await before.client.says("b1 NOOP\r\n", "reply:b1 NOOP")).toContain("reply:b1 NOOP");
    for (const c of [before.client, after.client]) c.socket.end();
  });

  test("a client of a terminate route that does not speak TLS is closed and counted", async () => {
    const refused = async () => Number((await gw.metric('gatehouse_tcp_refused_total{route="imaps",reason="handshake"}')) ?? 0);
    const before = await refused();
    const c = await connect(imapsPort);
    c.socket.write("not tls at all\r\n");
    await c.until((x) => x.closed);
    expect(await refused()).toBe(before + 1);
  });
});

describe("passthrough", () => {
  let gw: TestGateway;
  let a: Origin;
  let b: Origin;
  let fallback: Origin;
  let certA: ReturnType<typeof selfSigned>;
  let certB: ReturnType<typeof selfSigned>;
  let certD: ReturnType<typeof selfSigned>;
  let port: number;
  let strictPort: number;
  const dir = tempDir("gatehouse-tcp-certs-");

  beforeAll(async () => {
    certA = selfSigned(dir, "a.test");
    certB = selfSigned(dir, "b.example.test");
    certD = selfSigned(dir, "default.test");
    a = await tlsOrigin("A", certA);
    b = await tlsOrigin("B", certB);
    fallback = await tlsOrigin("D", certD);
    port = freePort();
    strictPort = freePort();
    gw = await startGateway({
      extra: `
[[tcp]]
name = "sni"
listen = "127.0.0.1:${port}"
mode = "passthrough"
default = ["tcp://127.0.0.1:${fallback.port}"]
[[tcp.sni]]
hosts = ["a.test"]
upstreams = ["tcp://127.0.0.1:${a.port}"]
[[tcp.sni]]
hosts = ["*.example.test"]
upstreams = ["tcp://127.0.0.1:${b.port}"]

[[tcp]]
name = "strict"
listen = "127.0.0.1:${strictPort}"
mode = "passthrough"
[[tcp.sni]]
hosts = ["a.test"]
upstreams = ["tcp://127.0.0.1:${a.port}"]
`,
    });
  });

  afterAll(async () => {
    await gw?.cleanup();
    for (const o of [a, b, fallback]) o?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the server name picks the origin, and the client sees the origin's own certificate (no termination)", async () => {
    const one = await tlsConnect(port, "a.test", certA.cert);
    expect(one.peer.fingerprint256).toBe(certA.fingerprint);
    expect(await one.client.says("x", "A:x")).toBe("A:x");
    // A wildcard entry covers a name one label below it.
    const two = await tlsConnect(port, "b.example.test");
    expect(two.peer.fingerprint256).toBe(certB.fingerprint);
    expect(await two.client.says("y", "B:y")).toBe("B:y");
    expect(new X509Certificate(certA.cert).fingerprint256).not.toBe(certB.fingerprint);
    one.client.socket.end();
    two.client.socket.end();
  });

  test("an unknown server name goes to default; without default it is closed and counted", async () => {
    const other = await tlsConnect(port, "unknown.test");
    expect(other.peer.fingerprint256).toBe(certD.fingerprint);
    expect(await other.client.says("z", "D:z")).toBe("D:z");
    other.client.socket.end();
    await expect(tlsConnect(strictPort, "unknown.test")).rejects.toThrow();
    expect(await gw.metric('gatehouse_tcp_refused_total{route="strict",reason="no_sni_match"}')).toBe("1");
    // The listener still serves the names it knows.
    const known = await tlsConnect(strictPort, "a.test");
    expect(known.peer.fingerprint256).toBe(certA.fingerprint);
    known.client.socket.end();
  });
});
