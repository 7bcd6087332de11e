/** The metric cells of one [[tcp]] route, looked up once per route name and kept across reloads, so counting bytes is an addition. */
import type { Cell } from "../observability/metrics.ts";
import { tcpBytes, tcpConnections, tcpOpen, tcpRefused, tcpUpstreamFailures } from "../observability/gateway-metrics.ts";

/** REFUSALS are the reasons of gatehouse_tcp_refused_total: a fixed set, so the label stays bounded. */
export type Refusal = "no_upstream" | "no_sni_match" | "handshake" | "limit";
const REFUSALS: readonly Refusal[] = ["no_upstream", "no_sni_match", "handshake", "limit"];

/** TcpStats are one route's series; all of them appear with the route, at zero. */
export class TcpStats {
  readonly accepted: Cell;
  readonly open: Cell;
  readonly bytesIn: Cell;
  readonly bytesOut: Cell;
  readonly upstreamFailures: Cell;
  private readonly refusals = new Map<Refusal, Cell>();

  constructor(readonly route: string) {
    this.accepted = tcpConnections.labels(route);
    this.open = tcpOpen.labels(route);
    this.bytesIn = tcpBytes.labels(route, "in");
    this.bytesOut = tcpBytes.labels(route, "out");
    this.upstreamFailures = tcpUpstreamFailures.labels(route);
    for (const r of REFUSALS) this.refusals.set(r, tcpRefused.labels(route, r));
  }

  /** refused counts one connection closed before it reached an upstream. */
  refused(reason: Refusal): void {
    this.refusals.get(reason)!.value++;
  }
}

const byRoute = new Map<string, TcpStats>();

/** tcpStatsFor returns the route's stats, the same object while the name stays. */
export function tcpStatsFor(route: string): TcpStats {
  let s = byRoute.get(route);
  if (s === undefined) byRoute.set(route, (s = new TcpStats(route)));
  return s;
}

/** forgetTcpRoutes drops the series of routes not in keep, but never those of a route with connections still open (their gauge must come back to 0). */
export function forgetTcpRoutes(keep: ReadonlySet<string>): void {
  for (const [name, s] of byRoute) {
    if (keep.has(name) || s.open.value > 0) continue;
    byRoute.delete(name);
    const other = (v: readonly string[]) => v[0] !== name;
    for (const m of [tcpConnections, tcpOpen, tcpBytes, tcpUpstreamFailures, tcpRefused]) m.retain(other);
  }
}
