/** The HTTPS listener on the raw TLS front end, end to end: SNI against Host (421), PROXY preambles before TLS, plain HTTP on the TLS port, handshake deadlines, TLS versions and ALPN, WebSocket over TLS, and HTTP/2 kept on Bun.serve. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import tls from "node:tls";
import { freePort, origin, startGateway, type TestGateway } from "./harness.ts";
import { Client } from "./raw-client.ts";
import { TlsConn, tlsGet } from "./tls-client.ts";

type Seen = { site: string; host: string | null; path: string; xff: string | null };
const seen: Seen[] = [];

/** recording is an origin that records each request (host, path, X-Forwarded-For) under its site's name, and echoes WebSocket messages back. */
function recording(site: string) {
  return origin(
    (req, server) => {
      const path = new URL(req.url).pathname;
      if (req.headers.get("upgrade")?.toLowerCase() === "websocket")
        return server.upgrade(req, { data: { path } }) ? undefined : new Response("not a websocket", { status: 400 });
      seen.push({ site, host: req.headers.get("host"), path, xff: req.headers.get("x-forwarded-for") });
      return new Response(`${site} saw ${path}`);
    },
    {
      websocket: {
        open(ws: import("bun").ServerWebSocket<{ path: string }>) {
          ws.send(`hello ${ws.data.path}`);
        },
        message(ws: import("bun").ServerWebSocket<unknown>, msg: string | Buffer) {
          ws.send(typeof msg === "string" ? `echo:${msg}` : msg);
        },
      },
    },
  );
}
const upA = recording("a");
const upB = recording("b");

let gw: TestGateway;
let port: number;
let caPem: string;

beforeAll(async () => {
  port = freePort();
  gw = await startGateway({
    listenExtra: `https = "127.0.0.1:${port}"\nproxy_protocol = ["127.0.0.2/32"]`,
    extra: `[limits]\nheader_timeout = "500ms"\nmax_connections_per_client = 4\n`,
    routes: {
      a: `hosts = ["a.test", "www.a.test"]\ntls = "internal"\nupstreams = ["http://127.0.0.1:${upA.port}"]\n`,
      b: `hosts = ["b.test"]\ntls = "internal"\nupstreams = ["http://127.0.0.1:${upB.port}"]\n`,
    },
  });
  caPem = readFileSync(join(gw.dir, "certs/internal-ca/ca.pem"), "utf8");
});

afterAll(async () => {
  await gw?.cleanup();
  upA.stop(true);
  upB.stop(true);
});

/** captureHello records the ClientHello a node:tls client sends for servername (undefined: no SNI), with a throwaway listener that never answers. */
function captureHello(servername: string | undefined): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => reject(new Error("no ClientHello within 3s")), 3000);
    const l = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(s, d) {
          got = Buffer.concat([got, d]);
          if (got.length >= 5 && got.length >= 5 + got.readUInt16BE(3)) {
            clearTimeout(timer);
            s.terminate();
            l.stop(true);
            resolve(got);
          }
        },
      },
    });
    const t = tls.connect({ host: "127.0.0.1", port: l.port, servername, rejectUnauthorized: false, ALPNProtocols: ["http/1.1"] });
    t.on("error", () => undefined);
  });
}

/** overProxy opens a TCP connection from `from`, writes a PROXY preamble, then runs a TLS handshake on that socket and one request with Connection: close. */
function overProxy(from: string, preamble: string | Uint8Array, servername: string, path: string): Promise<{ secured: boolean; text: string; error?: string }> {
  return new Promise((resolve) => {
    let secured = false;
    let text = "";
    const done = (error?: string) => {
      clearTimeout(timer);
      resolve({ secured, text, error });
    };
    const timer = setTimeout(() => done("timed out"), 5000);
    const sock = net.connect({ host: "127.0.0.1", port, localAddress: from }, () => {
      sock.write(typeof preamble === "string" ? Buffer.from(preamble, "latin1") : preamble);
      const t = tls.connect({ socket: sock, servername, ca: caPem }, () => {
        secured = true;
        t.write(`GET ${path} HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`);
      });
      t.setEncoding("latin1");
      t.on("data", (d: string) => (text += d));
      t.on("close", () => done());
      t.on("error", (e) => done(e.message));
    });
    sock.on("error", (e) => done(e.message));
  });
}

