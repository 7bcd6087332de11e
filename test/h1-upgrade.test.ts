/** The upstream side of an HTTP/1.1 Upgrade against real origins on 127.0.0.1: a WebSocket handshake and frames through the tunnel, plain and over TLS; answers other than 101; failures; bytes after the 101; backpressure. */
import { afterAll, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Socket, TCPSocketListener } from "bun";
import { H1Error } from "../src/upstream/h1-message.ts";
import { openUpgrade, type Tunnel, type UpgradeReply } from "../src/upstream/h1-upgrade.ts";
import { tempDir } from "./harness.ts";

const WAIT = 3000; // under bun's 5 s per test, so that our own message shows
const never = () => new AbortController().signal;
const closers: (() => void)[] = [];
afterAll(() => {
  for (const c of closers) c();
});

/** within rejects when p has not settled after ms. */
function within<T>(p: Promise<T>, ms = WAIT, what = "the wait"): Promise<T> {
  let t: Timer | undefined;
  const timeout = new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`${what} took over ${ms}ms`)), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

/** until waits for cond, polling. */
async function until(cond: () => boolean, what: string, ms = WAIT): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/** rejection is what p rejects with (it must reject within WAIT). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  return within(
    p.then(
      () => {
        throw new Error("resolved, expected a rejection");
      },
      (e: Error) => e,
    ),
  );
}

type Conn = { n: number; ended: boolean };

/** raw is a Bun.listen origin on 127.0.0.1 that hands each connection's data to onData. */
function raw(onData: (s: Socket<Conn>, d: Buffer) => void): TCPSocketListener<Conn> {
  const l = Bun.listen<Conn>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    data: { n: 0, ended: false },
    socket: {
      open: (s) => {
        s.data = { n: 0, ended: false };
      },
      data: (s, d) => onData(s, d),
      // the upstream's half of a half-close: it answers our FIN with BYE and its own
      end: (s) => {
        s.data.ended = true;
        s.end("BYE");
      },
    },
  });
  closers.push(() => l.stop(true));
  return l;
}

// ---------------------------------------------------------------- WebSocket frames (RFC 6455 §5.2), just enough for the test

/** clientFrame is a masked, final text frame (client to server). */
function clientFrame(text: string): Uint8Array {
  const payload = Buffer.from(text);
  if (payload.length > 125) throw new Error("test frames are short");
  const mask = randomBytes(4);
  const out = Buffer.alloc(6 + payload.length);
  out[0] = 0x81;
  out[1] = 0x80 | payload.length;
  mask.copy(out, 2);
  for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i]! ^ mask[i % 4]!;
  return out;
}

/** serverFrame decodes one unmasked frame at the start of buf: its opcode and text, or undefined while incomplete. */
function serverFrame(buf: Buffer): { opcode: number; text: string } | undefined {
  if (buf.length < 2) return undefined;
  if (buf[1]! & 0x80) throw new Error("a server frame must not be masked");
  let len = buf[1]! & 0x7f;
  let at = 2;
  if (len === 126) {
    if (buf.length < 4) return undefined;
    len = buf.readUInt16BE(2);
    at = 4;
  } else if (len === 127) throw new Error("test frames are short");
  if (buf.length < at + len) return undefined;
  return { opcode: buf[0]! & 0x0f, text: buf.toString("utf8", at, at + len) };
}

const wsKey = () => randomBytes(16).toString("base64");
const wsAccept = (key: string) => createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
const wsHead = (key: string, host: string) =>
  `GET /chat HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;

/** echoOver sends a text frame through a switched tunnel and reads the origin's answer frame. */
async function echoOver(r: UpgradeReply, text: string): Promise<{ opcode: number; text: string }> {
  if (r.kind !== "switched") throw new Error(`expected a 101, got ${r.status}`);
  let got = Buffer.from(r.rest);
  let frame: { opcode: number; text: string } | undefined;
  r.tunnel.onData = (d) => {
    got = Buffer.concat([got, d]);
    frame = serverFrame(got);
  };
  r.tunnel.write(clientFrame(text));
  await until(() => frame !== undefined, "the echo frame");
  r.tunnel.terminate();
  return frame!;
}

const wsOrigin = (tls?: { cert: string; key: string }) => {
  const s = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls,
    fetch: (req, server) => {
      if (new URL(req.url).pathname === "/chat" && server.upgrade(req)) return undefined;
      return new Response("no upgrade here", { status: 400, headers: { "x-why": "not /chat" } });
    },
    websocket: {
      message(ws, m) {
        ws.send(`echo ${m}`);
      },
    },
  });
  closers.push(() => s.stop(true));
  return s;
};
const ws = wsOrigin();

// ---------------------------------------------------------------- 101

test("a WebSocket handshake switches: 101 with every field as sent, Sec-WebSocket-Accept right, and frames both ways through the tunnel", async () => {
  const key = wsKey();
  const r = await within(openUpgrade(`http://127.0.0.1:${ws.port}`, undefined, wsHead(key, `127.0.0.1:${ws.port}`), 2000, never()));
  expect(r.kind).toBe("switched");
  if (r.kind !== "switched") return;
  expect(r.status).toBe(101);
  expect(r.statusText).toBe("Switching Protocols");
  expect(r.headers.get("sec-websocket-accept")).toBe(wsAccept(key));
  expect(r.headers.get("upgrade")?.toLowerCase()).toBe("websocket");
  expect(r.headers.get("connection")?.toLowerCase()).toBe("upgrade");
  expect(await echoOver(r, "hello through the tunnel")).toEqual({ opcode: 1, text: "echo hello through the tunnel" });
});

