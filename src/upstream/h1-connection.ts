/** One upstream HTTP/1.1 connection of the pooled client: writing requests (bodies at the socket's pace), reading responses as their heads frame them (Content-Length, chunked coding, close), small bodies whole and large ones streamed with the socket paused while the reader is behind. */
import type { Socket } from "bun";
import { IDEMPOTENT } from "../lib/http.ts";
import { abortError, BUFFER_LIMIT, H1Error, INTERIM, MAX_HEAD, parseResponseHead, type Frame, type H1Request, type H1Response, type ResponseHead } from "./h1-message.ts";

/** STREAM_HIGH_WATER: bytes queued for a slow client before the upstream socket is paused. */
const STREAM_HIGH_WATER = 64 * 1024;
const CRLF2 = Buffer.from("\r\n\r\n");
const EMPTY = new Uint8Array(0);

const enum Chunk { Size, Data, DataEnd, Trailer }

/** ConnOwner is the pool a connection returns to. */
export type ConnOwner = {
  release(conn: Conn): void;
  forget(conn: Conn): void;
  /** retry sends an exchange again on a new connection (its first one was closing). */
  retry(ex: Exchange): void;
};

/** Exchange is one request/response on a connection. */
export class Exchange {
  resolve!: (r: H1Response) => void;
  reject!: (e: Error) => void;
  readonly promise: Promise<H1Response>;
  /** received counts response bytes: a reused connection that closes before any may be retried on a new one. */
  received = 0;
  headDone = false;
  done = false;
  frame: Frame = "none";
  remaining = 0;
  // a "bytes" body
  parts: Uint8Array[] | undefined;
  bodyResolve: ((b: Uint8Array) => void) | undefined;
  bodyReject: ((e: Error) => void) | undefined;
  whole: Uint8Array | undefined;
  failure: Error | undefined;
  // a "stream" body
  ctrl: ReadableStreamDefaultController<Uint8Array> | undefined;
  // chunked decoding
  chunk = Chunk.Size;
  line = "";
  sent = false;
  /** reader is the request body's, while the pump sends it: cancelled when the exchange ends first. */
  reader: { cancel(reason?: unknown): Promise<void> } | undefined;
  readonly onAbort: () => void;

  constructor(readonly req: H1Request, readonly conn: Conn) {
    this.promise = new Promise<H1Response>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.onAbort = () => conn.fail(this, abortError(req.signal));
  }
}

/** Conn is one upstream connection and its parser state. */
export class Conn {
  socket: Socket<Conn> | undefined;
  ex: Exchange | undefined;
  head: Uint8Array | undefined;
  reused = false;
  idleSince = 0;
  closed = false;
  /** reusable turns false when the connection cannot carry another exchange (close, HTTP/1.0, bad framing, unsent body). */
  reusable = true;
  paused = false;
  /** writeQueue holds what the socket did not take yet; drained by the drain handler. */
  writeQueue: Uint8Array[] = [];
  drained: (() => void) | undefined;

  constructor(readonly pool: ConnOwner) {}

  write(data: Uint8Array | string): void {
    const s = this.socket!;
    if (this.writeQueue.length > 0) {
      this.writeQueue.push(typeof data === "string" ? Buffer.from(data, "latin1") : data);
      return;
    }
    const bytes = typeof data === "string" ? Buffer.from(data, "latin1") : data;
    const n = s.write(bytes);
    if (n < bytes.byteLength) this.writeQueue.push(n <= 0 ? bytes : bytes.subarray(n));
  }

  onDrain(): void {
    const s = this.socket!;
    while (this.writeQueue.length > 0) {
      const b = this.writeQueue[0]!;
      const n = s.write(b);
      if (n < b.byteLength) {
        if (n > 0) this.writeQueue[0] = b.subarray(n);
        return;
      }
      this.writeQueue.shift();
    }
    const d = this.drained;
    this.drained = undefined;
    d?.();
  }

  /** flushed resolves when everything written so far has gone to the socket. */
  flushed(): Promise<void> | undefined {
    if (this.writeQueue.length === 0) return undefined;
    return new Promise((r) => (this.drained = r));
  }

  start(ex: Exchange): void {
    this.ex = ex;
    const { body, signal } = ex.req;
    signal.addEventListener("abort", ex.onAbort);
    this.write(ex.req.head);
    if (body instanceof ReadableStream) void this.pump(ex, body, ex.req.chunked);
    else {
      if (body !== null) this.write(body);
      ex.sent = true;
    }
  }

  /** pump sends a streamed request body, at the socket's pace. */
  private async pump(ex: Exchange, body: ReadableStream<Uint8Array>, chunked: boolean): Promise<void> {
    const reader = body.getReader();
    ex.reader = reader;
    try {
      for (;;) {
        const r = await reader.read();
        if (ex.done || this.closed) {
          void reader.cancel().catch(() => {});
          return;
        }
        if (r.done) break;
        if (r.value.byteLength === 0) continue;
        if (chunked) this.write(`${r.value.byteLength.toString(16)}\r\n`);
        this.write(r.value);
        if (chunked) this.write("\r\n");
        const f = this.flushed();
        if (f !== undefined) await f;
      }
      if (chunked && !this.closed) this.write("0\r\n\r\n");
      ex.sent = true;
    } catch (e) {
      // the client's body failed (too large, or the client left): the exchange cannot go on
      this.fail(ex, e instanceof Error ? e : new Error(String(e)));
    }
  }

