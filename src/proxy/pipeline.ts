/** The request pipeline: the phases of one request, named and run in this one place, for whichever front end made its context. */

/*
 * The phases, in order (Pingora's model), over one RequestContext:
 * 1. request_filter: routing (request-filter.ts: ACME HTTP-01 answers, Host → site → route, the redirect to HTTPS),
 *    then the route's own filters (`CompiledRoute.filters`: access rules, rate limits), in order;
 * 2. the route's answer (`CompiledRoute.handle`): for a proxy route the cache phase (cache-phase.ts), then
 *    upstream_peer (the pool's choice) and upstream_request_filter (the upstream's request head) in forward.ts;
 *    or a static file, or a redirect; an upgrade goes to upgrade.ts instead (a byte pipe after the upstream's 101), or on
 *    Bun.serve's listeners a WebSocket to websocket.ts;
 * 3. response_filter: the route's response filters (`CompiledRoute.responseFilters`: HSTS), on its errors too;
 * 4. logging (logging.ts): metrics and one access-log line, once, when the response has ended.
 * An answer from routing goes straight to logging; one from a route's filters or the route itself goes through response_filter
 * first. Every error becomes the gateway's own response through failWith (errors.ts).
 */

import type { Answered } from "../lib/reply.ts";
import type { CompiledRoute, HandlerView, RequestContext, RequestFilter } from "./context.ts";
import { failWith } from "./errors.ts";
import { delivered } from "./logging.ts";
import { routeRequest } from "./request-filter.ts";
import { challengeRoute } from "./unrouted.ts";
import { proxyUpgrade, upgradeOf } from "./upgrade.ts";
import { isWebSocketUpgrade, proxyWebSocket } from "./websocket.ts";

/** Out is what the pipeline answers: a Reply or Response, or (a WebSocket or byte pipe took the connection) undefined. */
export type Out = Answered | Promise<Answered | undefined>;

/** filterResponse runs the response_filter phase on what the route answered, then hands it over to logging. */
function filterResponse(ctx: RequestContext, route: CompiledRoute, res: Answered): Answered {
  const filters = route.responseFilters;
  if (filters.length !== 0) {
    const original = res;
    for (const f of filters) res = f(ctx, res);
    // A filter that replaced the response passes the streamed body on with it: its end still ends the request.
    if (original === ctx.streamed) ctx.streamed = res;
  }
  delivered(ctx, res);
  return res;
}

/** refuseEarly answers a request its front end found malformed before any phase ran (a path that cannot be normalized), through logging. */
export function refuseEarly(ctx: RequestContext, err: unknown): Answered {
  return early(ctx, failWith(ctx, err));
}

/** early hands over an answer made before any route phase ran (request_filter). */
function early(ctx: RequestContext, res: Answered): Answered {
  delivered(ctx, res);
  return res;
}

/** answer runs the route's own phase, or upgrades a WebSocket. */
function answer(ctx: RequestContext, route: CompiledRoute): Out {
  try {
    if (route.proxy !== undefined) {
      // A front end that owns its connections pipes any upgrade after the upstream's 101; Bun.serve's carries WebSockets only.
      const protocol = ctx.downstream.pipe !== undefined ? upgradeOf(ctx) : undefined;
      if (protocol !== undefined)
        return proxyUpgrade(ctx, route.proxy, protocol).then(
          (r) => (r === undefined ? undefined : filterResponse(ctx, route, r)),
          (e) => filterResponse(ctx, route, failWith(ctx, e)),
        );
      if (ctx.downstream.pipe === undefined && isWebSocketUpgrade(ctx)) return proxyWebSocket(ctx, route.proxy).catch((e) => early(ctx, failWith(ctx, e)));
    }
    const res = route.handle(ctx);
    if (res instanceof Promise)
      return res.then(
        (r) => filterResponse(ctx, route, r),
        (e) => filterResponse(ctx, route, failWith(ctx, e)),
      );
    return filterResponse(ctx, route, res);
  } catch (e) {
    return filterResponse(ctx, route, failWith(ctx, e));
  }
}

/** filtered runs the route's request filters from index i; the first answer goes out through response_filter, else the route answers. */
function filtered(ctx: RequestContext, route: CompiledRoute, filters: readonly RequestFilter[], i: number): Out {
  for (; i < filters.length; i++) {
    let r: ReturnType<RequestFilter>;
    try {
      r = filters[i]!(ctx);
    } catch (e) {
      return filterResponse(ctx, route, failWith(ctx, e));
    }
    if (r instanceof Promise) {
      const next = i + 1;
      return r.then(
        (res) => (res === undefined ? filtered(ctx, route, filters, next) : filterResponse(ctx, route, res)),
        (e) => filterResponse(ctx, route, failWith(ctx, e)),
      );
    }
    if (r !== undefined) return filterResponse(ctx, route, r);
  }
  return answer(ctx, route);
}

/** runPipeline runs the phases for a context a front end made (its view taken once, for the whole request); undefined once a WebSocket took the connection. */
export function runPipeline(ctx: RequestContext, v: HandlerView): Out {
  // An HTTP-01 token another node publishes in shared storage: looked up there when this node does not hold it (only for paths that can be a token).
  if (ctx.scheme === "http") {
    const found = v.challenges.lookup(ctx.path);
    if (found !== undefined)
      return found.then((r) => {
        if (r === undefined) return route(ctx, v);
        ctx.route = challengeRoute();
        return early(ctx, r);
      });
  }
  return route(ctx, v);
}

/** route runs request_filter's routing, then the route's phases. */
function route(ctx: RequestContext, v: HandlerView): Out {
  const routed = routeRequest(ctx, v);
  if (routed !== undefined) return early(ctx, routed);
  const route = ctx.route!;
  return route.filters.length === 0 ? answer(ctx, route) : filtered(ctx, route, route.filters, 0);
}
