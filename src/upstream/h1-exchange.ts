/** One request/response exchange on an upstream HTTP/1.1 connection: the caller's promise, and the response body read as its head frames it (Content-Length, chunked coding, close), small bodies whole and large ones streamed with the socket paused while the reader is behind. */
import { abortError, BUFFER_LIMIT, H1Error, type Frame, type H1Request, type H1Response, type ResponseHead } from "./h1-message.ts";

/** STREAM_HIGH_WATER: bytes queued for a slow client before the upstream socket is paused. */
const STREAM_HIGH_WATER = 64 * 1024;
const EMPTY = new Uint8Array(0);

enum Chunk {
  Size,
  Data,
  DataEnd,
  Trailer,
}

/**
 * ExchangeConn is what an exchange needs of its connection (Conn): to be told the body ended or failed, that it cannot be reused, and to pause or resume
 * reading for backpressure.
 */
export interface ExchangeConn {
  reusable: boolean;
  complete(ex: Exchange): void;
  fail(ex: Exchange, err: Error): void;
  /** pauseReading pauses the socket (once) while the body's reader is behind. */
  pauseReading(): void;
  /** resumeReading resumes a paused socket that is still open. */
  resumeReading(): void;
}

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

  constructor(
    readonly req: H1Request,
    readonly conn: ExchangeConn,
  ) {
    this.promise = new Promise<H1Response>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.onAbort = () => conn.fail(this, abortError(req.signal));
  }

  /** answer resolves the caller's promise with the response, its body to follow as framed. */
  answer(head: ResponseHead): void {
    this.headDone = true;
    if (!head.keepAlive) this.conn.reusable = false;
    this.frame = head.frame;
    this.remaining = head.length;
    const kind: H1Response["kind"] = head.frame === "none" ? "none" : head.frame === "length" && head.length <= BUFFER_LIMIT ? "bytes" : "stream";
    let stream: ReadableStream<Uint8Array> | undefined;
    if (kind === "stream") {
      stream = new ReadableStream<Uint8Array>(
        {
          start: (c) => {
            this.ctrl = c;
          },
          pull: () => this.conn.resumeReading(),
          cancel: () => {
            if (!this.done) this.conn.fail(this, new Error("body cancelled"));
          },
        },
        new ByteLengthQueuingStrategy({ highWaterMark: STREAM_HIGH_WATER }),
      );
    } else if (kind === "bytes") this.parts = [];
    this.resolve({
      status: head.status,
      statusText: head.statusText,
      headers: head.headers,
      kind,
      stream,
      ready: () => this.whole,
      bytes: () => {
        if (this.whole !== undefined) return Promise.resolve(this.whole);
        if (this.failure !== undefined) return Promise.reject(this.failure);
        return new Promise<Uint8Array>((res, rej) => {
          this.bodyResolve = res;
          this.bodyReject = rej;
        });
      },
    });
  }

  /** body takes response body bytes as framed. */
  body(data: Uint8Array): void {
    switch (this.frame) {
      case "none":
        if (data.byteLength > 0) this.conn.reusable = false;
        this.conn.complete(this);
        return;
      case "length": {
        let extra = false;
        if (data.byteLength > this.remaining) {
          data = data.subarray(0, this.remaining);
          extra = true;
        }
        this.remaining -= data.byteLength;
        this.deliver(data);
        if (extra) this.conn.reusable = false;
        if (this.remaining === 0) this.conn.complete(this);
        return;
      }
      case "close":
        this.deliver(data);
        return;
      case "chunked":
        this.dechunk(data);
        return;
    }
  }

  /** dechunk decodes chunked coding (RFC 9112 §7.1), passing chunk data on without copying; extensions and trailers are dropped. */
  private dechunk(data: Uint8Array): void {
    let i = 0;
    const n = data.byteLength;
    while (i < n && !this.done) {
      switch (this.chunk) {
        case Chunk.Size:
        case Chunk.Trailer: {
          const lf = data.indexOf(10, i);
          const end = lf < 0 ? n : lf;
          this.line += (data as Buffer).toString("latin1", i, end);
          if (this.line.length > 4096) {
            this.conn.fail(this, new H1Error("EPROTO", "chunk size line too long"));
            return;
          }
          if (lf < 0) return;
          i = lf + 1;
          let line = this.line;
          this.line = "";
          if (line.endsWith("\r")) line = line.slice(0, -1);
          if (this.chunk === Chunk.Trailer) {
            if (line === "") {
              this.conn.complete(this);
              if (i < n) this.conn.reusable = false;
              return;
            }
            continue;
          }
          const semi = line.indexOf(";");
          const hex = (semi < 0 ? line : line.slice(0, semi)).trim();
          if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) {
            this.conn.fail(this, new H1Error("EPROTO", `bad chunk size ${JSON.stringify(hex.slice(0, 20))}`));
            return;
          }
          const size = parseInt(hex, 16);
          if (size === 0) this.chunk = Chunk.Trailer;
          else {
            this.remaining = size;
            this.chunk = Chunk.Data;
          }
          continue;
        }
        case Chunk.Data: {
          const take = Math.min(this.remaining, n - i);
          this.deliver(data.subarray(i, i + take));
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.chunk = Chunk.DataEnd;
          continue;
        }
        case Chunk.DataEnd: {
          // the CRLF after a chunk's data
          const c = data[i]!;
          i++;
          if (c === 10) this.chunk = Chunk.Size;
          else if (c !== 13) {
            this.conn.fail(this, new H1Error("EPROTO", "missing CRLF after chunk data"));
            return;
          }
          continue;
        }
      }
    }
  }

  private deliver(data: Uint8Array): void {
    if (data.byteLength === 0) return;
    if (this.parts !== undefined) {
      this.parts.push(data);
      return;
    }
    const c = this.ctrl;
    if (c === undefined) return;
    // the socket reuses nothing it handed us, so the view can be queued as it is
    c.enqueue(data);
    if (c.desiredSize !== null && c.desiredSize <= 0) this.conn.pauseReading();
  }

  /**
   * end marks the exchange done with its body whole (the caller's bytes() resolves, a stream closes) and stops sending a request body the upstream no longer
   * waits for.
   */
  end(): void {
    this.done = true;
    this.req.signal.removeEventListener("abort", this.onAbort);
    if (this.parts !== undefined) {
      const whole = this.parts.length === 1 ? this.parts[0]! : this.parts.length === 0 ? EMPTY : Buffer.concat(this.parts);
      this.parts = undefined;
      this.whole = whole;
      this.bodyResolve?.(whole);
    }
    this.ctrl?.close();
    if (!this.sent) void this.reader?.cancel().catch(() => {});
  }

  /** endWith marks the exchange done with an error: before the head, the caller's promise rejects; after it, the body does. */
  endWith(err: Error): void {
    this.done = true;
    this.req.signal.removeEventListener("abort", this.onAbort);
    this.failure = err;
    if (!this.sent) void this.reader?.cancel().catch(() => {});
    if (!this.headDone) this.reject(err);
    else {
      this.bodyReject?.(err);
      if (this.ctrl !== undefined) {
        try {
          this.ctrl.error(err);
        } catch {
          // already closed
        }
      }
    }
  }
}
