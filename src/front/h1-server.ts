/** The front end's HTTP/1.1 server on raw sockets (Bun.listen): strict heads, bodies on every method, keep-alive and pipelining answered in order, 100-continue, head timeouts. */
import type { Socket, TCPSocketListener } from "bun";
import { unwatch, type Watched, watch } from "../lib/idle-watch.ts";
import { WriteQueue } from "../lib/write-queue.ts";
import { BodyIn } from "./body-in.ts";
import { frameResponse } from "./h1-response.ts";
import { type ResponseSink, sendResponse } from "./h1-send.ts";
import type { ConnectionLimits } from "./connection-limits.ts";
import { isPreamble, isProxyError, looksLikePreamble, MAX_PREAMBLE, parseProxyHeader } from "./proxy-protocol.ts";
import { DEFAULT_LIMITS, type HeadError, isHeadError, parseRequestHead, type RequestHead, type RequestLimits } from "./h1-request.ts";

/** FrontRequest is one request as the server hands it over: its head, its body as it arrives (null without one), the client and a signal for its departure. */
export type FrontRequest = {
  readonly head: RequestHead;
  readonly body: ReadableStream<Uint8Array> | null;
  readonly client: string;
  /** signal aborts when the connection closes before the response has gone out. */
  readonly signal: AbortSignal;
};

/** FrontHandler answers a request; it should not throw (a throw or a rejection is answered with 500 and the connection closed). */
export type FrontHandler = (req: FrontRequest) => Response | Promise<Response>;

/** FrontOptions: where to listen, the head limits, how long a head may take to arrive, and the handler. */
export type FrontOptions = {
  readonly hostname: string;
  readonly port: number;
  readonly limits?: RequestLimits;
  /** headerTimeoutMs bounds the wait for a whole request head, from the connection's start or the previous response's end; then 408 (or a silent close when nothing came). */
  readonly headerTimeoutMs?: number;
  readonly handler: FrontHandler;
  /** refused is told of every request refused before the handler (status, reason), for logs and metrics. */
  readonly refused?: (status: number, reason: string, client: string) => void;
  /** caps counts this listener's connections against [limits] max_connections and max_connections_per_client (one instance may serve several listeners). */
  readonly caps?: ConnectionLimits;
  /** proxyProtocol says whether a source address may open with a PROXY protocol preamble ([listen] proxy_protocol); its client address then stands for the peer's. */
  readonly proxyProtocol?: (address: string) => boolean;
};

/** BUFFERED_LIMIT: bytes of further requests kept while one is answered (pipelining); past it the connection stops reading until its turn. */
const BUFFERED_LIMIT = 64 * 1024;
const CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n";
const EMPTY = new Uint8Array(0);

/** Conn is one client connection and where its current request stands. */
class Conn implements ResponseSink {
  buf: Uint8Array = EMPTY;
  /** owned: buf lies in a buffer of this connection's own (append may write after it), not in one the socket handed over. */
  private owned = false;
  busy = false;
  body: BodyIn | undefined;
  closed = false;
  readPaused = false;
  /** headWait is this connection in the shared idle sweep while it waits for a head (no timer per request). */
  private readonly headWait: Watched;
  /** abort is made on first use of the current request's signal: most requests never ask. */
  abort: AbortController | undefined;
  readonly out = new WriteQueue();
  /** client is the peer's address, or the one a trusted PROXY protocol preamble named. */
  client: string;
  /** counted is the address this connection is counted under in the caps (undefined: not counted). */
  counted: string | undefined;
  /** fresh: no byte has arrived yet; a PROXY protocol preamble may only come first. */
  private fresh = true;
  /** preamble: the peer may send a PROXY protocol preamble, and it has not been read yet. */
  preamble = false;

  constructor(
    readonly socket: Socket<Conn>,
    readonly server: FrontServer,
  ) {
    this.headWait = { last: 0, limit: server.headerTimeoutMs, expire: () => this.headLate() };
    this.client = socket.remoteAddress;
    this.preamble = server.proxyProtocol?.(this.client) === true;
  }

  /** signal is the current request's: it aborts when the connection closes before the response has gone out. */
  signal(): AbortSignal {
    if (this.closed && this.abort === undefined) return AbortSignal.abort("client closed the connection");
    this.abort ??= new AbortController();
    return this.abort.signal;
  }

  write(data: Uint8Array | string): void {
    if (!this.closed) this.out.write(this.socket, data);
  }

  flushed(): Promise<void> | undefined {
    return this.out.flushed();
  }

  pauseReading(): void {
    if (!this.readPaused && !this.closed) {
      this.readPaused = true;
      this.socket.pause();
    }
  }

  resumeReading(): void {
    if (this.readPaused && !this.closed) {
      this.readPaused = false;
      this.socket.resume();
    }
  }

  /** waitForHead starts the wait for a head: one that does not arrive whole in time gets 408, an idle keep-alive connection is closed. */
  waitForHead(): void {
    this.headWait.last = performance.now();
    watch(this.headWait);
  }