/** v2 is a PROXY v2 preamble (PROXY, TCP over IPv4) naming src:5555 → 127.0.0.1:443. */
function v2(src: [number, number, number, number]): Uint8Array {
  return Uint8Array.from([
    0x0d,
    0x0a,
    0x0d,
    0x0a,
    0x00,
    0x0d,
    0x0a,
    0x51,
    0x55,
    0x49,
    0x54,
    0x0a,
    0x21,
    0x11,
    0,
    12,
    ...src,
    127,
    0,
    0,
    1,
    0x15,
    0xb3,
    0x01,
    0xbb,
  ]);
}

/**
 * sClient runs openssl s_client against the HTTPS port (asynchronously: the origins answer from this process), bounded at 8 s; with -ign_eof it reads until
 * the gateway closes (or the handshake fails), whenever its answer comes.
 */
async function sClient(args: string[], input = ""): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-ign_eof", ...args], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const killer = setTimeout(() => p.kill(), 8000);
  p.stdin.write(input);
  await p.stdin.end();
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  const code = await p.exited;
  clearTimeout(killer);
  return { code, out: out + err };
}

const statusOf = (text: string) => Number(/^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1] ?? 0);

test("SNI and Host: another site's Host on a connection is 421 (never reaching that site); its own Host (any case, with a port) or another of its site's hosts is served", async () => {
  const from = seen.length;
  const wrong = await tlsGet(port, "a.test", "b.test", "/misdirected", caPem);
  expect(wrong.authorized).toBe(true);
  expect(wrong.cert.subjectaltname).toBe("DNS:a.test, DNS:www.a.test");
  expect(wrong.status).toBe(421);
  // And the other way round: a b.test connection cannot carry a.test requests.
  expect((await tlsGet(port, "b.test", "www.a.test", "/misdirected", caPem)).status).toBe(421);

  for (const host of ["a.test", `A.TEST:${port}`, "www.a.test"]) {
    const res = await tlsGet(port, "a.test", host, "/same-site", caPem);
    expect([host, res.status, res.body]).toEqual([host, 200, "a saw /same-site"]);
  }
  // The site's second name as SNI carries requests for its first.
  expect((await tlsGet(port, "www.a.test", "a.test", "/same-site", caPem)).status).toBe(200);
  // One keep-alive connection: a misdirected request does not end it, and a good one after it is served.
  const c = await TlsConn.open(port, "b.test", caPem);
  try {
    expect((await c.request("a.test", "/misdirected")).status).toBe(421);
    expect((await c.request("b.test", "/after")).status).toBe(200);
  } finally {
    c.close();
  }
  expect(seen.slice(from).filter((s) => s.path === "/misdirected")).toEqual([]);
  expect(seen.slice(from).map((s) => `${s.site} ${s.path}`)).toEqual([...Array(4).fill("a /same-site"), "b /after"]);
  const line = await gw.waitForLog((l) => l.msg === "access" && l.host === "b.test" && l.path === "/misdirected", 2000);
  expect(line.status).toBe(421);
});

