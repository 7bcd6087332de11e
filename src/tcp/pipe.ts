/** Bytes both ways between a client and an upstream socket at the slower side's pace: a reader is paused while its bytes wait for the other socket, and a FIN from one side is passed on as a FIN to the other. */
import { unwatch, type Watched, watch } from "../lib/idle-watch.ts";

/** PipeSocket is the part of a Bun socket (plain or TLS) a pipe uses. */
export type PipeSocket = {
  write(data: Uint8Array): number;
  pause(): unknown;
  resume(): unknown;
  /** shutdown sends FIN (write side) and keeps reading. */
  shutdown(): void;
  end(): unknown;
  terminate(): void;
};

/** Direction is one way through the pipe: bytes read from `from`, written to `to`, with what `to` has not taken yet. */
class Direction {
  /** queue holds copies of what `to` has not taken; bounded: `from` is paused as soon as anything waits. */
  queue: Uint8Array[] = [];
  /** finRead: `from` sent FIN (or closed); FIN goes to `to` once the queue is empty. */
  finRead = false;
  finSent = false;
  bytes = 0;

  constructor(
    readonly from: PipeSocket,
    readonly to: PipeSocket,
  ) {}

  /** push writes data to `to`, or keeps a copy of what it did not take and pauses `from` (the socket may reuse the bytes it handed over). */
  push(data: Uint8Array, counted = true): void {
    if (counted) this.bytes += data.byteLength;
    if (this.queue.length > 0) {
      this.queue.push(Buffer.from(data));
      return;
    }
    const n = this.to.write(data);
    if (n < data.byteLength) {
      this.queue.push(Buffer.from(n > 0 ? data.subarray(n) : data));
      this.from.pause();
    }
  }

  /** drain writes what is queued as far as `to` takes it; once all has gone, `from` is read again and a FIN owed is sent. Returns whether the queue is empty. */
  drain(): boolean {
    while (this.queue.length > 0) {
      const b = this.queue[0]!;
      const n = this.to.write(b);
      if (n < b.byteLength) {
        if (n > 0) this.queue[0] = b.subarray(n);
        return false;
      }
      this.queue.shift();
    }
    if (this.finRead) this.sendFin();
    else this.from.resume();
    return true;
  }

  /** sendFin passes the FIN on, once. */
  sendFin(): void {
    if (this.finSent) return;
    this.finSent = true;
    this.to.shutdown();
  }
}

/** PipeEnd is what a pipe reports when it is over: bytes each way, and why it ended. */
export type PipeEnd = { readonly bytesIn: number; readonly bytesOut: number; readonly reason: "done" | "idle" | "closed" | "shutdown" };

/**
 * TcpPipe joins a client and an upstream socket; the owner routes each socket's events to it (fromClient/fromUpstream, drained, ended, closed). It ends when
 * both ways have passed their FIN on, when either socket closes, or after idleMs without a byte either way; then both sockets close and done() is called once.
 */
export class TcpPipe {
  private readonly up: Direction;
  private readonly down: Direction;
  private readonly idle: Watched;
  private over = false;

  constructor(
    readonly client: PipeSocket,
    readonly upstream: PipeSocket,
    idleMs: number,
    private readonly counted: (direction: "in" | "out", bytes: number) => void,
    private readonly done: (end: PipeEnd) => void,
  ) {
    this.up = new Direction(client, upstream);
    this.down = new Direction(upstream, client);
    this.idle = { last: performance.now(), limit: idleMs, expire: () => this.finish("idle") };
    watch(this.idle);
  }

  /** preface writes bytes of gatehouse's own to the upstream before the client's (a PROXY header): not counted as the client's. */
  preface(d: Uint8Array): void {
    if (!this.over) this.up.push(d, false);
  }

  /** upstreamBackedUp says whether client bytes wait for the upstream's socket (the client is paused until they have gone). */
  get upstreamBackedUp(): boolean {
    return this.up.queue.length > 0;
  }

  /** fromClient passes bytes the client sent to the upstream. */
  fromClient(d: Uint8Array): void {
    if (this.over) return;
    this.idle.last = performance.now();
    this.counted("in", d.byteLength);
    this.up.push(d);
  }

  /** fromUpstream passes bytes the upstream sent to the client. */
  fromUpstream(d: Uint8Array): void {
    if (this.over) return;
    this.idle.last = performance.now();
    this.counted("out", d.byteLength);
    this.down.push(d);
  }

  /** upstreamDrained: the upstream socket takes bytes again. */
  upstreamDrained(): void {
    if (!this.over && this.up.drain()) this.check();
  }

  /** clientDrained: the client socket takes bytes again. */
  clientDrained(): void {
    if (!this.over && this.down.drain()) this.check();
  }

  /** clientEnded: the client sent FIN; it goes to the upstream after the bytes before it. */
  clientEnded(): void {
    this.ended(this.up);
  }

  /** upstreamEnded: the upstream sent FIN; it goes to the client after the bytes before it. */
  upstreamEnded(): void {
    this.ended(this.down);
  }

  private ended(d: Direction): void {
    if (this.over || d.finRead) return;
    d.finRead = true;
    if (d.queue.length === 0) d.sendFin();
    this.check();
  }

  /**
   * closed: one socket is gone (both its ways). What it sent and the other socket has not taken yet is still delivered, with a FIN, unless nothing can take
   * it; the pipe then ends.
   */
  closed(side: "client" | "upstream"): void {
    if (this.over) return;
    const outOf = side === "client" ? this.up : this.down;
    if (outOf.queue.length > 0 && !outOf.finSent) {
      // The other socket still takes these bytes; it is closed once they have gone (the idle deadline bounds the wait).
      outOf.finRead = true;
      this.deadSide = side;
      return;
    }
    this.finish("closed");
  }

  /** deadSide is a socket that closed while its last bytes still waited for the other one. */
  private deadSide: "client" | "upstream" | undefined;

  private check(): void {
    if (this.over) return;
    if (this.deadSide !== undefined) {
      const outOf = this.deadSide === "client" ? this.up : this.down;
      if (outOf.queue.length === 0) this.finish("closed");
      return;
    }
    if (this.up.finSent && this.down.finSent) this.finish("done");
  }

  /** shutdown cuts the pipe now (the grace period of a drain is over). */
  shutdown(): void {
    this.finish("shutdown");
  }

  private finish(reason: PipeEnd["reason"]): void {
    if (this.over) return;
    this.over = true;
    unwatch(this.idle);
    if (reason === "done" || reason === "closed") {
      // Graceful: what the sockets took is still sent before their FIN.
      this.client.end();
      this.upstream.end();
    } else {
      this.client.terminate();
      this.upstream.terminate();
    }
    this.done({ bytesIn: this.up.bytes, bytesOut: this.down.bytes, reason });
  }
}