  private headLate(): void {
    if (this.busy || this.closed) return;
    if (this.buf.byteLength > 0) this.refuse({ status: 408, reason: "the request head did not arrive in time" });
    else this.close();
  }

  onData(data: Uint8Array): void {
    if (this.fresh || this.preamble) {
      data = this.beforeHttp(data);
      if (data.byteLength === 0) return;
    }
    if (this.body !== undefined && !this.body.ended) {
      const used = this.body.feed(data);
      if (typeof used !== "number") {
        this.refuseAfter(used.reason);
        return;
      }
      if (used === data.byteLength) return;
      data = data.subarray(used);
    }
    this.append(data);
    if (this.busy) {
      if (this.buf.byteLength > BUFFERED_LIMIT) this.pauseReading();
      return;
    }
    // A head can only have ended, or a request line run too long, where a line feed arrived or the buffer grew past a line: a head sent a byte at a
    // time is not parsed again for every byte.
    if (data.indexOf(10) >= 0 || this.buf.byteLength > this.server.limits.maxLineBytes) this.next();
  }

  /** append adds data to the unparsed bytes, growing one buffer of its own by doubling rather than copying everything for every piece. */
  private append(data: Uint8Array): void {
    const len = this.buf.byteLength;
    if (len === 0) {
      this.buf = data;
      this.owned = false;
      return;
    }
    const need = len + data.byteLength;
    // Only the room after the unparsed bytes is written: body pieces handed on earlier lie before them.
    if (this.owned && this.buf.byteOffset + need <= this.buf.buffer.byteLength) {
      const view = new Uint8Array(this.buf.buffer, this.buf.byteOffset, need);
      view.set(data, len);
      this.buf = view;
      return;
    }
    const grown = new Uint8Array(Math.max(need, 2 * len, 4096));
    grown.set(this.buf);
    grown.set(data, len);
    this.buf = grown.subarray(0, need);
    this.owned = true;
  }

  /**
   * beforeHttp reads a PROXY protocol preamble at the start of a connection from a trusted source (waiting for the rest of it if need be) and returns the bytes
   * after it; from any other source a preamble is refused. Only the first bytes of a connection come here.
   */
  private beforeHttp(data: Uint8Array): Uint8Array {
    if (this.fresh) {
      this.fresh = false;
      if (!this.preamble) {
        if (!isPreamble(data)) return data;
        this.refuse({ status: 400, reason: "a PROXY protocol preamble from a source that listen.proxy_protocol does not name" });
        return EMPTY;
      }
    }
    const buf = this.buf.byteLength === 0 ? data : Buffer.concat([this.buf, data]);
    if (!looksLikePreamble(buf)) {
      // A trusted source may also speak for itself (a health check): plain HTTP from the start.
      this.preamble = false;
      this.buf = EMPTY;
      return this.admit() ? buf : EMPTY;
    }
    const p = parseProxyHeader(buf);
    if (p === undefined) {
      if (buf.byteLength > MAX_PREAMBLE) this.refuse({ status: 400, reason: `a PROXY protocol preamble over ${MAX_PREAMBLE} bytes` });
      else this.buf = buf;
      return EMPTY;
    }
    if (isProxyError(p)) {
      this.refuse({ status: 400, reason: p.error });
      return EMPTY;
    }
    this.preamble = false;
    this.buf = EMPTY;
    // The caps count the client the balancer speaks for, not the balancer: a connection from it is counted only now.
    if (p.kind === "proxy") this.client = p.source.address;
    return this.admit() ? buf.subarray(p.bytes) : EMPTY;
  }

  /** admit counts the connection against the caps; past one, it answers 503 and closes (nginx's limit_conn does the same), returning false. */
  admit(): boolean {
    const caps = this.server.caps;
    if (caps === undefined) return true;
    const over = caps.admit(this.client);
    if (over === undefined) {
      this.counted = this.client;
      return true;
    }
    const reason = over === "total" ? "too many connections to this gateway" : "too many connections from this client";
    this.server.refused?.(503, reason, this.client);
    const f = frameResponse({ method: "GET", version: "1.1", keepAlive: false }, 503, new Headers({ "retry-after": "1" }), {
      kind: "bytes",
      length: reason.length + 1,
    });
    this.write(f.head);
    this.write(`${reason}\n`);
    this.busy = true;
    this.close();
    return false;
  }