  onData(data: Uint8Array): void {
    const ex = this.ex;
    if (ex === undefined) {
      // bytes nobody asked for: the connection is out of step
      this.destroy();
      return;
    }
    ex.received += data.byteLength;
    if (!ex.headDone) {
      const buf = this.head === undefined ? data : Buffer.concat([this.head, data]);
      const end = (buf as Buffer).indexOf(CRLF2);
      if (end < 0) {
        if (buf.byteLength > MAX_HEAD) return this.fail(ex, new H1Error("EPROTO", `response head over ${MAX_HEAD} bytes`));
        this.head = buf;
        return;
      }
      this.head = undefined;
      const rest = buf.subarray(end + 4);
      if (end > MAX_HEAD) return this.fail(ex, new H1Error("EPROTO", `response head over ${MAX_HEAD} bytes`));
      const head = parseResponseHead(buf.subarray(0, end), ex.req.method);
      if (head instanceof H1Error) return this.fail(ex, head);
      if (head === INTERIM) {
        // the final head follows, maybe in the same bytes
        if (rest.byteLength > 0) this.onData(rest);
        return;
      }
      this.answer(ex, head);
      if (rest.byteLength > 0 || ex.frame === "none") this.body(ex, rest);
      return;
    }
    this.body(ex, data);
  }

  /** answer resolves the caller's promise with the response, its body to follow as framed. */
  private answer(ex: Exchange, head: ResponseHead): void {
    ex.headDone = true;
    if (!head.keepAlive) this.reusable = false;
    ex.frame = head.frame;
    ex.remaining = head.length;
    const kind: H1Response["kind"] = head.frame === "none" ? "none" : head.frame === "length" && head.length <= BUFFER_LIMIT ? "bytes" : "stream";
    let stream: ReadableStream<Uint8Array> | undefined;
    if (kind === "stream") {
      stream = new ReadableStream<Uint8Array>({
        start: (c) => {
          ex.ctrl = c;
        },
        pull: () => {
          if (this.paused && !this.closed) {
            this.paused = false;
            this.socket!.resume();
          }
        },
        cancel: () => {
          if (!ex.done) this.fail(ex, new Error("body cancelled"));
        },
      }, new ByteLengthQueuingStrategy({ highWaterMark: STREAM_HIGH_WATER }));
    } else if (kind === "bytes") ex.parts = [];
    ex.resolve({
      status: head.status,
      statusText: head.statusText,
      headers: head.headers,
      kind,
      stream,
      ready: () => ex.whole,
      bytes: () => {
        if (ex.whole !== undefined) return Promise.resolve(ex.whole);
        if (ex.failure !== undefined) return Promise.reject(ex.failure);
        return new Promise<Uint8Array>((res, rej) => {
          ex.bodyResolve = res;
          ex.bodyReject = rej;
        });
      },
    });
  }

  /** body takes response body bytes as framed. */
  private body(ex: Exchange, data: Uint8Array): void {
    switch (ex.frame) {
      case "none":
        if (data.byteLength > 0) this.reusable = false;
        return this.complete(ex);
      case "length": {
        let extra = false;
        if (data.byteLength > ex.remaining) {
          data = data.subarray(0, ex.remaining);
          extra = true;
        }
        ex.remaining -= data.byteLength;
        this.deliver(ex, data);
        if (extra) this.reusable = false;
        if (ex.remaining === 0) this.complete(ex);
        return;
      }
      case "close":
        this.deliver(ex, data);
        return;
      case "chunked":
        return this.dechunk(ex, data);
    }
  }

