/** Endpoint state that outlives a config generation: in-flight count, passive ejection (cool-down), the active health verdict, last error. */
import { forgetEndpoint, upstreamDuration, upstreamEjections, upstreamRequests } from "../observability/gateway-metrics.ts";
import type { Cell, HistogramCell } from "../observability/metrics.ts";
import { log } from "../observability/log.ts";
import type { H1Pool } from "./h1-client.ts";
import { acquirePool, releasePool } from "./h1-pools.ts";
import { Ejectable } from "./ejection.ts";
import { hash32 } from "../lib/hash.ts";

/**
 * Endpoint is one upstream address of one route; the same object is handed to every generation that keeps that route and URL, so it holds state only: a
 * generation's settings for it (TLS, Host, weight) are in its Target.
 */
export class Endpoint extends Ejectable {
  inflight = 0;
  consecutiveFailures = 0;
  /**
   * upSince is when (ms, performance.now) the endpoint last started taking requests: created, back from ejection, healthy again (slow start counts from it).
   */
  upSince = performance.now();

  /** latency is this endpoint's cell of gatehouse_upstream_response_seconds, looked up once. */
  readonly latency: HistogramCell;

  private readonly outcomes = new Map<string, Cell>();

  /** count adds one attempt with this outcome to gatehouse_upstream_requests_total: a Map hit on the endpoint, no label join on the request path. */
  count(outcome: string): void {
    let c = this.outcomes.get(outcome);
    if (c === undefined) this.outcomes.set(outcome, (c = upstreamRequests.labels(this.route, this.url, outcome)));
    c.value++;
  }

  /** urlHash seeds consistent hashing for this endpoint (computed once). */
  readonly urlHash: number;
  /** websockets counts open WebSockets, which hold `inflight` but do not count against max_inflight. */
  websockets = 0;

  /** h1 is the pool of kept-alive connections to a plain-HTTP endpoint's address, shared with other routes that name it (undefined for https://, which goes through fetch). */
  readonly h1: H1Pool | undefined;

  constructor(
    readonly route: string,
    readonly url: string,
  ) {
    super();
    this.h1 = acquirePool(url);
    this.latency = upstreamDuration.labels(route, url);
    this.urlHash = hash32(url, 7) * 4294967296;
  }

  /** markDown ejects the endpoint at once (a refused connection: nothing reached it), for a cool-down that doubles with each ejection in a row, up to max. */
  markDown(now: number, cooldown: number, max: number, error: string): void {
    this.consecutiveFailures++;
    this.eject(now, cooldown, max, error);
  }

  /** markFailed counts an error or timeout; after maxFails in a row the endpoint is ejected like markDown. */
  markFailed(now: number, maxFails: number, cooldown: number, max: number, error: string): void {
    this.lastError = error;
    if (++this.consecutiveFailures >= maxFails) this.eject(now, cooldown, max, error);
  }

  private eject(now: number, cooldown: number, max: number, error: string): void {
    this.lastError = error;
    // Already ejected (tried anyway by the pool's fallback): the ejection is logged once.
    if (!this.startEjection(now, cooldown, max)) return;
    this.upSince = this.downUntil; // slow start counts from the end of the cool-down
    upstreamEjections.labels(this.route, this.url).value++;
    log.warn("upstream endpoint ejected", {
      route: this.route,
      upstream: this.url,
      cooldown_ms: Math.round(this.downUntil - now),
      ejections_in_a_row: this.ejections,
      error,
    });
  }

  /** markUp clears the failure counts after a response. */
  markUp(): void {
    if (this.consecutiveFailures === 0 && this.ejections === 0) return;
    this.consecutiveFailures = 0;
    const ended = this.endEjection();
    if (ended !== 0) log.info("upstream endpoint back", { route: this.route, upstream: this.url, ejections_in_a_row: ended });
  }
}

/** EndpointRegistry hands out Endpoints by route and URL, so health and load survive a reload. */
export class EndpointRegistry {
  private readonly endpoints = new Map<string, Endpoint>();

  /** get returns the endpoint for (route, url), creating it on first use. */
  get(route: string, url: string): Endpoint {
    const key = `${route} ${url}`;
    let e = this.endpoints.get(key);
    if (!e) {
      e = new Endpoint(route, url);
      this.endpoints.set(key, e);
    }
    return e;
  }

  /** retain forgets endpoints not in keep (after a new generation is live); requests in flight still hold theirs. */
  retain(keep: ReadonlySet<Endpoint>): Endpoint[] {
    const dropped: Endpoint[] = [];
    for (const [k, e] of this.endpoints) {
      if (!keep.has(e)) {
        this.endpoints.delete(k);
        forgetEndpoint(e.route, e.url);
        if (e.h1 !== undefined) releasePool(e.h1);
        dropped.push(e);
      }
    }
    return dropped;
  }

  /** describe lists every endpoint for the admin API: route, URL, whether it takes requests, health, in-flight requests, ejection and the last error. */
  describe(now: number): unknown[] {
    return [...this.endpoints.values()].map((e) => ({
      route: e.route,
      upstream: e.url,
      available: e.available(now),
      healthy: e.healthy,
      inflight: e.inflight,
      ejected_for_ms: Math.max(0, Math.round(e.downUntil - now)),
      consecutive_failures: e.consecutiveFailures,
      last_error: e.lastError ?? null,
      last_check: e.lastCheck ? { time: new Date(e.lastCheck.time).toISOString(), ok: e.lastCheck.ok, detail: e.lastCheck.detail } : null,
    }));
  }

  /** all lists the endpoints known now. */
  all(): IterableIterator<Endpoint> {
    return this.endpoints.values();
  }
}
