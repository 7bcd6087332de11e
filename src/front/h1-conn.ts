/** One client connection of the front end's HTTP/1.1 server: PROXY preamble and caps first, then heads parsed strictly, bodies fed, answers written in order. */
import { appendBytes } from "../lib/append-bytes.ts";
import { BodyWatch, MIN_BODY_RATE } from "./body-watch.ts";
import { Cancel, type CancelSignal } from "../lib/cancel.ts";
import type { Answered } from "../lib/reply.ts";
import { unwatch, type Watched, watch } from "../lib/idle-watch.ts";
import { WriteQueue } from "../lib/write-queue.ts";
import { ClientBodyError } from "../proxy/body.ts";
import { BodyIn } from "./body-in.ts";
import type { ConnectionLimits } from "./connection-limits.ts";
import { type HeadError, isHeadError, parseRequestHead } from "./h1-request.ts";
import { type ConnHost, type FrontHandler, type FrontRequest, Req, type Wire } from "./h1-types.ts";
import { refusal } from "./h1-response.ts";
import { type ResponseSink, sendResponse } from "./h1-send.ts";
import { type ClientSide, Pipe } from "./tunnel.ts";
import type { Tunnel } from "../upstream/h1-upgrade.ts";
import { firstBytes, type PreambleReader } from "./conn-preamble.ts";

/** BUFFERED_LIMIT: bytes of further requests kept while one is answered (pipelining); past it the connection stops reading until its turn. */
const BUFFERED_LIMIT = 64 * 1024;
const CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n";
const EMPTY = new Uint8Array(0);
/** DRAIN_GRACE_MS: while the server drains, a keep-alive connection idle this long is closed (nginx closes at once, cutting requests already sent). */
const DRAIN_GRACE_MS = 1000;

/**
 * Conn is one client connection and where its current request stands. It is itself what the shared idle sweep watches while it waits for a head (`last`,
 * `limit`, `expire`): an idle keep-alive connection should cost no more objects than it must (bench/SCALE.md).
 */
export class Conn implements ResponseSink, ClientSide, Watched, PreambleReader {
  buf: Uint8Array = EMPTY;
  /** owned: buf lies in a buffer of this connection's own (append may write after it), not in one the socket handed over. */
  private owned = false;
  busy = false;
  body: BodyIn | undefined;
  closed = false;
  readPaused = false;
  /** last and limit place this connection in the shared idle sweep while it waits for a head (no timer per request): the idle or the header timeout. */
  last = 0;
  limit = 0;
  /** idle: waiting for the next request of a keep-alive connection; its first byte starts the header timeout. */
  private idle = false;
  /** bodyWait watches the gaps in, and the pace of, a request body the handler is reading; made for the first body. */
  private bodyWait: BodyWatch | undefined;
  /** abort is made on first use of the current request's signal: most requests never ask. */
  abort: Cancel | undefined;
  readonly out = new WriteQueue();
  /** client is the peer's address, or the one a trusted PROXY protocol preamble named. */
  client: string;
  /** counted is the address this connection is counted under, and countedBy the caps that counted it (a reload may bring new caps). */
  counted: string | undefined;
  private countedBy: ConnectionLimits | undefined;
  /** fresh: no byte has arrived yet; a PROXY protocol preamble may only come first (conn-preamble.ts). */
  fresh = true;
  /** preamble: the peer may send a PROXY protocol preamble, and it has not been read yet. */
  preamble = false;
  /** piped is the byte pipe this connection became after an upgrade's 101. */
  piped: Pipe | undefined;

  constructor(
    readonly socket: Wire,
    readonly server: ConnHost,
    /** tlsName is the SNI of a TLS connection. */
    readonly tlsName: string | undefined = undefined,
    /** peer overrides the socket's address (a TLS connection that a PROXY preamble already named). */
    peer?: string,
  ) {
    this.client = peer ?? socket.remoteAddress;
    this.preamble = peer === undefined && server.settings.proxyProtocol?.(this.client) === true;
  }

  /** start begins a new connection: counted now, or once a PROXY preamble names its client. */
  start(): void {
    if (this.preamble || this.countedBy !== undefined || this.admit()) this.waitForHead(false);
  }

  /** countedIn takes over a count made before this connection existed (a TLS connection is counted at accept). */
  countedIn(caps: ConnectionLimits): void {
    this.counted = this.client;
    this.countedBy = caps;
  }

  /** signal is the current request's: it aborts when the connection closes before the response has gone out. */
  signal(): CancelSignal {
    if (this.abort === undefined) {
      this.abort = new Cancel();
      if (this.closed) this.abort.abort("client closed the connection");
    }
    return this.abort;
  }

  write(data: Uint8Array | string): void {
    if (!this.closed) this.out.write(this.socket, data);
  }

  flushed(): Promise<void> | undefined {
    return this.out.flushed();
  }

  get backedUp(): boolean {
    return this.out.pending;
  }