test("an IPv6 upstream in brackets switches too", async () => {
  const v6 = Bun.serve({
    hostname: "::1",
    port: 0,
    fetch: (req, server) => (server.upgrade(req) ? undefined : new Response("no", { status: 400 })),
    websocket: {
      message(ws, m) {
        ws.send(`v6 ${m}`);
      },
    },
  });
  closers.push(() => v6.stop(true));
  const r = await within(openUpgrade(`http://[::1]:${v6.port}`, undefined, wsHead(wsKey(), `[::1]:${v6.port}`), 2000, never()));
  expect(await echoOver(r, "hi")).toEqual({ opcode: 1, text: "v6 hi" });
});

test("bytes the upstream sends right after the 101, in the same write, are the reply's rest; later bytes and the close are held until the caller listens", async () => {
  const origin = raw(async (s) => {
    s.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nEARLY");
    await Bun.sleep(20);
    s.end("LATER");
  });
  const r = await within(
    openUpgrade(`http://127.0.0.1:${origin.port}`, undefined, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", 2000, never()),
  );
  expect(r.kind).toBe("switched");
  if (r.kind !== "switched") return;
  expect(Buffer.from(r.rest).toString()).toBe("EARLY");
  expect(r.headers.get("upgrade")).toBe("x");
  await Bun.sleep(100); // the upstream has sent LATER and closed by now
  const events: string[] = [];
  const closed = new Promise<void>((res) => {
    r.tunnel.onClose = (e) => {
      events.push(`close ${e}`);
      res();
    };
  });
  expect(events).toEqual([]); // held: bytes not taken yet come first
  r.tunnel.onData = (d) => events.push(Buffer.from(d).toString());
  await within(closed, 2000, "onClose");
  expect(events).toEqual(["LATER", "close undefined"]);
});

test("a 101 over TLS: verified against the CA and server name, then frames through the tunnel; a wrong server name or an unknown CA is refused", async () => {
  const dir = tempDir("gatehouse-h1-upgrade-");
  closers.push(() => rmSync(dir, { recursive: true, force: true }));
  const sh = Bun.spawnSync(
    [
      "bash",
      "-c",
      `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=origin -keyout server.key -out server.csr
printf 'subjectAltName=DNS:origin.internal\\nextendedKeyUsage=serverAuth\\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem`,
    ],
    { cwd: dir, stderr: "pipe" },
  );
  if (sh.exitCode !== 0) throw new Error(sh.stderr.toString());
  const pem = (f: string) => readFileSync(join(dir, f), "utf8");
  const secure = wsOrigin({ cert: pem("server.pem"), key: pem("server.key") });
  const key = wsKey();
  const url = `https://127.0.0.1:${secure.port}`;
  const r = await within(openUpgrade(url, { ca: pem("ca.pem"), serverName: "origin.internal" }, wsHead(key, "origin.internal"), 2000, never()));
  expect(r.kind).toBe("switched");
  if (r.kind !== "switched") return;
  expect(r.headers.get("sec-websocket-accept")).toBe(wsAccept(key));
  expect(await echoOver(r, "secret")).toEqual({ opcode: 1, text: "echo secret" });
  const wrongName = await rejection(openUpgrade(url, { ca: pem("ca.pem"), serverName: "other.internal" }, wsHead(wsKey(), "other.internal"), 2000, never()));
  expect(wrongName).toBeInstanceOf(H1Error);
  expect((wrongName as H1Error).code).toBe("ERR_TLS_CERT_ALTNAME_INVALID");
  const untrusted = await rejection(openUpgrade(url, { serverName: "origin.internal" }, wsHead(wsKey(), "origin.internal"), 2000, never()));
  expect((untrusted as H1Error).code).toBe("UNABLE_TO_VERIFY_LEAF_SIGNATURE");
});

test("backpressure: 8 MiB written to an upstream that does not read stays buffered; when it reads again, onDrain fires, every byte arrives, then the half-close", async () => {
  let sock: Socket<Conn> | undefined;
  let head = true;
  const origin = raw((s, d) => {
    if (head) {
      head = false;
      sock = s;
      s.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: bulk\r\nConnection: upgrade\r\n\r\n");
      s.pause();
      return;
    }
    s.data.n += d.length;
  });
  const r = await within(
    openUpgrade(`http://127.0.0.1:${origin.port}`, undefined, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: bulk\r\nConnection: upgrade\r\n\r\n", 2000, never()),
  );
  if (r.kind !== "switched") throw new Error("expected a 101");
  const t: Tunnel = r.tunnel;
  let drains = 0;
  t.onDrain = () => drains++;
  let back = "";
  t.onData = (d) => (back += Buffer.from(d).toString());
  const total = 8 * 1024 * 1024;
  const block = Buffer.alloc(64 * 1024, 7);
  for (let i = 0; i < total / block.length; i++) t.write(block);
  t.end(); // only after all of it went out
  expect(t.buffered).toBeGreaterThan(0);
  await Bun.sleep(100);
  expect(t.buffered).toBeGreaterThan(0); // nobody reads: it stays
  expect(drains).toBe(0);
  sock!.resume();
  await until(() => drains > 0 && sock!.data.n === total, `onDrain and all ${total} bytes`);
  expect(t.buffered).toBe(0);
  expect(drains).toBe(1);
  await until(() => sock!.data.ended, "the upstream to see the end");
  // a half-close: what the upstream sends after our FIN still arrives
  const closed = new Promise<string | undefined>((res) => (t.onClose = res));
  expect(await within(closed, 2000, "onClose")).toBeUndefined();
  expect(back).toBe("BYE");
});

// ---------------------------------------------------------------- other answers

test("an answer other than 101 comes back whole, with its status and body, and hop-by-hop fields removed", async () => {
  const r = await within(openUpgrade(`http://127.0.0.1:${ws.port}`, undefined, wsHead(wsKey(), "a").replace("/chat", "/plain"), 2000, never()));
  expect(r.kind).toBe("answered");
  if (r.kind !== "answered") return;
  expect(r.status).toBe(400);
  expect(r.headers.get("x-why")).toBe("not /chat");
  expect(r.headers.get("connection")).toBeNull();
  expect(Buffer.from(r.body).toString()).toBe("no upgrade here");
});

test("a chunked answer, after an interim 100, is decoded (in pieces, with an extension and a trailer); the connection is closed after it", async () => {
  let closed = false;
  const l = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data: async (s) => {
        for (const part of [
          "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\nTransfer-",
          "Encoding: chunked\r\n\r\n5;x=y\r\nhel",
          "lo\r\n6\r\n wo",
          "rld\r\n0\r\nT: 1\r\n\r\n",
        ]) {
          s.write(part);
          await Bun.sleep(10);
        }
      },
      close: () => {
        closed = true;
      },
    },
  });
  closers.push(() => l.stop(true));
  const r = await within(
    openUpgrade(`http://127.0.0.1:${l.port}`, undefined, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", 2000, never()),
  );
  expect(r.kind).toBe("answered");
  if (r.kind !== "answered") return;
  expect(r.status).toBe(403);
  expect(r.statusText).toBe("Forbidden");
  expect(Buffer.from(r.body).toString()).toBe("hello world");
  expect(r.headers.get("transfer-encoding")).toBeNull();
  await until(() => closed, "the upstream connection to close");
});

