/** Tests of the pooled HTTP/1.1 client against scripted upstreams: raw TCP servers on 127.0.0.1 (Bun.listen) that write exact bytes, often split across writes at awkward points. */
import { afterEach, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { BUFFER_LIMIT, H1Pool, type H1Request, type H1Response, type PoolOptions } from "./h1-client.ts";

// ---------------------------------------------------------------- helpers

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** within fails with a clear message when p does not settle in time (a client bug may leave a promise pending forever). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: Timer | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

/** closedWithin is whether the server saw n connections closed within ms. */
async function closedWithin(srv: Srv, n: number, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (srv.closed() < n) {
    if (performance.now() > end) return false;
    await sleep(5);
  }
  return true;
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** settle returns a promise's error (or throws if it resolved): for asserting on rejections without unhandled ones. */
async function rejection(p: Promise<unknown>, ms: number, what: string): Promise<Error & { code?: string }> {
  const r = await within(p.then((v) => ({ ok: true as const, v }), (e: unknown) => ({ ok: false as const, e })), ms, what);
  if (r.ok) throw new Error(`${what}: expected a rejection, got ${JSON.stringify(r.v, (_k, v) => (v instanceof Headers ? [...v] : v))?.slice(0, 200)}`);
  return r.e as Error & { code?: string };
}

type Req = { head: string; method: string; target: string; headers: Map<string, string>; raw: Buffer; body: Buffer };
type Peer = { id: number; s: Socket<Peer>; buf: Buffer; reqs: Req[]; closed: boolean; received: number; problem?: string };
type Srv = { port: number; peers: Peer[]; closed(): number };
type Opts = {
  onRequest?: (p: Peer, r: Req) => void | Promise<void>;
  onData?: (p: Peer, d: Buffer) => void;
  onDrain?: (p: Peer) => void;
};

/** parseRequest reads one request (head and Content-Length or chunked body, strictly checked) from the front of buf. */
function parseRequest(buf: Buffer): { req: Req; used: number } | undefined {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const head = buf.toString("latin1", 0, end + 4);
  const lines = head.slice(0, -4).split("\r\n");
  const [method = "", target = ""] = lines[0]!.split(" ");
  const headers = new Map<string, string>();
  for (const l of lines.slice(1)) {
    const c = l.indexOf(":");
    headers.set(l.slice(0, c).toLowerCase(), l.slice(c + 1).trim());
  }
  let pos = end + 4;
  let body: Buffer = Buffer.alloc(0);
  if (headers.has("content-length")) {
    const n = Number(headers.get("content-length"));
    if (buf.length < pos + n) return undefined;
    body = buf.subarray(pos, pos + n);
    pos += n;
  } else if (headers.get("transfer-encoding") === "chunked") {
    const parts: Buffer[] = [];
    for (;;) {
      const eol = buf.indexOf("\r\n", pos);
      if (eol < 0) return undefined;
      const hex = buf.toString("latin1", pos, eol);
      if (!/^[0-9a-f]+$/i.test(hex)) throw new Error(`bad chunk size line from the client: ${JSON.stringify(hex)}`);
      const size = parseInt(hex, 16);
      if (size === 0) {
        if (buf.length < eol + 4) return undefined;
        if (buf.toString("latin1", eol + 2, eol + 4) !== "\r\n") throw new Error("no empty line after the last chunk");
        pos = eol + 4;
        break;
      }
      if (buf.length < eol + 2 + size + 2) return undefined;
      parts.push(buf.subarray(eol + 2, eol + 2 + size));
      if (buf.toString("latin1", eol + 2 + size, eol + 4 + size) !== "\r\n") throw new Error("no CRLF after chunk data");
      pos = eol + 4 + size;
    }
    body = Buffer.concat(parts);
  }
  return { req: { head, method, target, headers, raw: Buffer.from(buf.subarray(0, pos)), body: Buffer.from(body) }, used: pos };
}

const servers: TCPSocketListener<Peer>[] = [];
const pools: H1Pool[] = [];

afterEach(() => {
  for (const p of pools.splice(0)) p.close();
  for (const s of servers.splice(0)) s.stop(true);
});

/** listen starts a scripted upstream: by default it parses requests and calls onRequest for each, in order. */
function listen(o: Opts): Srv {
  const peers: Peer[] = [];
  const l = Bun.listen<Peer>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        const p: Peer = { id: peers.length, s, buf: Buffer.alloc(0), reqs: [], closed: false, received: 0 };
        s.data = p;
        peers.push(p);
        s.setNoDelay(true);
      },
      data(s, d) {
        const p = s.data;
        p.received += d.byteLength;
        if (o.onData !== undefined) return o.onData(p, Buffer.from(d));
        p.buf = Buffer.concat([p.buf, d]);
        for (;;) {
          let r: ReturnType<typeof parseRequest>;
          try {
            r = parseRequest(p.buf);
          } catch (e) {
            p.problem = (e as Error).message;
            return;
          }
          if (r === undefined) return;
          p.buf = p.buf.subarray(r.used);
          p.reqs.push(r.req);
          void o.onRequest?.(p, r.req);
        }
      },
      drain(s) {
        o.onDrain?.(s.data);
      },
      close(s) {
        if (s.data !== undefined) s.data.closed = true;
      },
      error(s) {
        if (s.data !== undefined) s.data.closed = true;
      },
    },
  });
  servers.push(l);
  return { port: l.port, peers, closed: () => peers.filter((p) => p.closed).length };
}

function mkPool(srv: Srv, opts?: PoolOptions): H1Pool {
  const p = new H1Pool("127.0.0.1", srv.port, opts);
  pools.push(p);
  return p;
}

const headOf = (method: string, path: string, extra = "") => `${method} ${path} HTTP/1.1\r\nhost: upstream.test\r\n${extra}\r\n`;

function get(path = "/", signal: AbortSignal = new AbortController().signal, method = "GET"): H1Request {
  return { method, head: headOf(method, path), body: null, chunked: false, signal };
}

