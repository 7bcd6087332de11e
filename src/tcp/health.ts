/** Active health checks of [[tcp]] upstreams: a TCP connect to every endpoint of routes with [tcp.health], on a jittered interval; results in a row flip the endpoint's `healthy`. */
import type { TcpHealth } from "../config/types.ts";
import { log } from "../observability/log.ts";
import { connectOnce } from "./connect.ts";
import type { TcpEndpoint } from "./endpoints.ts";

/** Checker runs one endpoint's checks until stopped. */
class Checker {
  private timer: Timer | undefined;
  private streak = 0; // > 0: successes in a row, < 0: failures in a row
  private stopped = false;

  constructor(
    readonly endpoint: TcpEndpoint,
    readonly check: TcpHealth,
    readonly key: string,
  ) {}

  start(): void {
    this.schedule(Math.random() * Math.min(1000, this.check.interval));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.run(), delay);
    this.timer.unref?.();
  }

  private async run(): Promise<void> {
    const e = this.endpoint;
    const c = this.check;
    let ok = false;
    let detail = "connected";
    try {
      (await connectOnce(e.host, e.port, c.timeout)).end();
      ok = true;
    } catch (err) {
      detail = (err as Error).message;
    }
    if (this.stopped) return;
    e.lastCheck = { time: Date.now(), ok, detail };
    this.streak = ok ? Math.max(1, this.streak + 1) : Math.min(-1, this.streak - 1);
    if (e.healthy && this.streak <= -c.unhealthyThreshold) {
      e.healthy = false;
      e.lastError = `health check: ${detail}`;
      log.warn("tcp upstream endpoint unhealthy; it gets no connections until its checks pass", { route: e.route, upstream: e.url, detail });
    } else if (!e.healthy && this.streak >= c.healthyThreshold) {
      e.healthy = true;
      log.info("tcp upstream endpoint healthy again", { route: e.route, upstream: e.url });
    }
    this.schedule(Math.max(50, c.interval * (0.9 + Math.random() * 0.2)));
  }
}

/** TcpHealthChecks keeps one checker per endpoint that a live route checks; reconcile() after each change starts, restarts and stops them. */
export class TcpHealthChecks {
  private readonly checkers = new Map<TcpEndpoint, Checker>();

  /** reconcile makes the running checkers match wanted (endpoint → its route's check); an endpoint no longer checked is healthy again. */
  reconcile(wanted: ReadonlyMap<TcpEndpoint, TcpHealth>): void {
    for (const [e, c] of this.checkers) {
      const w = wanted.get(e);
      if (w === undefined || JSON.stringify(w) !== c.key) {
        c.stop();
        this.checkers.delete(e);
        if (w === undefined) e.healthy = true;
      }
    }
    for (const [e, check] of wanted) {
      if (this.checkers.has(e)) continue;
      const c = new Checker(e, check, JSON.stringify(check));
      this.checkers.set(e, c);
      c.start();
    }
  }

  /** stopAll ends every checker (shutdown). */
  stopAll(): void {
    for (const c of this.checkers.values()) c.stop();
    this.checkers.clear();
  }
}
