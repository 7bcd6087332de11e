/** Upstream endpoints of [[tcp]] routes: state that outlives a reload (open connections, passive ejection, the health checks' verdict) and the round robin over them. */
import type { TcpUpstream } from "../config/types.ts";
import { log } from "../observability/log.ts";
import { Ejectable } from "../upstream/ejection.ts";

/** MAX_COOLDOWN_MS caps an ejection, which doubles with each failed connect in a row. */
const MAX_COOLDOWN_MS = 300_000;

/**
 * TcpEndpoint is one upstream address of one [[tcp]] route. The same object serves every generation that keeps the route's name and the URL, so it holds state
 * only; settings (timeouts, caps) come with each connection's route.
 */
export class TcpEndpoint extends Ejectable {
  /** open counts the connections to this endpoint open now and the connects in progress, a timed-out one until the kernel ends it (max_connections_per_upstream). */
  open = 0;

  constructor(
    readonly route: string,
    readonly url: string,
    readonly host: string,
    readonly port: number,
  ) {
    super();
  }

  /** failed ejects the endpoint after a failed connect, for a cool-down that doubles with each ejection in a row (an ejected one tried anyway stays as it was). */
  failed(now: number, cooldown: number, error: string): void {
    this.lastError = error;
    if (!this.startEjection(now, cooldown, MAX_COOLDOWN_MS)) return;
    log.warn("tcp upstream endpoint ejected", { route: this.route, upstream: this.url, cooldown_ms: Math.round(this.downUntil - now), error });
  }

  /** connected clears the ejection after a connect that worked. */
  connected(): void {
    if (this.ejections === 0) return;
    log.info("tcp upstream endpoint back", { route: this.route, upstream: this.url, ejections_in_a_row: this.endEjection() });
  }
}

/** TcpEndpointRegistry hands out TcpEndpoints by route name and URL, so that their state survives a reload; retain() forgets the ones no route uses. */
export class TcpEndpointRegistry {
  private readonly endpoints = new Map<string, TcpEndpoint>();

  /** get returns the endpoint of (route, upstream), creating it on first use; nothing of an existing one is changed. */
  get(route: string, u: TcpUpstream): TcpEndpoint {
    const key = `${route} ${u.url}`;
    let e = this.endpoints.get(key);
    if (e === undefined) this.endpoints.set(key, (e = new TcpEndpoint(route, u.url, u.host, u.port)));
    return e;
  }

  /** retain forgets the endpoints not in keep (once a new set of routes is live); connections open to them keep their object. */
  retain(keep: ReadonlySet<TcpEndpoint>): void {
    for (const [k, e] of this.endpoints) if (!keep.has(e)) this.endpoints.delete(k);
  }

  /**
   * describe lists the endpoints for the admin API's /upstreams (and so the status page), in the shape of the HTTP ones with kind "tcp": open connections
   * stand for in-flight requests, ejections in a row for failures in a row.
   */
  describe(now: number): unknown[] {
    return [...this.endpoints.values()].map((e) => ({
      kind: "tcp",
      route: e.route,
      upstream: e.url,
      available: e.available(now),
      healthy: e.healthy,
      open: e.open,
      inflight: e.open,
      consecutive_failures: e.ejections,
      ejected_for_ms: Math.max(0, Math.round(e.downUntil - now)),
      last_error: e.lastError ?? null,
      last_check: e.lastCheck ? { time: new Date(e.lastCheck.time).toISOString(), ok: e.lastCheck.ok, detail: e.lastCheck.detail } : null,
    }));
  }
}

/**
 * Balancer is one upstream list of a route (its upstreams, or a [[tcp.sni]] entry's) for one config: round robin over its endpoints, which DNS discovery may
 * replace. Its turn counter and its list are the only things it changes.
 */
export class Balancer {
  private turn = 0;

  constructor(private list: readonly TcpEndpoint[]) {}

  /** endpoints are the endpoints balanced now. */
  get endpoints(): readonly TcpEndpoint[] {
    return this.list;
  }

  /** set replaces the endpoints (DNS discovery found others); connections in progress keep the endpoint they have. */
  set(list: readonly TcpEndpoint[]): void {
    this.list = list;
  }

  /**
   * order lists the endpoints to try for one connection, next in turn first: the available ones under cap; when none is, every one under cap (an ejected
   * endpoint may be back, and a refused connect costs little).
   */
  order(now: number, cap: number): TcpEndpoint[] {
    const list = this.list;
    const n = list.length;
    if (n === 0) return [];
    const start = this.turn++ % n;
    const rotated: TcpEndpoint[] = [];
    for (let i = 0; i < n; i++) rotated.push(list[(start + i) % n]!);
    const open = rotated.filter((e) => e.open < cap);
    const ready = open.filter((e) => e.available(now));
    return ready.length > 0 ? ready : open;
  }
}
