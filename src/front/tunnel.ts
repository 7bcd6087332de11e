/** A client connection turned into a byte pipe after an upgrade's 101: bytes both ways at the slower side's pace, closed when either side closes or it idles too long. */
import { unwatch, type Watched, watch } from "../lib/idle-watch.ts";
import type { Tunnel } from "../upstream/h1-upgrade.ts";

/** ClientSide is the part of a front-end connection a pipe uses. */
export interface ClientSide {
  write(data: Uint8Array | string): void;
  /** backedUp says whether written bytes still wait for the client's socket. */
  readonly backedUp: boolean;
  pauseReading(): void;
  resumeReading(): void;
  close(): void;
}

/** HIGH_WATER: past this many bytes waiting for the upstream's socket, the client is not read until they have gone. */
const HIGH_WATER = 1 << 20;

/** openPipes are the pipes open now: a shutdown closes them when its grace period ends. */
export const openPipes = new Set<Pipe>();

/** Pipe joins a client connection and an upstream Tunnel. */
export class Pipe {
  bytesIn = 0;
  bytesOut = 0;
  private ended = false;
  private readonly idle: Watched;

  constructor(
    private readonly client: ClientSide,
    private readonly upstream: Tunnel,
    idleMs: number,
    private readonly done: (bytesIn: number, bytesOut: number) => void,
  ) {
    this.idle = { last: performance.now(), limit: idleMs, expire: () => this.end() };
    openPipes.add(this);
    watch(this.idle);
    upstream.onData = (d) => this.fromUpstream(d);
    upstream.onDrain = () => this.client.resumeReading();
    upstream.onClose = () => this.end();
  }

  /** fromClient passes bytes the client sent to the upstream; the client is not read while the upstream is behind. */
  fromClient(data: Uint8Array): void {
    if (this.ended) return;
    this.idle.last = performance.now();
    this.bytesIn += data.byteLength;
    this.upstream.write(data);
    if (this.upstream.buffered > HIGH_WATER) this.client.pauseReading();
  }

  private fromUpstream(data: Uint8Array): void {
    if (this.ended) return;
    this.idle.last = performance.now();
    this.bytesOut += data.byteLength;
    this.client.write(data);
    if (this.client.backedUp) this.upstream.pause();
  }

  /** clientDrained: the client's socket took everything; read the upstream again. */
  clientDrained(): void {
    if (!this.ended) this.upstream.resume();
  }

  /** end closes both sides (once) and reports the bytes each way. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    unwatch(this.idle);
    openPipes.delete(this);
    this.upstream.end();
    this.client.close();
    this.done(this.bytesIn, this.bytesOut);
  }
}