  /** onDrain writes what was queued; a pipe then reads its upstream again. */
  onDrain(): void {
    this.out.onDrain(this.socket);
    if (this.piped !== undefined && !this.out.pending) this.piped.clientDrained();
  }

  /** takeOver writes the 101 and makes this connection a byte pipe: the upstream's early bytes go to the client, the client's buffered ones to the upstream. */
  takeOver(head: string, early: Uint8Array, upstream: Tunnel, done: (bytesIn: number, bytesOut: number) => void, websocket: boolean): void {
    if (this.closed) {
      upstream.terminate();
      done(0, 0);
      return;
    }
    this.bodyWait?.stop();
    this.write(head);
    const pipe = new Pipe(this, upstream, this.server.settings.idleTimeoutMs, done, websocket);
    this.piped = pipe;
    if (early.byteLength > 0) {
      pipe.bytesOut += early.byteLength;
      this.write(early);
    }
    const rest = this.buf;
    this.buf = EMPTY;
    if (rest.byteLength > 0) pipe.fromClient(rest);
    this.resumeReading();
  }

  pauseReading(): void {
    if (!this.readPaused && !this.closed) {
      this.readPaused = true;
      this.bodyWait?.paused();
      this.socket.pause();
    }
  }

  resumeReading(): void {
    if (this.readPaused && !this.closed) {
      this.readPaused = false;
      this.bodyWait?.resumed();
      this.socket.resume();
    }
  }

  /** waitForHead starts the wait for a head: a keep-alive connection waits up to the idle timeout for its first byte, then the header timeout runs. */
  private waitForHead(idle: boolean): void {
    const s = this.server.settings;
    this.idle = idle;
    this.limit = idle ? s.idleTimeoutMs : s.headerTimeoutMs;
    this.last = performance.now();
    watch(this);
  }

  /** expire is the idle sweep's call when no head (or no whole head) came in time. */
  expire(): void {
    if (this.busy || this.closed) return;
    if (this.buf.byteLength > 0) this.refuse({ status: 408, reason: "the request head did not arrive in time" });
    else this.close();
  }

  /** bodyLate fails a body whose client paused too long; a pause of our own making (the reader is behind) does not count. */
  private bodyLate(): void {
    const body = this.body;
    const wait = this.bodyWait;
    if (body === undefined || body.ended || this.closed || wait === undefined) return;
    if (this.readPaused) {
      wait.again();
      return;
    }
    const seconds = wait.limitMs / 1000;
    body.fail(new ClientBodyError(408, `the request body paused for more than ${seconds}s`));
    this.refuseAfter();
  }

  onData(data: Uint8Array): void {
    if (this.fresh || this.preamble) {
      data = firstBytes(this, data);
      if (data.byteLength === 0) return;
    }
    if (this.piped !== undefined) {
      this.piped.fromClient(data);
      return;
    }
    const body = this.body;
    const wait = this.bodyWait;
    if (body !== undefined && !body.ended && wait !== undefined) {
      const now = performance.now();
      wait.piece(now);
      const used = body.feed(data);
      if (typeof used !== "number") {
        this.refuseAfter();
        return;
      }
      if (body.ended) wait.stop();
      else if (wait.tooSlow(now, body.bytes)) {
        body.fail(new ClientBodyError(408, `the request body came slower than ${MIN_BODY_RATE} bytes/s`));
        this.refuseAfter();
        return;
      }
      if (used === data.byteLength) return;
      data = data.subarray(used);
    }
    if (this.idle && !this.busy) {
      // The first byte of the next head: from now on the header timeout applies.
      this.idle = false;
      this.limit = this.server.settings.headerTimeoutMs;
      this.last = performance.now();
      watch(this); // a shorter limit: its deadline may come first
    }
    this.append(data);
    if (this.busy) {
      if (this.buf.byteLength > BUFFERED_LIMIT) this.pauseReading();
      return;
    }
    // A head can only have ended, or a request line run too long, where a line feed arrived or the buffer grew past a line: a head sent a byte at a
    // time is not parsed again for every byte.
    if (data.indexOf(10) >= 0 || this.buf.byteLength > this.server.settings.limits.maxLineBytes) this.next();
  }

  /** append adds data to the unparsed bytes (appendBytes: one buffer of this connection's own, grown by doubling). */
  private append(data: Uint8Array): void {
    const r = appendBytes(this.buf, this.owned, data);
    this.buf = r.bytes;
    this.owned = r.owned;
  }

  /** admit counts the connection against the caps; past one, it answers 503 and closes (nginx's limit_conn does the same), returning false. */
  admit(): boolean {
    const caps = this.server.settings.caps;
    if (caps === undefined) return true;
    const over = caps.admit(this.client);
    if (over === undefined) {
      this.counted = this.client;
      this.countedBy = caps;
      return true;
    }
    const reason = over === "total" ? "too many connections to this gateway" : "too many connections from this client";
    this.answerAndClose(503, reason, "retry-after", "1");
    return false;
  }

