/** Metrics for requests that matched no route (unknown or invalid Host, no path route), under the fixed route label "-", and for the ACME answers, under their own. */
import { statsFor, type RouteStats } from "../observability/gateway-metrics.ts";
import type { CompiledRoute } from "./context.ts";

/** UNROUTED is the route label of requests no route took; one value, so the label set stays bounded whatever Host headers arrive. */
export const UNROUTED = "-";
/** CHALLENGES is the route label of the CA's HTTP-01 requests that the gateway answers itself, before any site's route. */
export const CHALLENGES = "acme-challenge";

let stats: RouteStats | undefined;
let challenges: CompiledRoute | undefined;

/** unroutedStats returns the stats cell set for UNROUTED. */
export function unroutedStats(): RouteStats {
  return (stats ??= statsFor(UNROUTED));
}

/** challengeRoute is the route an answered HTTP-01 request is logged and counted under (made on first use, so its series appear with the first answer). */
export function challengeRoute(): CompiledRoute {
  challenges ??= {
    name: CHALLENGES,
    prefix: "/.well-known/acme-challenge",
    stats: statsFor(CHALLENGES),
    maxBodySize: 0,
    allowTrace: false,
    proxy: undefined,
    filters: [],
    handle: () => {
      throw new Error("the ACME challenge route answers in request_filter");
    },
    responseFilters: [],
  };
  return challenges;
}
