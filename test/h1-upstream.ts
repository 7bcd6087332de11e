/** Scripted upstreams for the HTTP/1.1 client's tests: raw TCP servers on 127.0.0.1 (Bun.listen) that parse requests and write exact bytes, often split across writes at awkward points, and small helpers around them. */
import type { Socket, TCPSocketListener } from "bun";
import { H1Pool, type H1Request, type H1Response, type PoolOptions } from "../src/upstream/h1-client.ts";

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** within fails with a clear message when p does not settle in time (a client bug may leave a promise pending forever). */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: Timer | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

/** closedWithin is whether the server saw n connections closed within ms. */
export async function closedWithin(srv: Srv, n: number, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (srv.closed() < n) {
    if (performance.now() > end) return false;
    await sleep(5);
  }
  return true;
}

export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** settle returns a promise's error (or throws if it resolved): for asserting on rejections without unhandled ones. */
export async function rejection(p: Promise<unknown>, ms: number, what: string): Promise<Error & { code?: string }> {
  const r = await within(
    p.then(
      (v) => ({ ok: true as const, v }),
      (e: unknown) => ({ ok: false as const, e }),
    ),
    ms,
    what,
  );
  if (r.ok) throw new Error(`${what}: expected a rejection, got ${JSON.stringify(r.v, (_k, v) => (v instanceof Headers ? [...v] : v))?.slice(0, 200)}`);
  return r.e as Error & { code?: string };
}

export type Req = { head: string; method: string; target: string; headers: Map<string, string>; raw: Buffer; body: Buffer };
export type Peer = { id: number; s: Socket<Peer>; buf: Buffer; reqs: Req[]; closed: boolean; received: number; problem?: string };
export type Srv = { port: number; peers: Peer[]; closed(): number };
export type Opts = {
  onRequest?: (p: Peer, r: Req) => void | Promise<void>;
  onData?: (p: Peer, d: Buffer) => void;
  onDrain?: (p: Peer) => void;
};

/** parseRequest reads one request (head and Content-Length or chunked body, strictly checked) from the front of buf. */
export function parseRequest(buf: Buffer): { req: Req; used: number } | undefined {
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

/** closeAfter has pool closed by cleanup. */
export function closeAfter(pool: H1Pool): H1Pool {
  pools.push(pool);
  return pool;
}

/** cleanup closes the pools and upstreams a test made (each test file runs it after every test). */
export function cleanup(): void {
  for (const p of pools.splice(0)) p.close();
  for (const s of servers.splice(0)) s.stop(true);
}

/** listen starts a scripted upstream: by default it parses requests and calls onRequest for each, in order. */
export function listen(o: Opts): Srv {
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

export function mkPool(srv: Srv, opts?: PoolOptions): H1Pool {
  const p = new H1Pool("127.0.0.1", srv.port, opts);
  pools.push(p);
  return p;
}

export const headOf = (method: string, path: string, extra = "") => `${method} ${path} HTTP/1.1\r\nhost: upstream.test\r\n${extra}\r\n`;

export function get(path = "/", signal: AbortSignal = new AbortController().signal, method = "GET"): H1Request {
  return { method, head: headOf(method, path), body: null, chunked: false, signal };
}

/** writeParts writes each part in its own write, a pause between them, so that the client reads them separately. */
export async function writeParts(s: Socket<Peer>, parts: readonly (string | Uint8Array)[], gap = 10): Promise<void> {
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
export function splitAfter(text: string, ...cuts: string[]): string[] {
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

export const ok = (body: string, extra = "") => `HTTP/1.1 200 OK\r\ncontent-length: ${Buffer.byteLength(body, "latin1")}\r\n${extra}\r\n${body}`;

export async function readAll(s: ReadableStream<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of s) parts.push(c);
  return Buffer.concat(parts);
}

export async function bodyText(res: H1Response): Promise<string> {
  if (res.kind === "none") return "";
  const b = res.kind === "bytes" ? await res.bytes() : await readAll(res.stream!);
  return Buffer.from(b).toString("latin1");
}

/** countedSignal tracks the abort listeners on a real signal, to catch ones left behind. */
export function countedSignal(ctrl = new AbortController()): { ctrl: AbortController; signal: AbortSignal; listeners: () => number } {
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

export function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}