  /** next parses the next request in the buffer and starts it. */
  next(): void {
    if (this.closed || this.busy || this.buf.byteLength === 0) return;
    const head = parseRequestHead(this.buf, this.server.limits);
    if (head === undefined) return;
    if (isHeadError(head)) {
      this.refuse(head);
      return;
    }
    unwatch(this.headWait);
    this.busy = true;
    let rest = this.buf.subarray(head.headBytes);
    this.buf = EMPTY;
    let body: BodyIn | undefined;
    if (head.framing !== "none") {
      body = new BodyIn(head, { pause: () => this.pauseReading(), resume: () => this.resumeReading() });
      this.body = body;
      // RFC 9110 §10.1.1: a client that waits for 100 Continue is told to send the body (the route's limits apply as it arrives).
      if (head.expectContinue && head.version === "1.1") this.write(CONTINUE);
      if (rest.byteLength > 0) {
        const used = body.feed(rest);
        if (typeof used !== "number") {
          this.refuse({ status: 400, reason: used.reason });
          return;
        }
        rest = rest.subarray(used);
      }
    }
    this.buf = rest;
    this.abort = undefined;
    void this.answer(new Req(head, body?.stream ?? null, this), body);
  }

  private async answer(req: FrontRequest, body: BodyIn | undefined): Promise<void> {
    let res: Response;
    try {
      res = await this.server.handler(req);
    } catch {
      res = new Response("500 Internal Server Error\n", { status: 500, headers: { "content-type": "text/plain; charset=utf-8", connection: "close" } });
    }
    // A body the handler did not read to its end leaves the connection out of step: it closes after this response.
    const keepAlive = req.head.keepAlive && (body === undefined || body.complete);
    const close = await sendResponse(this, req.head, res, keepAlive);
    if (this.closed) return;
    this.abort = undefined;
    if (close || (body !== undefined && !body.complete)) {
      this.close();
      return;
    }
    this.body = undefined;
    this.busy = false;
    this.resumeReading();
    this.waitForHead();
    this.next();
  }

  /** refuse answers a head that cannot be served with its status, then closes (RFC 9112 §11.2: no further request on a connection whose framing is in doubt). */
  refuse(e: HeadError): void {
    this.server.refused?.(e.status, e.reason, this.client);
    const res = frameResponse({ method: "GET", version: "1.1", keepAlive: false }, e.status, new Headers({ "content-type": "text/plain; charset=utf-8" }), {
      kind: "bytes",
      length: e.reason.length + 1,
    });
    this.write(res.head);
    this.write(`${e.reason}\n`);
    this.busy = true;
    this.close();
  }

  /** refuseAfter ends a request whose body turned out malformed after the handler started: the handler's stream errors, the connection closes when its response is done. */
  refuseAfter(reason: string): void {
    this.server.refused?.(400, reason, this.client);
    this.pauseReading();
  }

  /** close ends the connection once what was written has gone out. */
  close(): void {
    if (this.closed) return;
    unwatch(this.headWait);
    const flushed = this.out.flushed();
    if (flushed === undefined) this.socket.end();
    else void flushed.then(() => this.socket.end());
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    unwatch(this.headWait);
    this.out.clear();
    if (this.counted !== undefined) this.server.caps?.release(this.counted);
    this.body?.fail(new Error("the client closed the connection"));
    this.abort?.abort("client closed the connection");
    this.server.connections.delete(this);
  }
}

/** Req is a FrontRequest whose signal is made only when asked for. */
class Req implements FrontRequest {
  constructor(
    readonly head: RequestHead,
    readonly body: ReadableStream<Uint8Array> | null,
    private readonly conn: Conn,
  ) {}

  get client(): string {
    return this.conn.client;
  }

  get signal(): AbortSignal {
    return this.conn.signal();
  }
}

/** FrontServer is one listening address of the front end. */
export class FrontServer {
  readonly limits: RequestLimits;
  readonly headerTimeoutMs: number;
  readonly handler: FrontHandler;
  readonly refused: FrontOptions["refused"];
  readonly proxyProtocol: FrontOptions["proxyProtocol"];
  readonly caps: FrontOptions["caps"];
  readonly connections = new Set<Conn>();
  private readonly listener: TCPSocketListener<Conn>;

  constructor(opts: FrontOptions) {
    this.limits = opts.limits ?? DEFAULT_LIMITS;
    this.headerTimeoutMs = opts.headerTimeoutMs ?? 10_000;
    this.handler = opts.handler;
    this.refused = opts.refused;
    this.proxyProtocol = opts.proxyProtocol;
    this.caps = opts.caps;
    this.listener = Bun.listen<Conn>({
      hostname: opts.hostname,
      port: opts.port,
      socket: {
        open: (s) => {
          const c = new Conn(s, this);
          s.data = c;
          this.connections.add(c);
          // A connection that may open with a PROXY preamble is counted once it names its client (beforeHttp).
          if (c.preamble || c.admit()) c.waitForHead();
        },
        data: (s, d) => s.data.onData(d),
        drain: (s) => s.data.out.onDrain(s),
        close: (s) => s.data.onClose(),
        error: (s) => s.data.onClose(),
      },
    });
  }

  /** port is the port bound (useful with port 0). */
  get port(): number {
    return this.listener.port;
  }

  /** stop closes the listener and, with force, every connection. */
  stop(force = false): void {
    this.listener.stop(force);
    if (force) for (const c of this.connections) c.socket.terminate();
  }
}
