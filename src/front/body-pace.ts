/** The minimum pace of a request body (as Apache's mod_reqtimeout MinRate): a client that sends a body slower than this, on average after a grace, is cut with 408, so a trickled upload cannot hold a connection and an upstream slot for hours. */

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