  /** dechunk decodes chunked coding (RFC 9112 §7.1), passing chunk data on without copying; extensions and trailers are dropped. */
  private dechunk(ex: Exchange, data: Uint8Array): void {
    let i = 0;
    const n = data.byteLength;
    while (i < n && !ex.done) {
      switch (ex.chunk) {
        case Chunk.Size:
        case Chunk.Trailer: {
          const lf = data.indexOf(10, i);
          const end = lf < 0 ? n : lf;
          ex.line += (data as Buffer).toString("latin1", i, end);
          if (ex.line.length > 4096) return this.fail(ex, new H1Error("EPROTO", "chunk size line too long"));
          if (lf < 0) return;
          i = lf + 1;
          let line = ex.line;
          ex.line = "";
          if (line.endsWith("\r")) line = line.slice(0, -1);
          if (ex.chunk === Chunk.Trailer) {
            if (line === "") {
              this.complete(ex);
              if (i < n) this.reusable = false;
              return;
            }
            continue;
          }
          const semi = line.indexOf(";");
          const hex = (semi < 0 ? line : line.slice(0, semi)).trim();
          if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) return this.fail(ex, new H1Error("EPROTO", `bad chunk size ${JSON.stringify(hex.slice(0, 20))}`));
          const size = parseInt(hex, 16);
          if (size === 0) ex.chunk = Chunk.Trailer;
          else {
            ex.remaining = size;
            ex.chunk = Chunk.Data;
          }
          continue;
        }
        case Chunk.Data: {
          const take = Math.min(ex.remaining, n - i);
          this.deliver(ex, data.subarray(i, i + take));
          i += take;
          ex.remaining -= take;
          if (ex.remaining === 0) ex.chunk = Chunk.DataEnd;
          continue;
        }
        case Chunk.DataEnd: {
          // the CRLF after a chunk's data
          const c = data[i]!;
          i++;
          if (c === 10) ex.chunk = Chunk.Size;
          else if (c !== 13) return this.fail(ex, new H1Error("EPROTO", "missing CRLF after chunk data"));
          continue;
        }
      }
    }
  }

  private deliver(ex: Exchange, data: Uint8Array): void {
    if (data.byteLength === 0) return;
    if (ex.parts !== undefined) {
      ex.parts.push(data);
      return;
    }
    const c = ex.ctrl;
    if (c === undefined) return;
    // the socket reuses nothing it handed us, so the view can be queued as it is
    c.enqueue(data);
    if (c.desiredSize !== null && c.desiredSize <= 0 && !this.paused) {
      this.paused = true;
      this.socket!.pause();
    }
  }

  /** complete ends the exchange with its body whole; the connection goes back to the pool when it can. */
  private complete(ex: Exchange): void {
    if (ex.done) return;
    ex.done = true;
    ex.req.signal.removeEventListener("abort", ex.onAbort);
    if (ex.parts !== undefined) {
      const whole = ex.parts.length === 1 ? ex.parts[0]! : ex.parts.length === 0 ? EMPTY : Buffer.concat(ex.parts);
      ex.parts = undefined;
      ex.whole = whole;
      ex.bodyResolve?.(whole);
    }
    ex.ctrl?.close();
    if (!ex.sent) void ex.reader?.cancel().catch(() => {});
    this.ex = undefined;
    if (this.paused) {
      this.paused = false;
      this.socket!.resume();
    }
    // A request body still being sent (the upstream answered early) leaves the connection out of step.
    if (!ex.sent || this.writeQueue.length > 0) this.reusable = false;
    if (this.reusable && !this.closed) {
      this.reused = true;
      this.pool.release(this);
    } else this.destroy();
  }

  /** fail ends the exchange with an error: before the head, the caller's promise rejects; after it, the body does. */
  fail(ex: Exchange, err: Error): void {
    if (ex.done) return;
    ex.done = true;
    ex.req.signal.removeEventListener("abort", ex.onAbort);
    ex.failure = err;
    if (!ex.sent) void ex.reader?.cancel().catch(() => {});
    if (!ex.headDone) ex.reject(err);
    else {
      ex.bodyReject?.(err);
      if (ex.ctrl !== undefined) {
        try {
          ex.ctrl.error(err);
        } catch {
          // already closed
        }
      }
    }
    if (this.ex === ex) this.ex = undefined;
    this.destroy();
  }

  onClose(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.pool.forget(this);
    const ex = this.ex;
    if (ex === undefined) return;
    if (ex.frame === "close" && ex.headDone && err === undefined) {
      this.complete(ex);
      return;
    }
    // A reused connection that the upstream closed before answering at all: it was closing as we picked it; a request that may be repeated goes again on a new one.
    if (!ex.headDone && ex.received === 0 && this.reused && !(ex.req.body instanceof ReadableStream) && IDEMPOTENT.has(ex.req.method) && !ex.req.signal.aborted) {
      this.ex = undefined;
      ex.req.signal.removeEventListener("abort", ex.onAbort);
      this.pool.retry(ex);
      return;
    }
    const e = err ?? new H1Error("ECONNRESET", ex.headDone ? "upstream closed the connection before the body ended" : "upstream closed the connection without answering");
    this.fail(ex, e);
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.pool.forget(this);
    this.socket?.terminate();
    this.writeQueue = [];
    const d = this.drained;
    this.drained = undefined;
    d?.();
  }
}

/** handlers are the socket callbacks of every upstream connection; each socket carries its Conn as data. */
export const handlers = {
  data(s: Socket<Conn>, d: Uint8Array) {
    s.data.onData(d);
  },
  drain(s: Socket<Conn>) {
    s.data.onDrain();
  },
  close(s: Socket<Conn>, err?: Error) {
    s.data.onClose(err);
  },
  error(s: Socket<Conn>, err: Error) {
    s.data.onClose(new H1Error((err as { code?: string }).code ?? "ECONNRESET", err.message));
    s.terminate();
  },
  end(s: Socket<Conn>) {
    // the upstream half-closed: no more answers on this connection
    s.data.reusable = false;
    if (s.data.ex === undefined) s.data.destroy();
  },
};

