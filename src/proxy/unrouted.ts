/** Metrics for requests that matched no route (unknown or invalid Host, no path route), under the fixed route label "-". */
import { statsFor, type RouteStats } from "../observability/gateway-metrics.ts";

/** UNROUTED is the route label of requests no route took; one value, so the label set stays bounded whatever Host headers arrive. */
export const UNROUTED = "-";

let stats: RouteStats | undefined;

/** unroutedStats returns the stats cell set for UNROUTED. */
export function unroutedStats(): RouteStats {
  return (stats ??= statsFor(UNROUTED));
}
