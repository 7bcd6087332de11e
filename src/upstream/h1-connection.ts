/** One upstream HTTP/1.1 connection of the pooled client: writing requests (bodies at the socket's pace), finding each response head, handing the body to its Exchange (h1-exchange.ts), and going back to the pool or closing. */
import type { Socket } from "bun";
import { IDEMPOTENT } from "../lib/http.ts";
import { WriteQueue } from "../lib/write-queue.ts";
import type { Exchange, ExchangeConn } from "./h1-exchange.ts";
import { H1Error, INTERIM, MAX_HEAD, parseResponseHead } from "./h1-message.ts";

const CRLF2 = Buffer.from("\r\n\r\n");

/** ConnOwner is the pool a connection returns to. */
export type ConnOwner = {
  release(conn: Conn): void;
  forget(conn: Conn): void;
  /** retry sends an exchange again on a new connection (its first one was closing). */
  retry(ex: Exchange): void;
};

/** Conn is one upstream connection and its parser state. */
export class Conn implements ExchangeConn {
  socket: Socket<Conn> | undefined;
  ex: Exchange | undefined;
  head: Uint8Array | undefined;
  reused = false;
  idleSince = 0;
  closed = false;
  /** reusable turns false when the connection cannot carry another exchange (close, HTTP/1.0, bad framing, unsent body). */
  reusable = true;
  paused = false;
  /** out holds what the socket did not take yet; drained by the drain handler. */
  readonly out = new WriteQueue();

  constructor(readonly pool: ConnOwner) {}

  write(data: Uint8Array | string): void {
    this.out.write(this.socket!, data);
  }

  onDrain(): void {
    this.out.onDrain(this.socket!);
  }

  /** flushed resolves when everything written so far has gone to the socket. */
  flushed(): Promise<void> | undefined {
    return this.out.flushed();
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
        if (buf.byteLength > MAX_HEAD) {
          this.fail(ex, new H1Error("EPROTO", `response head over ${MAX_HEAD} bytes`));
          return;
        }
        this.head = buf;
        return;
      }
      this.head = undefined;
      const rest = buf.subarray(end + 4);
      if (end > MAX_HEAD) {
        this.fail(ex, new H1Error("EPROTO", `response head over ${MAX_HEAD} bytes`));
        return;
      }
      const head = parseResponseHead(buf.subarray(0, end), ex.req.method);
      if (head instanceof H1Error) {
        this.fail(ex, head);
        return;
      }
      if (head === INTERIM) {
        // the final head follows, maybe in the same bytes
        if (rest.byteLength > 0) this.onData(rest);
        return;
      }
      ex.answer(head);
      if (rest.byteLength > 0 || ex.frame === "none") ex.body(rest);
      return;
    }
    ex.body(data);
  }

  pauseReading(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket!.pause();
  }

  resumeReading(): void {
    if (!this.paused || this.closed) return;
    this.paused = false;
    this.socket!.resume();
  }

  /** complete ends the exchange with its body whole; the connection goes back to the pool when it can. */
  complete(ex: Exchange): void {
    if (ex.done) return;
    ex.end();
    this.ex = undefined;
    if (this.paused) {
      this.paused = false;
      this.socket!.resume();
    }
    // A request body still being sent (the upstream answered early) leaves the connection out of step.
    if (!ex.sent || this.out.pending) this.reusable = false;
    if (this.reusable && !this.closed) {
      this.reused = true;
      this.pool.release(this);
    } else this.destroy();
  }

  /** fail ends the exchange with an error: before the head, the caller's promise rejects; after it, the body does. */
  fail(ex: Exchange, err: Error): void {
    if (ex.done) return;
    ex.endWith(err);
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
    // A reused connection that the upstream closed before answering at all: it was closing as we picked it; a request that may be repeated goes again on a new
    // one.
    if (
      !ex.headDone &&
      ex.received === 0 &&
      this.reused &&
      !(ex.req.body instanceof ReadableStream) &&
      IDEMPOTENT.has(ex.req.method) &&
      !ex.req.signal.aborted
    ) {
      this.ex = undefined;
      ex.req.signal.removeEventListener("abort", ex.onAbort);
      this.pool.retry(ex);
      return;
    }
    const e =
      err ??
      new H1Error("ECONNRESET", ex.headDone ? "upstream closed the connection before the body ended" : "upstream closed the connection without answering");
    this.fail(ex, e);
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.pool.forget(this);
    this.socket?.terminate();
    this.out.clear();
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
