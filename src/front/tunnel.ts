/** A client connection turned into a byte pipe after an upgrade's 101: bytes both ways at the slower side's pace, closed when either side closes or it idles too long. */
import { unwatch, type Watched, watch } from "../lib/idle-watch.ts";
import type { Tunnel } from "../upstream/h1-upgrade.ts";
import { closeFrame, FrameTracker } from "./ws-frames.ts";

/** ClientSide is the part of a front-end connection a pipe uses. */
export interface ClientSide {
  write(data: Uint8Array | string): void;
  /** backedUp says whether written bytes still wait for the client's socket. */
  readonly backedUp: boolean;
  pauseReading(): void;
  resumeReading(): void;
  close(): void;
}

/** CLOSE_WAIT_MS: after a shutdown's close frames, how long the peers have to answer them and close before the pipe is cut. */
const CLOSE_WAIT_MS = 2000;

/** Ws is a WebSocket pipe's frame tracking both ways, and which close frames a shutdown has sent. */
type Ws = { readonly up: FrameTracker; readonly down: FrameTracker; closing: boolean; sentUp: boolean; sentDown: boolean };

/** HIGH_WATER: past this many bytes waiting for the upstream's socket, the client is not read until they have gone. */
const HIGH_WATER = 1 << 20;

/** openPipes are the pipes open now: a shutdown closes WebSocket ones with 1001 (shutdown()), and the others when its grace period ends. */
export const openPipes = new Set<Pipe>();

/** Pipe joins a client connection and an upstream Tunnel. */
export class Pipe {
  bytesIn = 0;
  bytesOut = 0;
  private ended = false;
  private readonly idle: Watched;
  /** ws follows the frames of a WebSocket pipe, so that a shutdown can close it as a WebSocket; undefined for other protocols. */
  private readonly ws: Ws | undefined;

  constructor(
    private readonly client: ClientSide,
    private readonly upstream: Tunnel,
    idleMs: number,
    private readonly done: (bytesIn: number, bytesOut: number) => void,
    websocket = false,
  ) {
    this.ws = websocket ? { up: new FrameTracker(), down: new FrameTracker(), closing: false, sentUp: false, sentDown: false } : undefined;
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
    const ws = this.ws;
    if (ws !== undefined) {
      // After our close frame nothing more goes to the upstream (RFC 6455 §5.5.1).
      if (ws.sentUp) return;
      ws.up.feed(data);
    }
    this.bytesIn += data.byteLength;
    if (ws?.closing !== true) this.idle.last = performance.now();
    this.upstream.write(data);
    if (ws?.closing) this.closeAtBoundaries();
    if (this.upstream.buffered > HIGH_WATER) this.client.pauseReading();
  }

  private fromUpstream(data: Uint8Array): void {
    if (this.ended) return;
    const ws = this.ws;
    if (ws !== undefined) {
      if (ws.sentDown) return;
      ws.down.feed(data);
    }
    this.bytesOut += data.byteLength;
    if (ws?.closing !== true) this.idle.last = performance.now();
    this.client.write(data);
    if (ws?.closing) this.closeAtBoundaries();
    if (this.client.backedUp) this.upstream.pause();
  }

  /**
   * shutdown closes a WebSocket pipe as a WebSocket, as the gateway's own WebSockets are closed when it stops: 1001 (going away) to the client and to the
   * upstream, each between two frames, then the peers have CLOSE_WAIT_MS to close. Other pipes are left to the end of the grace period.
   */
  shutdown(): void {
    const ws = this.ws;
    if (ws === undefined || ws.closing || this.ended) return;
    ws.closing = true;
    this.idle.limit = CLOSE_WAIT_MS;
    this.idle.last = performance.now();
    watch(this.idle); // a shorter limit: its deadline may come first
    this.closeAtBoundaries();
  }

  /** closeAtBoundaries sends each side its close frame once the frames going its way are whole. */
  private closeAtBoundaries(): void {
    const ws = this.ws!;
    if (!ws.sentDown && ws.down.atBoundary) {
      ws.sentDown = true;
      this.client.write(closeFrame(1001, false));
    }
    if (!ws.sentUp && ws.up.atBoundary) {
      ws.sentUp = true;
      this.upstream.write(closeFrame(1001, true));
    }
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