// ---------------------------------------------------------------- failures

test("a port with nothing listening rejects with ECONNREFUSED", async () => {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  const e = await rejection(openUpgrade(`http://127.0.0.1:${port}`, undefined, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 2000, never()));
  expect(e).toBeInstanceOf(H1Error);
  expect((e as H1Error).code).toBe("ECONNREFUSED");
});

test("an upstream that never answers rejects with ETIMEDOUT once the timeout passes", async () => {
  const silent = raw(() => {});
  const t0 = performance.now();
  const e = await rejection(openUpgrade(`http://127.0.0.1:${silent.port}`, undefined, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 300, never()));
  const took = performance.now() - t0;
  expect(e).toBeInstanceOf(H1Error);
  expect((e as H1Error).code).toBe("ETIMEDOUT");
  expect(took).toBeGreaterThanOrEqual(290);
  expect(took).toBeLessThan(1500);
});

test("a malformed answer rejects with EPROTO: garbage, and a 101 with a folded line", async () => {
  const garbage = raw((s) => s.write("HELLO\r\n\r\n"));
  const e = await rejection(openUpgrade(`http://127.0.0.1:${garbage.port}`, undefined, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 2000, never()));
  expect(e).toBeInstanceOf(H1Error);
  expect((e as H1Error).code).toBe("EPROTO");
  const folded = raw((s) => s.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n  y\r\nConnection: upgrade\r\n\r\n"));
  const f = await rejection(openUpgrade(`http://127.0.0.1:${folded.port}`, undefined, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 2000, never()));
  expect((f as H1Error).code).toBe("EPROTO");
});

test("the signal aborting before an answer rejects with its reason", async () => {
  const silent = raw(() => {});
  const ctrl = new AbortController();
  const reason = new Error("client left");
  setTimeout(() => ctrl.abort(reason), 50);
  const e = await rejection(openUpgrade(`http://127.0.0.1:${silent.port}`, undefined, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 3000, ctrl.signal));
  expect(e).toBe(reason);
});