  /** next parses the next request in the buffer and starts it. */
  next(): void {
    if (this.closed || this.busy || this.buf.byteLength === 0) return;
    const head = parseRequestHead(this.buf, this.server.settings.limits);
    if (head === undefined) return;
    if (isHeadError(head)) {
      this.refuse(head);
      return;
    }
    unwatch(this);
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
      if (!body.ended) {
        this.bodyWait ??= new BodyWatch(() => this.bodyLate());
        this.bodyWait.start(this.server.settings.bodyTimeoutMs);
      }
    }
    // An empty rest would keep the bytes it was cut from alive while the connection idles.
    if (rest.byteLength > 0) this.buf = rest;
    else {
      this.buf = EMPTY;
      this.owned = false;
    }
    this.abort = undefined;
    void this.answer(new Req(head, body?.stream ?? null, this), body);
  }

  /** answer runs the handler; an answer it gives at once is written at once (no promise on the way of a cache hit). */
  private answer(req: FrontRequest, body: BodyIn | undefined): void {
    let out: ReturnType<FrontHandler>;
    try {
      out = this.server.handler(req);
    } catch {
      out = undefined;
    }
    if (out instanceof Promise)
      out.then(
        (res) => this.respond(req, body, res),
        () => this.respond(req, body, undefined),
      );
    else this.respond(req, body, out);
  }

  private respond(req: FrontRequest, body: BodyIn | undefined, res: Answered | undefined): void {
    // The connection became a byte pipe: it is the pipe's now.
    if (this.piped !== undefined) return;
    res ??= new Response("500 Internal Server Error\n", { status: 500, headers: { "content-type": "text/plain; charset=utf-8", connection: "close" } });
    // A body the handler did not read to its end leaves the connection out of step: it closes after this response, as it does when the server stops.
    // While the server drains, the answer says Connection: close and the connection closes after it (RFC 9112 §9.6: no further request is processed).
    const keepAlive = req.head.keepAlive && (body === undefined || body.complete) && !this.server.draining;
    const close = sendResponse(this, req.head, res, keepAlive);
    if (close instanceof Promise) void close.then((c) => this.answered(body, c || !keepAlive));
    else this.answered(body, close || !keepAlive);
  }

  /** answered goes on after a response went out: the next request, or the close. */
  private answered(body: BodyIn | undefined, close: boolean): void {
    if (this.closed) return;
    this.abort = undefined;
    if (close || (body !== undefined && !body.complete)) {
      this.close();
      return;
    }
    this.bodyWait?.stop();
    this.body = undefined;
    this.busy = false;
    this.resumeReading();
    this.waitForHead(this.buf.byteLength === 0);
    // Pipelined requests already here are started on a fresh stack (a long run of them answered at once must not nest), and only once the answers so far
    // have gone to the socket: a client that sends requests and reads no answers holds no more than one answer in memory.
    if (this.buf.byteLength > 0) {
      const flushed = this.out.flushed();
      if (flushed === undefined) queueMicrotask(() => this.next());
      else void flushed.then(() => this.next());
    }
  }

  /** refuse answers a head that cannot be served with its status, then closes (RFC 9112 §11.2: no further request on a connection whose framing is in doubt). */
  refuse(e: HeadError): void {
    this.answerAndClose(e.status, e.reason);
  }

  private answerAndClose(status: number, reason: string, name?: string, value?: string): void {
    this.server.refused?.(status, reason, this.client);
    this.write(refusal(status, reason, name, value));
    this.busy = true;
    this.close();
  }

  /**
   * refuseAfter ends a request whose body failed after the handler started: the handler's stream errors (its route answers, counts and logs the request), and
   * the connection closes when that answer is done.
   */
  refuseAfter(): void {
    this.bodyWait?.stop();
    this.pauseReading();
  }

  /**
   * lingerIdle gives a connection that waits for a request the drain's short grace (from now) before it closes: a request already on its way is still served
   * (answered with close); its first byte starts the header timeout, as on any idle connection.
   */
  lingerIdle(): void {
    if (this.closed || !this.idleNow) return;
    this.idle = true;
    this.limit = DRAIN_GRACE_MS;
    this.last = performance.now();
    watch(this);
  }

  /** idleNow says whether the connection waits for a request with nothing of one received: it can be closed without losing anything. */
  get idleNow(): boolean {
    return !this.busy && this.buf.byteLength === 0;
  }

  /** close ends the connection once what was written has gone out. */
  close(): void {
    if (this.closed) return;
    unwatch(this);
    this.bodyWait?.stop();
    const flushed = this.out.flushed();
    if (flushed === undefined) this.socket.end();
    else void flushed.then(() => this.socket.end());
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    unwatch(this);
    this.bodyWait?.stop();
    this.out.clear();
    if (this.counted !== undefined) this.countedBy?.release(this.counted);
    this.body?.fail(new Error("the client closed the connection"));
    this.piped?.end();
    this.abort?.abort("client closed the connection");
    this.server.closed(this);
  }
}
