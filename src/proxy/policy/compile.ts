/** A route's policy compiled into pipeline phases: its request filters in their order, and its response filters. */
import type { PathRoute, SiteConfig } from "../../config/types.ts";
import { accessDenied, rateLimited } from "../../observability/gateway-metrics.ts";
import type { RequestFilter, ResponseFilter } from "../context.ts";
import { accessFilter } from "./access.ts";
import { basicAuthFilter } from "./basic-auth.ts";
import { acquireBuckets } from "./bucket-registry.ts";
import { errorPagesFilter, maintenanceFilter } from "./error-pages.ts";
import { forwardAuthFilter } from "./forward-auth.ts";
import { requestRulesFilter, responseRulesFilter } from "./header-rules.ts";
import { rateLimitFilter } from "./rate-limit.ts";

/** PolicyPhases are a route's policy steps of request_filter and response_filter. */
export type PolicyPhases = { readonly filters: readonly RequestFilter[]; readonly responseFilters: readonly ResponseFilter[] };

/**
 * policyPhases compiles a route's policy and its site's pages. Request filters run cheapest and most final first: maintenance, IP rules (a denied client
 * spends no tokens), rate limits (before any password check, so guessing is limited too), basic auth, forward auth, then the request's header rules. Response
 * filters: the error page first, then the response's header rules (which see the page), then the site's own (`siteFilters`: HSTS). `keep` receives what to
 * release when the generation goes (the rate limits' hold on their buckets).
 */
export function policyPhases(route: PathRoute, site: SiteConfig, siteFilters: readonly ResponseFilter[], keep: (release: () => void) => void): PolicyPhases {
  const p = route.policy;
  const pages = site.pages;
  // Limits a [[paths]] entry inherits are the site's: one set of buckets for the whole site, whichever prefix a request takes.
  const owner = p.rateLimits === site.routes[0]!.policy.rateLimits ? site.routes[0]!.name : route.name;
  const filters: (RequestFilter | undefined)[] = [maintenanceFilter(pages)];
  if (p.access) filters.push(accessFilter(p.access, accessDenied.labels(route.name, "ip")));
  if (p.rateLimits.length > 0) {
    const sets = p.rateLimits.map((l, i) => {
      const held = acquireBuckets(owner, l, i);
      keep(held.release);
      return held.buckets;
    });
    filters.push(rateLimitFilter(sets, rateLimited.labels(route.name)));
  }
  if (p.basicAuth) filters.push(basicAuthFilter(p.basicAuth, accessDenied.labels(route.name, "basic_auth")));
  if (p.forwardAuth) filters.push(forwardAuthFilter(p.forwardAuth, accessDenied.labels(route.name, "forward_auth")));
  if (p.headers) filters.push(requestRulesFilter(p.headers));
  const responseFilters = [errorPagesFilter(pages), p.headers ? responseRulesFilter(p.headers) : undefined, ...siteFilters];
  return {
    filters: filters.filter((f): f is RequestFilter => f !== undefined),
    responseFilters: responseFilters.filter((f): f is ResponseFilter => f !== undefined),
  };
}
