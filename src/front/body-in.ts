/** A request body as it arrives on a front-end connection: framed by Content-Length or chunked coding, handed on as a stream at the reader's pace. */
import { ClientBodyError } from "../proxy/body.ts";
import { type ChunkError, ChunkedDecoder } from "../lib/chunked.ts";
import type { RequestHead } from "./h1-request.ts";

/** HIGH_WATER: past this many bytes received but not yet read, the connection stops reading from its socket until the reader catches up. */
const HIGH_WATER = 64 * 1024;

/** BodyFlow is how a body tells its connection to stop and go on reading from the socket. */
export type BodyFlow = { pause(): void; resume(): void };

/** BodyIn decodes one request body from the bytes the connection feeds it and offers them as `stream`. */
export class BodyIn {
  readonly stream: ReadableStream<Uint8Array>;
  private readonly decoder: ChunkedDecoder | undefined;
  private remaining: number;
  private readonly queue: Uint8Array[] = [];
  private queued = 0;
  private paused = false;
  private waiting: (() => void) | undefined;
  private failure: Error | undefined;
  /** ended: no more of the body will arrive (it is complete, or it failed); it may not all have been read yet. */
  ended = false;
  /** complete: the whole body arrived. */
  complete = false;
  /** bytes counts the decoded body received so far. */
  bytes = 0;

  constructor(
    head: RequestHead,
    private readonly flow: BodyFlow,
  ) {
    this.decoder = head.framing === "chunked" ? new ChunkedDecoder() : undefined;
    this.remaining = head.framing === "length" ? head.length : 0;
    this.stream = new ReadableStream<Uint8Array>(
      {
        pull: (c) => this.pull(c),
        cancel: () => {
          // Nobody will read the rest: it is dropped as it arrives, and the connection is not kept for another request.
          this.queue.length = 0;
          this.queued = 0;
          this.resume();
        },
      },
      { highWaterMark: 0 },
    );
  }

  /** feed takes the bytes that arrived; it returns how many belong to this body (the rest start the next request), or a ChunkError for a broken chunked body. */
  feed(data: Uint8Array): number | ChunkError {
    if (this.ended) return 0;
    if (this.decoder !== undefined) {
      const used = this.decoder.push(data, (piece) => this.put(piece));
      if (typeof used !== "number") {
        this.fail(new ClientBodyError(400, `request body: ${used.reason}`));
        return used;
      }
      if (this.decoder.done) this.end();
      return used;
    }
    const take = Math.min(this.remaining, data.byteLength);
    this.remaining -= take;
    if (take > 0) this.put(take === data.byteLength ? data : data.subarray(0, take));
    if (this.remaining === 0) this.end();
    return take;
  }

  /** fail ends the stream with an error (the client went away, the body was malformed); a reader's next read rejects. */
  fail(err: Error): void {
    if (this.complete || this.failure !== undefined) return;
    this.failure = err;
    this.ended = true;
    this.wake();
  }

  private put(piece: Uint8Array): void {
    this.bytes += piece.byteLength;
    this.queue.push(piece);
    this.queued += piece.byteLength;
    if (this.queued > HIGH_WATER && !this.paused) {
      this.paused = true;
      this.flow.pause();
    }
    this.wake();
  }

  private end(): void {
    this.ended = true;
    this.complete = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }

  private resume(): void {
    if (this.paused) {
      this.paused = false;
      this.flow.resume();
    }
  }

  private async pull(c: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    while (this.queue.length === 0 && !this.ended) await new Promise<void>((r) => (this.waiting = r));
    const piece = this.queue.shift();
    if (piece !== undefined) {
      this.queued -= piece.byteLength;
      if (this.queued <= HIGH_WATER / 2) this.resume();
      c.enqueue(piece);
      return;
    }
    if (this.failure !== undefined) c.error(this.failure);
    else c.close();
  }
}
