/** Watching a request body as it arrives: the longest gap between its pieces (body_timeout, in the shared idle sweep) and its minimum pace (as Apache's mod_reqtimeout MinRate: slower than this on average after a grace, it is cut with 408, so a trickled upload cannot hold a connection and an upstream slot for hours). */
import { unwatch, watch, type Watched } from "../lib/idle-watch.ts";

/** MIN_BODY_RATE is the average a request body must keep, in bytes per second (Apache's default MinRate is 500). */
export const MIN_BODY_RATE = 500;
/** BODY_PACE_GRACE_MS is how long a body may go at any pace before its average counts. */
export const BODY_PACE_GRACE_MS = 10_000;

/** BodyPace measures one request body's pace; time the connection's reading was paused by us (the reader behind) does not count against the client. */
export class BodyPace {
  private readonly start: number;
  private paused = 0;
  private pausedAt = 0;

  constructor(now: number) {
    this.start = now;
  }

  /** pause and resume mark a pause of our own making (back-pressure), which does not count. */
  pause(now: number): void {
    if (this.pausedAt === 0) this.pausedAt = now;
  }
  resume(now: number): void {
    if (this.pausedAt === 0) return;
    this.paused += now - this.pausedAt;
    this.pausedAt = 0;
  }

  /** tooSlow says whether `bytes` received by `now` fall below the minimum average, the grace and our own pauses left out. */
  tooSlow(now: number, bytes: number): boolean {
    const active = now - this.start - this.paused - BODY_PACE_GRACE_MS;
    return active > 0 && bytes < (MIN_BODY_RATE * active) / 1000;
  }
}

/** BodyWatch is a connection's watch over its current request body: the gap between pieces and the pace; `late` runs when a gap is too long. */
export class BodyWatch {
  private readonly gap: Watched;
  private pace: BodyPace | undefined;

  constructor(late: () => void) {
    this.gap = { last: 0, limit: 0, expire: late };
  }

  /** limitMs is the longest gap allowed (body_timeout). */
  get limitMs(): number {
    return this.gap.limit;
  }

  /** start watches a body from now: gaps up to limitMs, and its pace. */
  start(limitMs: number): void {
    this.gap.limit = limitMs;
    this.gap.last = performance.now();
    watch(this.gap);
    this.pace = new BodyPace(this.gap.last);
  }

  /** again restarts the gap after a pause of our own making (the reader is behind). */
  again(): void {
    this.gap.last = performance.now();
    watch(this.gap);
  }

  /** piece notes a piece of the body at `now`. */
  piece(now: number): void {
    this.gap.last = now;
  }

  /** paused and resumed mark back-pressure, which does not count against the client's pace. */
  paused(): void {
    this.pace?.pause(performance.now());
  }
  resumed(): void {
    this.pace?.resume(performance.now());
  }

  /** tooSlow says whether the body, `bytes` of it received by `now`, fell below the minimum pace. */
  tooSlow(now: number, bytes: number): boolean {
    return this.pace?.tooSlow(now, bytes) === true;
  }

  /** stop ends the watch (the body ended, failed, or the connection closed); safe to call twice. */
  stop(): void {
    unwatch(this.gap);
    this.pace = undefined;
  }
}