/** writeParts writes each part in its own write, a pause between them, so that the client reads them separately. */
async function writeParts(s: Socket<Peer>, parts: readonly (string | Uint8Array)[], gap = 10): Promise<void> {
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) await sleep(gap);
    const part = parts[i]!;
    const b = typeof part === "string" ? Buffer.from(part, "latin1") : part;
    const n = s.write(b);
    if (n < 0) return; // the client closed the connection: the rest has nowhere to go
    if (n !== b.byteLength) throw new Error(`test server: short write ${n} of ${b.byteLength}`);
  }
}

/** splitAfter cuts text after each marker, found in order. */
function splitAfter(text: string, ...cuts: string[]): string[] {
  const out: string[] = [];
  let last = 0;
  for (const c of cuts) {
    const i = text.indexOf(c, last);
    if (i < 0) throw new Error(`cut ${JSON.stringify(c)} not found`);
    out.push(text.slice(last, i + c.length));
    last = i + c.length;
  }
  out.push(text.slice(last));
  return out;
}

const ok = (body: string, extra = "") => `HTTP/1.1 200 OK\r\ncontent-length: ${Buffer.byteLength(body, "latin1")}\r\n${extra}\r\n${body}`;

async function readAll(s: ReadableStream<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of s) parts.push(c);
  return Buffer.concat(parts);
}

async function bodyText(res: H1Response): Promise<string> {
  if (res.kind === "none") return "";
  const b = res.kind === "bytes" ? await res.bytes() : await readAll(res.stream!);
  return Buffer.from(b).toString("latin1");
}

/** countedSignal tracks the abort listeners on a real signal, to catch ones left behind. */
function countedSignal(ctrl = new AbortController()): { ctrl: AbortController; signal: AbortSignal; listeners: () => number } {
  const sig = ctrl.signal;
  const live = new Set<unknown>();
  const add = sig.addEventListener.bind(sig);
  const remove = sig.removeEventListener.bind(sig);
  type Add = typeof sig.addEventListener;
  type Remove = typeof sig.removeEventListener;
  sig.addEventListener = ((type: string, l: Parameters<Add>[1], o?: Parameters<Add>[2]) => {
    if (type === "abort") live.add(l);
    add(type, l, o);
  }) as Add;
  sig.removeEventListener = ((type: string, l: Parameters<Remove>[1], o?: Parameters<Remove>[2]) => {
    if (type === "abort") live.delete(l);
    remove(type, l, o);
  }) as Remove;
  return { ctrl, signal: sig, listeners: () => live.size };
}

function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

// ---------------------------------------------------------------- 1. Content-Length

test("1. a Content-Length body up to 64 KiB arrives whole as bytes (even in pieces), and the connection is reused", async () => {
  const big = pattern(BUFFER_LIMIT);
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.target === "/1") await writeParts(p.s, ["HTTP/1.1 200 OK\r\nContent-Le", "ngth: 11\r\nX-A: 1\r\n\r", "\nhello", " world"]);
      else await writeParts(p.s, [`HTTP/1.1 201 Created\r\nContent-Length: ${big.length}\r\n\r\n`, big.subarray(0, 1000), big.subarray(1000, 30_000), big.subarray(30_000)]);
    },
  });
  const pool = mkPool(srv);
  const r1 = await within(pool.request(get("/1")), 2000, "first response");
  expect(r1.status).toBe(200);
  expect(r1.statusText).toBe("OK");
  expect(r1.kind).toBe("bytes");
  expect(r1.stream).toBeUndefined();
  expect(r1.headers.get("x-a")).toBe("1");
  expect(r1.headers.get("content-length")).toBe("11");
  expect(Buffer.from(await within(r1.bytes(), 2000, "first body")).toString()).toBe("hello world");
  expect(pool.idleCount).toBe(1);

  const r2 = await within(pool.request(get("/2")), 2000, "second response");
  expect(r2.status).toBe(201);
  expect(r2.statusText).toBe("Created");
  expect(r2.kind).toBe("bytes");
  // pieces that arrived in separate reads must not have been overwritten by later ones
  expect(Buffer.compare(Buffer.from(await within(r2.bytes(), 2000, "second body")), big)).toBe(0);
  // bytes() may be asked again once the body is whole
  expect((await r2.bytes()).byteLength).toBe(BUFFER_LIMIT);
  expect(pool.opened).toBe(1);
  expect(srv.peers.length).toBe(1);
  expect(srv.peers[0]!.reqs.map((r) => r.raw.toString("latin1"))).toEqual([headOf("GET", "/1"), headOf("GET", "/2")]);
  expect(pool.idleCount).toBe(1);
});

test("1b. a Content-Length body over 64 KiB streams, exact, and the connection is reused", async () => {
  const big = pattern(300_000, 7);
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.target === "/big") await writeParts(p.s, [`HTTP/1.1 200 OK\r\nContent-Length: ${big.length}\r\n\r\n${big.subarray(0, 5).toString("latin1")}`, big.subarray(5, 100_000), big.subarray(100_000)]);
      else await writeParts(p.s, [ok("next")]);
    },
  });
  const pool = mkPool(srv);
  const r = await pool.request(get("/big"));
  expect(r.kind).toBe("stream");
  expect(r.headers.get("content-length")).toBe(String(big.length));
  expect(Buffer.compare(await within(readAll(r.stream!), 2000, "big body"), big)).toBe(0);
  expect(await bodyText(await pool.request(get("/n")))).toBe("next");
  expect(pool.opened).toBe(1);
  expect(srv.peers.length).toBe(1);
});

// ---------------------------------------------------------------- 2. chunked

const CHUNKED_HEAD = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\nX-A: 1\r\n\r\n";
const CHUNKED_BODY = '4;ext=1\r\nWiki\r\n6;a="b;c"; d\r\npedia \r\nE\r\n in\r\n\r\nchunks.\r\n0;last=yes\r\nX-T: v\r\nX-U: w\r\n\r\n';