test("no SNI (a client connecting by IP address): the fallback certificate, and 421 for a Host naming the address", async () => {
  for (const servername of [undefined, ""]) {
    const res = await tlsGet(port, servername, `127.0.0.1:${port}`);
    expect(res.cert.subjectaltname).toBe("DNS:gatehouse.invalid");
    expect(res.cert.subject.CN).toBe("gatehouse.invalid");
    expect(res.status).toBe(421);
  }
  // openssl without -servername sends no SNI.
  const o = await sClient(["-noservername"], `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
  expect(o.out).toContain("CN = gatehouse.invalid");
  expect(o.out).toContain("HTTP/1.1 421 ");
});

// Without SNI the name check once was skipped: a connection shown only the fallback certificate (gatehouse.invalid) carried requests for any TLS site, while an
// unknown SNI name with the same certificate got 421.
test("no SNI, or an SNI name we do not serve: the fallback certificate is authoritative for no site, so a site's Host gets 421 either way", async () => {
  const from = seen.length;
  for (const servername of ["unknown.test", undefined]) {
    const res = await tlsGet(port, servername, "a.test", "/via-fallback");
    expect(res.cert.subjectaltname).toBe("DNS:gatehouse.invalid");
    expect([servername, res.status]).toEqual([servername, 421]);
  }
  expect(seen.slice(from).filter((s) => s.path === "/via-fallback")).toEqual([]);
});

test("PROXY v1 and v2 before TLS from a listed source: the handshake follows on the same connection, the origin and the access log see the named client", async () => {
  const r1 = await overProxy("127.0.0.2", "PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n", "a.test", "/pp-v1");
  expect([r1.secured, statusOf(r1.text), r1.text.endsWith("a saw /pp-v1")]).toEqual([true, 200, true]);
  const r2 = await overProxy("127.0.0.2", v2([203, 0, 113, 8]), "b.test", "/pp-v2");
  expect([r2.secured, statusOf(r2.text), r2.text.endsWith("b saw /pp-v2")]).toEqual([true, 200, true]);
  expect(seen.filter((s) => s.path.startsWith("/pp-")).map((s) => [s.path, s.xff?.split(",").at(-1)?.trim()])).toEqual([
    ["/pp-v1", "203.0.113.7"],
    ["/pp-v2", "203.0.113.8"],
  ]);
  for (const [path, client] of [
    ["/pp-v1", "203.0.113.7"],
    ["/pp-v2", "203.0.113.8"],
  ]) {
    const line = await gw.waitForLog((l) => l.msg === "access" && l.path === path, 2000);
    expect([line.client, line.status]).toEqual([client, 200]);
  }
  // Without a preamble a listed source is served as itself.
  const plain = await overProxy("127.0.0.2", "", "a.test", "/pp-none");
  expect(statusOf(plain.text)).toBe(200);
  expect((await gw.waitForLog((l) => l.msg === "access" && l.path === "/pp-none", 2000)).client).toBe("127.0.0.2");
});

test("a PROXY preamble from a source not listed is refused before any TLS: no byte of a handshake comes back, the connection closes, the refusal is logged", async () => {
  const logs = gw.logs.length;
  const hello = await captureHello("a.test");
  const raw = await Client.open(port, "127.0.0.3");
  raw.send(Buffer.concat([Buffer.from("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n"), hello]));
  await raw.until((c) => c.closed, 3000, "the close");
  expect(raw.text).toBe("");
  const line = await gw.waitForLog((l) => l.msg === "refused" && l.client === "127.0.0.3", 2000, logs);
  expect(line.status).toBe(400);
  expect(String(line.reason)).toContain("PROXY protocol preamble from a source");
  // A real client sees its handshake fail.
  const r = await overProxy("127.0.0.3", "PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n", "a.test", "/pp-refused");
  expect(r.secured).toBe(false);
  expect(r.text).toBe("");
  expect(seen.some((s) => s.path === "/pp-refused")).toBe(false);
});

test("a cut PROXY preamble, or a broken one, from a listed source reaches nothing, and the next connection is served", async () => {
  const from = seen.length;
  const cut = await Client.open(port, "127.0.0.2");
  cut.send("PROXY TCP4 203.0.113.7 127.0");
  await Bun.sleep(100);
  cut.end();
  await cut.until((c) => c.closed, 3000, "the close");
  expect(cut.text).toBe("");
  const logs = gw.logs.length;
  const broken = await Client.open(port, "127.0.0.2");
  broken.send("PROXY TCP4 203.0.113.999 127.0.0.1 5555 443\r\n");
  await broken.until((c) => c.closed, 3000, "the close");
  expect(broken.text).toBe("");
  expect((await gw.waitForLog((l) => l.msg === "refused" && l.client === "127.0.0.2", 2000, logs)).reason).toBe(
    "a PROXY v1 line with an invalid address or port",
  );
  expect(seen.length).toBe(from);
  const after = await overProxy("127.0.0.2", "PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n", "a.test", "/pp-after");
  expect(statusOf(after.text)).toBe(200);
  expect(seen.slice(from).map((s) => s.path)).toEqual(["/pp-after"]);
  expect(gw.proc.exitCode).toBeNull();
});

test("plain HTTP sent to the HTTPS port gets a plain-text 400 that says to use https, then a close; nothing reaches an origin", async () => {
  const from = seen.length;
  const logs = gw.logs.length;
  const c = await Client.open(port);
  c.send("GET /plain HTTP/1.1\r\nHost: a.test\r\n\r\n");
  await c.until((x) => x.closed, 3000, "the close");
  expect(c.text).toStartWith("HTTP/1.1 400 ");
  expect(c.text.toLowerCase()).toContain("content-type: text/plain");
  const body = c.text.slice(c.text.indexOf("\r\n\r\n") + 4);
  expect(body).toContain("https://");
  expect(Buffer.byteLength(body)).toBe(Number(/content-length: (\d+)/i.exec(c.text)?.[1]));
  expect(seen.length).toBe(from);
  expect((await gw.waitForLog((l) => l.msg === "refused" && l.reason === "not a TLS handshake", 2000, logs)).status).toBe(400);
  // Bytes that are neither TLS nor HTTP: closed without an answer.
  const junk = await Client.open(port);
  junk.send("\x00\x01\x02\x03\x04\x05\x06\x07");
  await junk.until((x) => x.closed, 3000, "the close");
  expect(junk.text).toBe("");
});

/** closedAfter opens a raw connection from `from`, sends bytes (a function may trickle them), and measures how long until the gateway closes it (at most 3 s). */
async function closedAfter(from: string, send: (c: Client) => void | Promise<void>): Promise<{ ms: number; closed: boolean; text: string }> {
  const c = await Client.open(port, from);
  const t0 = performance.now();
  await send(c);
  const deadline = t0 + 3000;
  while (!c.closed && performance.now() < deadline) await Bun.sleep(10);
  return { ms: performance.now() - t0, closed: c.closed, text: c.text };
}

test("header_timeout (500ms) bounds the time before the handshake: a silent connection, half a ClientHello, a trickled one, a half preamble, a preamble and nothing after; and the first request after a handshake", async () => {
  const hello = await captureHello("a.test");
  expect([hello[0], hello[1]]).toEqual([22, 3]);
  const cases: [string, string, (c: Client) => void | Promise<void>][] = [
    ["silent", "127.0.0.1", () => undefined],
    ["half a ClientHello", "127.0.0.1", (c) => c.send(hello.subarray(0, Math.floor(hello.length / 2)))],
    ["three bytes of a record head", "127.0.0.1", (c) => c.send(hello.subarray(0, 3))],
    [
      // Bytes that keep coming do not extend the deadline.
      "a ClientHello a byte per 50ms",
      "127.0.0.1",
      async (c) => {
        for (let i = 0; i < hello.length && !c.closed && i < 60; i++) {
          c.send(hello.subarray(i, i + 1));
          await Bun.sleep(50);
        }
      },
    ],
    ["half a PROXY preamble", "127.0.0.2", (c) => c.send("PROXY TCP4 203.0.113.7 ")],
    ["a preamble, then silence", "127.0.0.2", (c) => c.send("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n")],
  ];
  const timed = await Promise.all(cases.map(async ([what, from, send]) => [what, await closedAfter(from, send)] as const));
  for (const [what, r] of timed) expect([what, r.closed, r.ms >= 450, r.ms < 1500, r.text]).toEqual([what, true, true, true, ""]);
  // After the handshake the header timeout runs again, for the first request.
  const c = await TlsConn.open(port, "a.test", caPem);
  const t0 = performance.now();
  const deadline = Date.now() + 3000;
  while (!c.closed && Date.now() < deadline) await Bun.sleep(10);
  const ms = performance.now() - t0;
  expect([c.closed, ms >= 450, ms < 1500]).toEqual([true, true, true]);
});

// BUG (src/front/tls-accept.ts): the deadline's expire() terminates the plain socket, which upgradeTLS() has handed to the TLS socket it returns (and the
// code drops): a client that sends its ClientHello and then nothing keeps the connection open for good (seen open after 20 s), uncounted by the caps.
test("header_timeout also bounds the handshake itself: a ClientHello whose client never answers the server's flight is closed in time", async () => {
  const hello = await captureHello("a.test");
  const stalled = await Promise.all([1, 2, 3].map(() => closedAfter("127.0.0.1", (c) => c.send(hello))));
  for (const r of stalled) {
    expect(r.text).toStartWith("\x16\x03"); // the server's handshake flight came
    expect([r.closed, r.ms >= 450, r.ms < 1500]).toEqual([true, true, true]);
  }
});

test("TLS 1.0 and 1.1 are refused, 1.2 and 1.3 negotiate; a client offering h2 and http/1.1 gets http/1.1", async () => {
  // SECLEVEL=0 lets this OpenSSL offer TLS 1.0/1.1 at all, so the refusal is the gateway's.
  for (const v of ["-tls1", "-tls1_1"]) {
    const o = await sClient([v, "-servername", "a.test", "-cipher", "DEFAULT@SECLEVEL=0"]);
    expect(o.code).not.toBe(0);
    expect(o.out).toMatch(/alert protocol version|unsupported protocol|wrong version number/i);
    expect(o.out).not.toContain("no protocols available");
  }
  for (const [flag, name] of [
    ["-tls1_2", "TLSv1.2"],
    ["-tls1_3", "TLSv1.3"],
  ]) {
    const o = await sClient([flag!, "-servername", "a.test", "-alpn", "h2,http/1.1"], "GET /v HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    expect(o.out).toContain(`New, ${name}, Cipher is`);
    expect(o.out).toContain("ALPN protocol: http/1.1");
    expect(o.out).toContain("HTTP/1.1 200 OK");
    expect(o.out).toContain("a saw /v");
  }
  const alpn = await new Promise<string | false>((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername: "b.test", ca: caPem, ALPNProtocols: ["h2", "http/1.1"] }, () => {
      resolve(s.alpnProtocol ?? false);
      s.destroy();
    });
    s.on("error", reject);
  });
  expect(alpn).toBe("http/1.1");
});

test("a WebSocket over the HTTPS listener (wss://) reaches a WebSocket origin: messages go both ways", async () => {
  const ws = new WebSocket(`wss://127.0.0.1:${port}/chat`, { headers: { host: "a.test" }, tls: { ca: caPem, serverName: "a.test" } } as never);
  const got: string[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no echo within 5s; got ${JSON.stringify(got)}`)), 5000);
      ws.onmessage = (e) => {
        got.push(String(e.data));
        if (got.length === 1) ws.send("ping over tls");
        if (got.length === 3) {
          clearTimeout(timer);
          resolve();
        }
        if (got.length === 2) ws.send("x".repeat(70_000));
      };
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new Error("websocket error"));
      };
    });
    expect(got.slice(0, 2)).toEqual(["hello /chat", "echo:ping over tls"]);
    expect(got[2]).toBe(`echo:${"x".repeat(70_000)}`);
  } finally {
    ws.close();
  }
  const line = await gw.waitForLog((l) => l.msg === "access" && l.path === "/chat", 3000);
  expect([line.status, line.route]).toEqual([101, "a"]);
});

test("listen.http2 = true keeps HTTPS on Bun.serve: HTTP/1.1 and h2 by ALPN, each site's certificate by SNI", async () => {
  const h2Port = freePort();
  const g = await startGateway({
    listenExtra: `https = "127.0.0.1:${h2Port}"\nhttp2 = true`,
    routes: {
      a: `hosts = ["a.test"]\ntls = "internal"\nupstreams = ["http://127.0.0.1:${upA.port}"]\n`,
      b: `hosts = ["b.test"]\ntls = "internal"\nupstreams = ["http://127.0.0.1:${upB.port}"]\n`,
    },
  });
  try {
    const ca = join(g.dir, "certs/internal-ca/ca.pem");
    const curl = async (flag: string, name: string) => {
      const p = Bun.spawn(
        [
          "curl",
          "-s",
          "--cacert",
          ca,
          "--max-time",
          "5",
          flag,
          "--resolve",
          `${name}:${h2Port}:127.0.0.1`,
          "-w",
          "\n%{http_version} %{http_code}",
          `https://${name}:${h2Port}/h2`,
        ],
        { stdout: "pipe", stderr: "pipe" },
      );
      return new Response(p.stdout).text();
    };
    expect(await curl("--http2", "a.test")).toBe("a saw /h2\n2 200");
    expect(await curl("--http1.1", "a.test")).toBe("a saw /h2\n1.1 200");
    expect(await curl("--http2", "b.test")).toBe("b saw /h2\n2 200");
  } finally {
    await g.cleanup();
  }
});

