/** Active health checks: a GET to every endpoint of routes that configure one, on a jittered interval; thresholds of successes and failures in a row flip the endpoint's `healthy`. */
import type { HealthCheck } from "../config/types.ts";
import { healthChecks } from "../observability/gateway-metrics.ts";
import { log } from "../observability/log.ts";
import type { Endpoint } from "./endpoint.ts";

/** Checker runs one endpoint's checks until stopped. */
class Checker {
  private timer: Timer | undefined;
  private streak = 0; // > 0: successes in a row, < 0: failures in a row
  private stopped = false;

  constructor(
    readonly endpoint: Endpoint,
    readonly check: HealthCheck,
    readonly key: string,
  ) {}

  start(): void {
    // The first check comes soon, spread over the jitter so that many endpoints do not fire at once.
    this.schedule(Math.random() * Math.min(this.check.jitter, this.check.interval));
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
    const c = this.check;
    const e = this.endpoint;
    let ok = false;
    let detail: string;
    try {
      const res = await fetch(e.url + c.path, {
        headers: { "user-agent": "gatehouse-health-check", ...(c.host ? { host: c.host } : {}) },
        redirect: "manual",
        signal: AbortSignal.timeout(c.timeout),
        tls: c.tls,
      });
      await res.body?.cancel();
      ok = res.status >= c.expectMin && res.status <= c.expectMax;
      detail = `status ${res.status}`;
    } catch (err) {
      const name = (err as { code?: string }).code ?? (err as Error).name;
      detail = name === "TimeoutError" ? `no answer within ${c.timeout}ms` : String(name);
    }
    if (this.stopped) return;
    e.lastCheck = { time: Date.now(), ok, detail };
    healthChecks.labels(e.route, e.url, ok ? "ok" : "fail").value++;
    this.streak = ok ? Math.max(1, this.streak + 1) : Math.min(-1, this.streak - 1);
    if (e.healthy && this.streak <= -c.unhealthyThreshold) {
      e.healthy = false;
      e.lastError = `health check: ${detail}`;
      log.warn("upstream endpoint unhealthy; it gets no requests until its checks pass", {
        route: e.route,
        upstream: e.url,
        check: c.path,
        // The Host the checks send: an app that refuses it (Django's ALLOWED_HOSTS answers 400) is the usual reason.
        host: c.host ?? new URL(e.url).host,
        detail,
        failures: -this.streak,
      });
    } else if (!e.healthy && this.streak >= c.healthyThreshold) {
      e.healthy = true;
      e.upSince = performance.now();
      log.info("upstream endpoint healthy again", {
        route: e.route,
        upstream: e.url,
        check: c.path,
        host: c.host ?? new URL(e.url).host,
        successes: this.streak,
      });
    }
    const jitter = (Math.random() * 2 - 1) * c.jitter;
    this.schedule(Math.max(50, c.interval + jitter));
  }
}

/**
 * HealthChecks keeps one checker per endpoint that a live route checks; reconcile() after each swap starts, restarts (changed check) and stops them. Endpoint
 * state, healthy included, lives on the Endpoint and so survives reloads.
 */
export class HealthChecks {
  private readonly checkers = new Map<Endpoint, Checker>();

  /** reconcile makes the running checkers match `wanted` (endpoint → its route's check). */
  reconcile(wanted: ReadonlyMap<Endpoint, HealthCheck>): void {
    for (const [e, c] of this.checkers) {
      const w = wanted.get(e);
      if (w === undefined || JSON.stringify(w) !== c.key) {
        c.stop();
        this.checkers.delete(e);
        if (w === undefined) e.healthy = true; // no check any more: nothing says it is unhealthy
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