test("2. a chunked body with extensions and trailers, split at awkward points, streams exact; the connection is reused", async () => {
  const parts = splitAfter(
    CHUNKED_HEAD + CHUNKED_BODY,
    "X-A: 1\r\n\r", // head: between the last CR and LF
    "4;ex", // inside a size line's extension
    "Wi", // inside data
    "ki\r", // between CR and LF after data
    '6;a="b', // inside a quoted extension
    "pedia \r\n", // exactly at a chunk boundary
    "E", // inside a size line, before its CR
    " in\r\n", // inside data that holds CRLF
    "chunks.\r\n0", // in the last chunk's size line
    ";last=yes\r", // between CR and LF of the last chunk
    "X-T: v\r\nX-", // inside the trailer section
    "U: w\r\n\r", // between CR and LF of the final empty line
  );
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.target === "/c") await writeParts(p.s, parts);
      else await writeParts(p.s, [ok("again")]);
    },
  });
  const pool = mkPool(srv);
  const r = await within(pool.request(get("/c")), 2000, "chunked head");
  expect(r.kind).toBe("stream");
  expect(r.headers.get("x-a")).toBe("1");
  expect(r.headers.has("transfer-encoding")).toBe(false);
  expect(r.headers.has("trailer")).toBe(false);
  expect(r.headers.has("content-length")).toBe(false);
  expect((await within(readAll(r.stream!), 3000, "chunked body")).toString("latin1")).toBe("Wikipedia  in\r\n\r\nchunks.");
  // the trailer fields are not mistaken for the next response's head
  const r2 = await within(pool.request(get("/2")), 2000, "second response");
  expect(await bodyText(r2)).toBe("again");
  expect(pool.opened).toBe(1);
  expect(srv.peers.length).toBe(1);
});

test("2b. chunked with a large uppercase-hex chunk, and Content-Length beside chunked: chunked wins, Content-Length is dropped", async () => {
  const data = pattern(0x1a0f0, 3);
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.target === "/c") {
        await writeParts(p.s, [
          "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1A0F0\r\n",
          data.subarray(0, 50_000),
          data.subarray(50_000),
          "\r\n0\r\n\r\n",
        ]);
      } else await writeParts(p.s, [ok("x")]);
    },
  });
  const pool = mkPool(srv);
  const r = await pool.request(get("/c"));
  expect(r.kind).toBe("stream");
  expect(r.headers.has("content-length")).toBe(false);
  expect(Buffer.compare(await within(readAll(r.stream!), 2000, "body"), data)).toBe(0);
});

// ---------------------------------------------------------------- 3. close-delimited

test("3. a close-delimited body (no length, not chunked) runs to the close; the connection is not reused", async () => {
  const srv = listen({
    onRequest: async (p) => {
      await writeParts(p.s, ["HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nfirst,", " second,", " third"]);
      await sleep(10);
      p.s.end();
    },
  });
  const pool = mkPool(srv);
  const r = await within(pool.request(get("/")), 2000, "head");
  expect(r.kind).toBe("stream");
  expect((await within(readAll(r.stream!), 2000, "body to the close")).toString()).toBe("first, second, third");
  expect(pool.idleCount).toBe(0);
  const r2 = await within(pool.request(get("/")), 2000, "second head");
  expect(await within(bodyText(r2), 2000, "second body")).toBe("first, second, third");
  expect(pool.opened).toBe(2);
  expect(srv.peers.length).toBe(2);
});

test("3b. a transfer coding other than chunked is close-delimited, and its Content-Length is dropped", async () => {
  const srv = listen({
    onRequest: async (p) => {
      await writeParts(p.s, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nabc", "def"]);
      p.s.end();
    },
  });
  const pool = mkPool(srv);
  const r = await pool.request(get("/"));
  expect(r.kind).toBe("stream");
  expect(r.headers.has("content-length")).toBe(false);
  expect(r.headers.has("transfer-encoding")).toBe(false);
  expect((await within(readAll(r.stream!), 2000, "body")).toString()).toBe("abcdef");
  expect(pool.idleCount).toBe(0);
});

// ---------------------------------------------------------------- 4. interim responses

for (const together of [false, true]) {
  test(`4. 100 Continue and 103 Early Hints before a 200 (${together ? "in one write" : "in separate writes"}) give the 200 with its body`, async () => {
    const interim = ["HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", ok("final", "X-F: 1\r\n")];
    const srv = listen({
      onRequest: async (p, r) => {
        if (r.target === "/i") await writeParts(p.s, together ? [interim.join("")] : interim);
        else await writeParts(p.s, [ok("next")]);
      },
    });
    const pool = mkPool(srv);
    const r = await within(pool.request(get("/i")), 1500, "the final response after 1xx");
    expect(r.status).toBe(200);
    expect(r.headers.get("x-f")).toBe("1");
    expect(r.headers.has("link")).toBe(false);
    expect(await within(bodyText(r), 1000, "body")).toBe("final");
    expect(await within(bodyText(await pool.request(get("/n"))), 1000, "next")).toBe("next");
    expect(pool.opened).toBe(1);
  });
}

// ---------------------------------------------------------------- 5. bodiless responses

test("5. HEAD with a Content-Length, 204, 304 and Content-Length 0 have no body (kind none), and the connection is reused", async () => {
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.method === "HEAD") await writeParts(p.s, ["HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"]);
      else if (r.target === "/204") await writeParts(p.s, ["HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"]);
      else if (r.target === "/304") await writeParts(p.s, ['HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: "e"\r\n\r\n']);
      else if (r.target === "/0") await writeParts(p.s, ["HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]);
      else await writeParts(p.s, [ok("body")]);
    },
  });
  const pool = mkPool(srv);
  const h = await within(pool.request(get("/h", undefined, "HEAD")), 1000, "HEAD");
  expect(h.kind).toBe("none");
  expect(h.stream).toBeUndefined();
  expect(h.headers.get("content-length")).toBe("1234");
  const g = await within(pool.request(get("/g")), 1000, "GET after HEAD");
  expect(await bodyText(g)).toBe("body");
  const n = await within(pool.request(get("/204")), 1000, "204");
  expect([n.status, n.kind]).toEqual([204, "none"]);
  const m = await within(pool.request(get("/304")), 1000, "304");
  expect([m.status, m.kind, m.headers.get("content-length")]).toEqual([304, "none", "99"]);
  const z = await within(pool.request(get("/0")), 1000, "Content-Length 0");
  expect([z.status, z.kind]).toEqual([200, "none"]);
  expect(await bodyText(await within(pool.request(get("/g")), 1000, "last GET"))).toBe("body");
  expect(pool.opened).toBe(1);
  expect(srv.peers.length).toBe(1);
  expect(srv.peers[0]!.reqs.length).toBe(6);
});