test("connections in their handshake count against max_connections_per_client (4): a fifth is closed at once, another client is still served, a close makes room", async () => {
  const held = await Promise.all([1, 2, 3, 4].map(() => Client.open(port, "127.0.0.6")));
  await Bun.sleep(100);
  const fifth = await Client.open(port, "127.0.0.6");
  const t0 = Date.now();
  await fifth.until((c) => c.closed, 2000, "the fifth connection closed");
  // Closed at once, not by header_timeout (500ms), and without a byte: nothing can be said before TLS.
  expect([Date.now() - t0 < 400, fifth.text]).toEqual([true, ""]);
  const hello = await captureHello("a.test");
  const other = await Client.open(port, "127.0.0.7");
  other.send(hello);
  await other.until((c) => c.text.startsWith("\x16\x03"), 2000, "a handshake flight for another client");
  other.end();
  for (const c of held) c.end();
  await Bun.sleep(200);
  const again = await Client.open(port, "127.0.0.6");
  again.send(hello);
  await again.until((c) => c.text.startsWith("\x16\x03"), 2000, "a handshake flight for a connection after the others closed");
  again.end();
});

test("a TLS connection refused by the per-client cap leaves nothing for a drain to wait for: SIGTERM ends the gateway at once, not after shutdown_grace", async () => {
  const p = freePort();
  const g = await startGateway({
    listenExtra: `https = "127.0.0.1:${p}"`,
    extra: `[limits]\nmax_connections_per_client = 1\n`,
    routes: { a: `hosts = ["a.test"]\ntls = "internal"\nstatic = "builtin:welcome"\n` },
  });
  try {
    const held = await Client.open(p, "127.0.0.8");
    const refused = await Client.open(p, "127.0.0.8");
    await refused.until((c) => c.closed, 2000, "the refused connection closed");
    held.end();
    await held.until((c) => c.closed, 2000, "the held connection closed");
    await Bun.sleep(100);
    const t0 = Date.now();
    expect(await g.stop()).toBe(0);
    // shutdown_grace is 5 s in these tests: a handshake counted forever would hold the drain that long.
    expect(Date.now() - t0).toBeLessThan(2000);
  } finally {
    await g.cleanup();
  }
});