// ---------------------------------------------------------------- 6. Connection: close, HTTP/1.0

for (const [name, response, reused] of [
  ["Connection: close", ok("a", "Connection: X-Foo, Close\r\n"), false],
  ["HTTP/1.0 without keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na", false],
  ["HTTP/1.0 with Connection: keep-alive (control)", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 1\r\n\r\na", true],
] as const) {
  test(`6. ${name}: the connection is ${reused ? "" : "not "}reused`, async () => {
    const srv = listen({ onRequest: (p) => writeParts(p.s, [response]) });
    const pool = mkPool(srv);
    expect(await bodyText(await within(pool.request(get("/")), 1000, "first"))).toBe("a");
    expect(pool.idleCount).toBe(reused ? 1 : 0);
    if (!reused) await within(until(() => srv.closed() === 1, 500, "the server to see the close"), 1000, "close");
    expect(await bodyText(await within(pool.request(get("/")), 1000, "second"))).toBe("a");
    expect(pool.opened).toBe(reused ? 1 : 2);
    expect(srv.peers.length).toBe(reused ? 1 : 2);
  });
}

// ---------------------------------------------------------------- 7. hop-by-hop fields

test("7. hop-by-hop response fields (and fields named in Connection) are removed; others, with repeated Set-Cookie, are kept", async () => {
  const response =
    "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nProxy-Connection: keep-alive\r\n" +
    "Trailer: X-T\r\nUpgrade: h2c\r\nX-Secret: s\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2\r\nX-Other: ok\r\nCache-Control: no-store\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
  const srv = listen({ onRequest: (p) => writeParts(p.s, [response]) });
  const pool = mkPool(srv);
  const r = await within(pool.request(get("/")), 1000, "head");
  expect([...new Set(r.headers.keys())].sort()).toEqual(["cache-control", "set-cookie", "x-other"]);
  expect(r.headers.getSetCookie()).toEqual(["a=1; Path=/", "b=2"]);
  expect(r.headers.get("x-other")).toBe("ok");
  expect(await within(bodyText(r), 1000, "body")).toBe("hi");
  expect(pool.idleCount).toBe(1);
});

// ---------------------------------------------------------------- 8. the upstream closes a kept-alive connection

test("8a. a connection the upstream closes 20 ms after answering (without saying so) is not used again", async () => {
  const srv = listen({
    onRequest: async (p) => {
      await writeParts(p.s, [ok("a")]);
      await sleep(20);
      p.s.end();
    },
  });
  const pool = mkPool(srv);
  expect(await bodyText(await pool.request(get("/")))).toBe("a");
  await sleep(100);
  expect(pool.idleCount).toBe(0);
  expect(await bodyText(await within(pool.request(get("/")), 1000, "second GET"))).toBe("a");
  expect(pool.opened).toBe(2);
  expect(srv.peers[0]!.reqs.length).toBe(1);
});

for (const how of ["end", "terminate"] as const) {
  test(`8b. the upstream closes (${how}) as a second request arrives on a kept-alive connection: a GET is retried on a new one, a POST fails`, async () => {
    // every connection answers its first request and closes, without answering, when a second one arrives
    const srv = listen({
      onRequest: async (p) => {
        if (p.reqs.length === 2) {
          if (how === "end") p.s.end();
          else p.s.terminate();
          return;
        }
        await writeParts(p.s, [ok(`from ${p.id}`)]);
      },
    });
    const pool = mkPool(srv);
    const sig = countedSignal();
    expect(await bodyText(await pool.request(get("/", sig.signal)))).toBe("from 0");
    expect(pool.idleCount).toBe(1);
    const r = await within(pool.request(get("/", sig.signal)), 2000, "retried GET");
    expect(await bodyText(r)).toBe("from 1");
    expect(pool.opened).toBe(2);
    expect(srv.peers.length).toBe(2);
    expect(srv.peers[0]!.reqs.length).toBe(2);
    expect(sig.listeners()).toBe(0);
    expect(pool.idleCount).toBe(1);

    // a POST on connection 1, which closes as it arrives: not repeated
    const body = new TextEncoder().encode("payload");
    const post: H1Request = { method: "POST", head: headOf("POST", "/p", `content-length: ${body.length}\r\n`), body, chunked: false, signal: sig.signal };
    const e = await rejection(pool.request(post), 2000, "POST on a closing connection");
    expect(e.code).toBe("ECONNRESET");
    await sleep(100);
    expect(srv.peers.length).toBe(2);
    expect(srv.peers[1]!.reqs.length).toBe(2);
    expect(srv.peers[1]!.reqs[1]!.method).toBe("POST");
    expect(sig.listeners()).toBe(0);
  });
}

// ---------------------------------------------------------------- 9. malformed responses

const bigField = `X-Big: ${"a".repeat(70_000)}\r\n`;
for (const [name, parts] of [
  ["a bad status code", ["HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n"]],
  ["not HTTP at all", ["ICY 200 OK\r\n\r\n"]],
  ["a status line without the space", ["HTTP/1.1200 OK\r\n\r\n"]],
  ["two different Content-Length values", ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"]],
  ["a Content-Length that is not digits", ["HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"]],
  ["whitespace before the colon", ["HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello"]],
  ["a tab before the colon of another field", ["HTTP/1.1 200 OK\r\nX-A\t: 1\r\nContent-Length: 0\r\n\r\n"]],
  ["an obs-fold line", ["HTTP/1.1 200 OK\r\nX-A: a\r\n  folded\r\nContent-Length: 0\r\n\r\n"]],
  ["an obs-fold line holding a colon", ["HTTP/1.1 200 OK\r\nX-A: a\r\n\tb: c\r\nContent-Length: 0\r\n\r\n"]],
  ["a line without a colon", ["HTTP/1.1 200 OK\r\ngarbage\r\nContent-Length: 0\r\n\r\n"]],
  ["101 Switching Protocols", ["HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"]],
  ["a head over 64 KiB arriving in pieces", ["HTTP/1.1 200 OK\r\n", ...Array.from({ length: 5 }, () => `X-Big: ${"a".repeat(16_384)}\r\n`)]],
  ["a head over 64 KiB arriving with its end", [`HTTP/1.1 200 OK\r\n${bigField}Content-Length: 0\r\n\r\n`]],
  ["a field name with a space inside", ["HTTP/1.1 200 OK\r\nX Y: z\r\nContent-Length: 0\r\n\r\n"]],
  ["a field value with a NUL", ["HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n"]],
] as const) {
  test(`9. malformed response: ${name} → EPROTO, connection closed`, async () => {
    const srv = listen({ onRequest: (p) => writeParts(p.s, parts, 5) });
    const pool = mkPool(srv);
    const e = await rejection(pool.request(get("/")), 1500, name);
    expect({ code: e.code, serverSawClose: await closedWithin(srv, 1, 500) }).toEqual({ code: "EPROTO", serverSawClose: true });
    expect(pool.idleCount).toBe(0);
  });
}

test("9b. a bad chunk size errors the body stream with EPROTO and closes the connection", async () => {
  const srv = listen({ onRequest: (p) => writeParts(p.s, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "zz\r\nabc\r\n0\r\n\r\n"]) });
  const pool = mkPool(srv);
  const r = await pool.request(get("/"));
  const e = await rejection(readAll(r.stream!), 1000, "body");
  expect(e.code).toBe("EPROTO");
  expect(pool.idleCount).toBe(0);
  await within(until(() => srv.closed() === 1, 500, "close"), 1000, "close");
});

// ---------------------------------------------------------------- 10. refused

test("10. a refused connection rejects with ECONNREFUSED", async () => {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  const pool = new H1Pool("127.0.0.1", port);
  pools.push(pool);
  const e = await rejection(pool.request(get("/")), 2000, "refused");
  expect(e.code).toBe("ECONNREFUSED");
  expect(pool.idleCount).toBe(0);
});

// ---------------------------------------------------------------- 11. abort

test("11a. an abort before the head arrives rejects promptly with the signal's reason; the connection is closed", async () => {
  const srv = listen({ onRequest: () => {} });
  const pool = mkPool(srv);
  const sig = countedSignal();
  const p = pool.request(get("/", sig.signal));
  await until(() => srv.peers[0]?.reqs.length === 1, 1000, "the request to arrive");
  const reason = new Error("stop now");
  const t0 = performance.now();
  sig.ctrl.abort(reason);
  const e = await rejection(p, 200, "aborted request");
  expect(e).toBe(reason);
  expect(performance.now() - t0).toBeLessThan(100);
  expect(sig.listeners()).toBe(0);
  expect(pool.idleCount).toBe(0);
  await within(until(() => srv.closed() === 1, 500, "close"), 1000, "close");
});

test("11b. a string reason becomes an Error with that message; a signal aborted already opens no connection", async () => {
  const srv = listen({ onRequest: () => {} });
  const pool = mkPool(srv);
  const ctrl = new AbortController();
  const p = pool.request(get("/", ctrl.signal));
  await until(() => srv.peers[0]?.reqs.length === 1, 1000, "the request to arrive");
  ctrl.abort("response header timeout");
  const e = await rejection(p, 200, "aborted request");
  expect(e).toBeInstanceOf(Error);
  expect(e.message).toBe("response header timeout");
  const e2 = await rejection(pool.request(get("/", ctrl.signal)), 200, "already aborted");
  expect(e2.message).toBe("response header timeout");
  expect(pool.opened).toBe(1);
});

test("11c. an abort during a streamed body errors the stream; the connection is closed and not reused", async () => {
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.target === "/s") await writeParts(p.s, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"]);
      else await writeParts(p.s, [ok("fresh")]);
    },
  });
  const pool = mkPool(srv);
  const sig = countedSignal();
  const r = await pool.request(get("/s", sig.signal));
  const reader = r.stream!.getReader();
  expect(Buffer.from((await within(reader.read(), 1000, "first chunk")).value!).toString()).toBe("first");
  const pending = reader.read();
  const reason = new Error("client left");
  sig.ctrl.abort(reason);
  expect(await rejection(pending, 500, "read after abort")).toBe(reason);
  expect(sig.listeners()).toBe(0);
  await within(until(() => srv.closed() === 1, 500, "close"), 1000, "close");
  expect(await bodyText(await pool.request(get("/n")))).toBe("fresh");
  expect(pool.opened).toBe(2);
});

test("11d. an abort during a bytes body rejects bytes(); the connection is closed", async () => {
  const srv = listen({ onRequest: (p) => writeParts(p.s, ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]) });
  const pool = mkPool(srv);
  const ctrl = new AbortController();
  const r = await pool.request(get("/", ctrl.signal));
  expect(r.kind).toBe("bytes");
  const b = r.bytes();
  const reason = new Error("idle");
  ctrl.abort(reason);
  expect(await rejection(b, 500, "bytes after abort")).toBe(reason);
  await within(until(() => srv.closed() === 1, 500, "close"), 1000, "close");
  expect(pool.idleCount).toBe(0);
});

test("11e. cancelling the body stream closes the connection", async () => {
  const srv = listen({ onRequest: (p) => writeParts(p.s, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"]) });
  const pool = mkPool(srv);
  const sig = countedSignal();
  const r = await pool.request(get("/", sig.signal));
  await r.stream!.cancel("not wanted");
  await within(until(() => srv.closed() === 1, 500, "close"), 1000, "close");
  expect(pool.idleCount).toBe(0);
  expect(sig.listeners()).toBe(0);
});

test("11f. an abort while the connection is still being made rejects promptly (a black-holed upstream must not outlast the deadline)", async () => {
  const srv = listen({ onRequest: (p) => writeParts(p.s, [ok("late")]) });
  const pool = mkPool(srv);
  // a connect that takes 400 ms, as to an upstream that drops SYNs
  const real = Bun.connect;
  const slow = (async (o: Parameters<typeof Bun.connect>[0]) => {
    await sleep(400);
    return real(o);
  }) as typeof Bun.connect;
  (Bun as { connect: typeof Bun.connect }).connect = slow;
  try {
    const ctrl = new AbortController();
    const p = pool.request(get("/", ctrl.signal));
    await sleep(50);
    const reason = new Error("response header timeout");
    ctrl.abort(reason);
    const t0 = performance.now();
    const out = await within(p.then(() => "resolved", (e: unknown) => (e === reason ? "rejected with the reason" : `rejected with ${String(e)}`)), 1000, "aborted connect");
    expect({ out, prompt: performance.now() - t0 < 100 }).toEqual({ out: "rejected with the reason", prompt: true });
    // the connection made after all is not kept
    await sleep(450);
    expect(pool.idleCount).toBe(0);
    expect(srv.peers.every((p) => p.closed)).toBe(true);
  } finally {
    (Bun as { connect: typeof Bun.connect }).connect = real;
  }
});

// ---------------------------------------------------------------- 12. backpressure

test("12. a streamed body that nobody reads pauses the socket (the upstream can write only a bounded amount); then all of it arrives", async () => {
  const TOTAL = 64 * 1024 * 1024;
  const CHUNK = Buffer.alloc(256 * 1024, 0x61);
  let written = 0;
  const pump = (p: Peer) => {
    while (written < TOTAL) {
      const n = p.s.write(CHUNK.subarray(0, Math.min(CHUNK.length, TOTAL - written)));
      if (n > 0) written += n;
      if (n < CHUNK.length) return; // wait for drain
    }
    p.s.end();
  };
  const srv = listen({
    onRequest: (p) => {
      p.s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${TOTAL}\r\n\r\n`);
      pump(p);
    },
    onDrain: pump,
  });
  const pool = mkPool(srv);
  const r = await pool.request(get("/"));
  expect(r.kind).toBe("stream");
  await sleep(300);
  const early = written;
  // Loopback socket buffers (client receive plus server send, autotuned) hold a few MiB; the client queues 64 KiB plus what one
  // read brings. Without the pause the server would have written all 64 MiB by now.
  expect(early).toBeLessThan(16 * 1024 * 1024);
  await sleep(100);
  expect(written - early).toBeLessThan(1024 * 1024); // and it stays put
  let total = 0;
  const t0 = performance.now();
  for await (const c of r.stream!) total += c.byteLength;
  expect(total).toBe(TOTAL);
  console.log(`backpressure: the upstream wrote ${(early / 1048576).toFixed(1)} MiB while the body was unread; reading 64 MiB took ${(performance.now() - t0).toFixed(0)} ms`);
}, 10_000);

// ---------------------------------------------------------------- 13. request bodies

test("13a. a Uint8Array body goes after the head with its Content-Length, exact (small and 1 MiB); the connection is reused", async () => {
  const srv = listen({ onRequest: (p, r) => writeParts(p.s, [ok(`got ${r.body.length}`)]) });
  const pool = mkPool(srv);
  const small = new Uint8Array(256).map((_, i) => i);
  const large = pattern(1024 * 1024, 9);
  for (const body of [small, large]) {
    const head = headOf("PUT", "/u", `content-length: ${body.length}\r\n`);
    const r = await within(pool.request({ method: "PUT", head, body, chunked: false, signal: new AbortController().signal }), 3000, "PUT");
    expect(await bodyText(r)).toBe(`got ${body.length}`);
  }
  const reqs = srv.peers[0]!.reqs;
  expect(reqs.length).toBe(2);
  expect(reqs[0]!.head).toBe(headOf("PUT", "/u", "content-length: 256\r\n"));
  expect(Buffer.compare(reqs[0]!.body, Buffer.from(small))).toBe(0);
  expect(Buffer.compare(reqs[1]!.body, large)).toBe(0);
  expect(pool.opened).toBe(1);
});

function streamOf(chunks: (string | Uint8Array)[], gap = 5): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      if (i > 0) await sleep(gap);
      if (i >= chunks.length) return c.close();
      const x = chunks[i++]!;
      c.enqueue(typeof x === "string" ? Buffer.from(x, "latin1") : x);
    },
  });
}

test("13b. a ReadableStream body with chunked=true is sent in chunked coding, empty pieces skipped, ending in the 0-chunk", async () => {
  const srv = listen({ onRequest: (p, r) => writeParts(p.s, [ok(`got ${r.body.length}`)]) });
  const pool = mkPool(srv);
  const bin = pattern(70_000, 5);
  const body = streamOf(["abc", new Uint8Array(0), "defgh", bin]);
  const r = await within(pool.request({ method: "POST", head: headOf("POST", "/c", "transfer-encoding: chunked\r\n"), body, chunked: true, signal: new AbortController().signal }), 3000, "POST");
  expect(await bodyText(r)).toBe(`got ${8 + bin.length}`);
  const req = srv.peers[0]!.reqs[0]!;
  expect(srv.peers[0]!.problem).toBeUndefined();
  const expected = Buffer.concat([Buffer.from("3\r\nabc\r\n5\r\ndefgh\r\n" + `${bin.length.toString(16)}\r\n`), bin, Buffer.from("\r\n0\r\n\r\n")]);
  expect(Buffer.compare(req.raw.subarray(req.head.length), expected)).toBe(0);
  // a chunked body that was sent whole leaves the connection usable
  expect(await bodyText(await pool.request(get("/")))).toBe("got 0");
  expect(pool.opened).toBe(1);
});

test("13c. a ReadableStream body with a Content-Length is sent as it is", async () => {
  const srv = listen({ onRequest: (p, r) => writeParts(p.s, [ok(`got ${r.body.toString()}`)]) });
  const pool = mkPool(srv);
  const body = streamOf(["hello ", "world"]);
  const r = await pool.request({ method: "POST", head: headOf("POST", "/l", "content-length: 11\r\n"), body, chunked: false, signal: new AbortController().signal });
  expect(await within(bodyText(r), 2000, "body")).toBe("got hello world");
  expect(srv.peers[0]!.reqs[0]!.raw.toString()).toBe(headOf("POST", "/l", "content-length: 11\r\n") + "hello world");
});

test("13d. a request body stream that fails rejects the request with its error and closes the connection", async () => {
  const srv = listen({ onRequest: (p) => writeParts(p.s, [ok("never")]) });
  const pool = mkPool(srv);
  const boom = new Error("client body too large");
  let n = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      await sleep(5);
      if (n++ === 0) c.enqueue(Buffer.from("abc"));
      else c.error(boom);
    },
  });
  const e = await rejection(pool.request({ method: "POST", head: headOf("POST", "/", "transfer-encoding: chunked\r\n"), body, chunked: true, signal: new AbortController().signal }), 1000, "failed body");
  expect(e).toBe(boom);
  await within(until(() => srv.closed() === 1, 500, "close"), 1000, "close");
});

// ---------------------------------------------------------------- 14. early answer

test("14. an upstream that answers (413) while a streamed request body is still being sent: the answer is delivered, the connection not reused", async () => {
  const srv = listen({
    onData: (p, d) => {
      p.buf = Buffer.concat([p.buf, d]);
      if (p.reqs.length === 0 && p.buf.includes("\r\n\r\n")) {
        p.reqs.push({ head: "", method: "POST", target: "/", headers: new Map(), raw: p.buf, body: Buffer.alloc(0) });
        p.s.write("HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo big!");
      }
    },
  });
  const pool = mkPool(srv);
  let cancelled = false;
  let pulls = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      await sleep(20);
      if (pulls++ > 100) return c.close();
      c.enqueue(Buffer.alloc(1000, 0x62));
    },
    cancel() {
      cancelled = true;
    },
  });
  const r = await within(pool.request({ method: "POST", head: headOf("POST", "/", "transfer-encoding: chunked\r\n"), body, chunked: true, signal: new AbortController().signal }), 1000, "early answer");
  expect(r.status).toBe(413);
  expect(await within(bodyText(r), 1000, "413 body")).toBe("too big!");
  expect(pool.idleCount).toBe(0);
  await within(until(() => srv.closed() === 1, 500, "close"), 1000, "close");
  // the rest of the client's body is not read on: the source is cancelled
  await within(until(() => cancelled, 500, "the body source to be cancelled"), 1000, "cancel");
  expect(pulls).toBeLessThan(20);
  expect(await bodyText(await within(pool.request(get("/")), 1000, "next request"))).toBe("too big!");
  expect(pool.opened).toBe(2);
});

test("14b. after an early answer, a request body source that has stalled is cancelled too (not left locked and unread)", async () => {
  const srv = listen({
    onData: (p, d) => {
      p.buf = Buffer.concat([p.buf, d]);
      if (p.reqs.length === 0 && p.buf.includes("\r\n\r\n")) {
        p.reqs.push({ head: "", method: "POST", target: "/", headers: new Map(), raw: p.buf, body: Buffer.alloc(0) });
        p.s.write("HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n");
      }
    },
  });
  const pool = mkPool(srv);
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(Buffer.from("first"));
    },
    pull() {
      return new Promise<void>(() => {}); // the client sends nothing more
    },
    cancel() {
      cancelled = true;
    },
  });
  const r = await within(pool.request({ method: "POST", head: headOf("POST", "/", "transfer-encoding: chunked\r\n"), body, chunked: true, signal: new AbortController().signal }), 1000, "early answer");
  expect(r.status).toBe(413);
  await within(until(() => srv.closed() === 1, 500, "close"), 1000, "close");
  await within(until(() => cancelled, 300, "the stalled body source to be cancelled"), 1000, "cancel");
});

test("14c. after an early answer, a request body pump waiting for the socket to drain stops and cancels its source", async () => {
  // The upstream reads nothing, so the client's send buffer fills and the pump waits for a drain; then it answers.
  const srv = listen({
    onData: () => {},
  });
  const pool = mkPool(srv);
  let cancelled = false;
  let pulled = 0;
  const piece = Buffer.alloc(64 * 1024, 0x63);
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (pulled >= 256 * piece.length) return c.close(); // 16 MiB at most, far more than the socket buffers hold
      pulled += piece.length;
      c.enqueue(piece);
    },
    cancel() {
      cancelled = true;
    },
  });
  const p = pool.request({ method: "POST", head: headOf("POST", "/", "transfer-encoding: chunked\r\n"), body, chunked: true, signal: new AbortController().signal });
  await until(() => srv.peers.length === 1, 1000, "the connection");
  srv.peers[0]!.s.pause();
  await sleep(150);
  const stalledAt = pulled;
  expect(stalledAt).toBeLessThan(256 * piece.length); // the pump is waiting on the socket, not done
  srv.peers[0]!.s.write("HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n");
  srv.peers[0]!.s.resume();
  const r = await within(p, 1000, "early answer");
  expect(r.status).toBe(413);
  await within(until(() => srv.closed() === 1, 500, "close"), 1000, "close");
  await within(until(() => cancelled, 300, "the body source to be cancelled"), 1000, "cancel");
});

// ---------------------------------------------------------------- 15, 16. the idle pool

test("15. maxIdle caps idle connections; connections idle past idleMs are closed", async () => {
  let held: (() => void)[] = [];
  const srv = listen({
    onRequest: (p) => {
      held.push(() => void writeParts(p.s, [ok("x")]));
      if (held.length === 3) for (const f of held.splice(0)) f();
    },
  });
  const pool = mkPool(srv, { maxIdle: 2, idleMs: 300 });
  const rs = await within(Promise.all([0, 1, 2].map(() => pool.request(get("/")))), 2000, "three concurrent requests");
  for (const r of rs) expect(await bodyText(r)).toBe("x");
  expect(pool.opened).toBe(3);
  expect(pool.idleCount).toBe(2);
  await within(until(() => srv.closed() === 1, 500, "the third connection to close"), 1000, "close");
  held = [];
  await sleep(250);
  expect(pool.idleCount).toBe(2); // not yet past idleMs
  await within(until(() => pool.idleCount === 0, 800, "the idle connections to be swept"), 1000, "sweep");
  await within(until(() => srv.closed() === 3, 500, "the server to see them close"), 1000, "close");
});

test("16. pool.close() drops idle connections; later connections are not kept", async () => {
  const srv = listen({ onRequest: (p) => writeParts(p.s, [ok("x")]) });
  const pool = mkPool(srv);
  expect(await bodyText(await pool.request(get("/")))).toBe("x");
  expect(pool.idleCount).toBe(1);
  pool.close();
  expect(pool.idleCount).toBe(0);
  await within(until(() => srv.closed() === 1, 500, "close"), 1000, "close");
  expect(await bodyText(await pool.request(get("/")))).toBe("x");
  expect(pool.idleCount).toBe(0);
  await within(until(() => srv.closed() === 2, 500, "close"), 1000, "close");
});

// ---------------------------------------------------------------- review: other edges

test("R1. a body cut short by the upstream's close fails: bytes() and the stream reject with ECONNRESET", async () => {
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.target === "/b") await writeParts(p.s, ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]);
      else await writeParts(p.s, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"]);
      await sleep(10);
      p.s.end();
    },
  });
  const pool = mkPool(srv);
  const b = await pool.request(get("/b"));
  expect((await rejection(b.bytes(), 1000, "cut bytes")).code).toBe("ECONNRESET");
  const s = await pool.request(get("/s"));
  expect((await rejection(readAll(s.stream!), 1000, "cut stream")).code).toBe("ECONNRESET");
  expect(pool.idleCount).toBe(0);
});

test("R2. bytes after a Content-Length body, or unasked-for bytes on an idle connection, take the connection out of use", async () => {
  const srv = listen({
    onRequest: async (p, r) => {
      if (r.target === "/extra") await writeParts(p.s, [ok("ab") + "HTTP/1.1 200 OK\r\n"]);
      else {
        await writeParts(p.s, [ok("cd")]);
        await sleep(20);
        p.s.write("junk");
      }
    },
  });
  const pool = mkPool(srv);
  expect(await bodyText(await pool.request(get("/extra")))).toBe("ab");
  expect(pool.idleCount).toBe(0);
  expect(await bodyText(await pool.request(get("/junk")))).toBe("cd");
  expect(pool.idleCount).toBe(1);
  await sleep(60);
  expect(pool.idleCount).toBe(0);
  await within(until(() => srv.closed() === 2, 500, "close"), 1000, "close");
});

test("R3. no abort listener is left on the signal after bytes, stream, none, EPROTO and refused outcomes", async () => {
  const srv = listen({
    onRequest: (p, r) =>
      writeParts(p.s, [r.target === "/bad" ? "HTTP/1.1 XYZ\r\n\r\n" : r.target === "/s" ? "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n" : r.target === "/n" ? "HTTP/1.1 204 No Content\r\n\r\n" : ok("b")]),
  });
  const pool = mkPool(srv);
  const sig = countedSignal();
  expect(await bodyText(await pool.request(get("/b", sig.signal)))).toBe("b");
  expect(await bodyText(await pool.request(get("/s", sig.signal)))).toBe("a");
  expect(await bodyText(await pool.request(get("/n", sig.signal)))).toBe("");
  await rejection(pool.request(get("/bad", sig.signal)), 1000, "bad");
  expect(sig.listeners()).toBe(0);
});

test("R4. a close-delimited body ended by a connection reset (not a clean close) fails instead of looking complete", async () => {
  const srv = listen({
    onRequest: async (p) => {
      await writeParts(p.s, ["HTTP/1.1 200 OK\r\n\r\npartial"]);
      await sleep(20);
      p.s.terminate();
    },
  });
  const pool = mkPool(srv);
  const r = await pool.request(get("/"));
  expect(r.kind).toBe("stream");
  const out = await within(readAll(r.stream!).then((b) => `complete: ${b.toString()}`, (e: Error & { code?: string }) => `failed: ${e.code}`), 1000, "body");
  expect(out).toBe("failed: ECONNRESET");
});

test("R5. Transfer-Encoding chunked then gzip (chunked not the final coding) is close-delimited, not dechunked (RFC 9112 §6.3 item 4)", async () => {
  const srv = listen({
    onRequest: async (p) => {
      await writeParts(p.s, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\nraw gzip bytes"]);
      await sleep(10);
      p.s.end();
    },
  });
  const pool = mkPool(srv);
  const r = await pool.request(get("/"));
  const out = await within(readAll(r.stream!).then((b) => b.toString(), (e: Error & { code?: string }) => `failed: ${e.code}`), 1000, "body");
  expect(out).toBe("raw gzip bytes");
});

test("R6. an HTTP/1.0 response with Transfer-Encoding is not reused even with keep-alive (RFC 9112 §6.1)", async () => {
  const srv = listen({ onRequest: (p) => writeParts(p.s, ["HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"]) });
  const pool = mkPool(srv);
  const r = await pool.request(get("/"));
  await within(bodyText(r), 1000, "body");
  expect(pool.idleCount).toBe(0);
});
