/** The request pipeline's entry: request id, Host routing, path routing, then the route's handler; every error becomes the gateway's own response in one place. */
import type { Server } from "bun";
import { log } from "../observability/log.ts";
import type { Hop, RequestContext, Site } from "./context.ts";
import { errorResponse, GatewayError } from "./errors.ts";
import { finish } from "./finish.ts";
import { requestId } from "./request-id.ts";
import { HOST_INVALID, type HostRouter } from "./router.ts";
import { answerChallenge, CHALLENGE_PREFIX } from "../acme/http01.ts";
import { isWebSocketUpgrade, proxyWebSocket } from "./websocket.ts";

/** HandlerView is the part of a config generation the pipeline reads; one is taken per request, so a reload never changes a request's config midway. */
export type HandlerView = { readonly router: HostRouter<Site>; readonly hop: Hop; readonly httpsPortSuffix: string };

/** failWith turns any error into the response the client gets, and finishes the request. */
export function failWith(ctx: RequestContext, err: unknown): Response {
  if (err instanceof GatewayError) {
    ctx.error = err.detail ?? err.message;
    finish(ctx, err.status, 0, ctx.error);
    // 499 is for the log: the client has gone and will read nothing.
    if (err.status === 499) return new Response(null, { status: 499 });
    return errorResponse(err.status, err.message, ctx.id);
  }
  log.error("request failed", { request_id: ctx.id, route: ctx.route?.name, error: String((err as Error)?.stack ?? err) });
  finish(ctx, 500, 0, String(err));
  return errorResponse(500, "internal error", ctx.id);
}

function finishWith(ctx: RequestContext, res: Response): Response {
  finish(ctx, res.status, 0, undefined);
  return res;
}

/** withHsts adds Strict-Transport-Security (RFC 6797 §7.1) to what a route of an HTTPS site answers, its errors included. */
function withHsts(res: Response | Promise<Response>, value: string, ctx: RequestContext): Response | Promise<Response> {
  if (!(res instanceof Promise)) {
    res.headers.set("strict-transport-security", value);
    return res;
  }
  return res.then(
    (r) => withHsts(r, value, ctx),
    (e) => withHsts(failWith(ctx, e), value, ctx),
  );
}

function splitTarget(url: string): [string, string] {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return ["/", ""];
  const q = url.indexOf("?", start);
  return q < 0 ? [url.slice(start), ""] : [url.slice(start, q), url.slice(q)];
}

/** createFetchHandler builds the Bun.serve fetch handler of a public listener; `view` returns the live generation's view. */
export function createFetchHandler(view: () => HandlerView, scheme: "http" | "https") {
  return function handle(req: Request, server: Server<unknown>): Response | Promise<Response | undefined> {
    const v = view();
    const [path, query] = splitTarget(req.url);
    const ctx: RequestContext = {
      req,
      server,
      id: requestId(req.headers.get("x-request-id")),
      start: performance.now(),
      peer: undefined,
      scheme,
      host: req.headers.get("host") ?? "",
      path,
      query,
      hop: v.hop,
      route: undefined,
      upstream: undefined,
      upstreamMs: 0,
      bytesIn: 0,
      finished: false,
      error: undefined,
      hold: false,
      held: undefined,
      cache: undefined,
    };
    if (scheme === "http") {
      // RFC 8555 §8.3: the CA fetches the key authorization over plain HTTP, whatever the site does.
      const challenge = answerChallenge(path);
      if (challenge !== undefined) return finishWith(ctx, challenge);
    }
    const site = v.router.lookup(ctx.host);
    if (site === HOST_INVALID) return failWith(ctx, new GatewayError(400, "invalid Host header", "downstream"));
    if (site === undefined || (scheme === "https" && !site.secure)) {
      // RFC 9110 §15.5.20: over TLS the connection was made for a name we do not serve.
      return failWith(ctx, scheme === "https" ? new GatewayError(421, "no site for this host", "downstream") : new GatewayError(404, "no site for this host", "downstream"));
    }
    const route = site.lookup(path);
    if (scheme === "http" && site.redirectHttps && !path.startsWith(CHALLENGE_PREFIX)) {
      // The Host passed the router's check (a name or bracketed address, an optional port), so it is safe in Location.
      ctx.route = route;
      const colon = ctx.host.lastIndexOf(":");
      const host = colon > ctx.host.lastIndexOf("]") ? ctx.host.slice(0, colon) : ctx.host;
      return finishWith(ctx, new Response(null, { status: 308, headers: { location: `https://${host}${v.httpsPortSuffix}${path}${query}`, "x-request-id": ctx.id } }));
    }
    if (route === undefined) return failWith(ctx, new GatewayError(404, "no route for this path", "downstream"));
    ctx.route = route;
    try {
      if (route.proxy !== undefined && isWebSocketUpgrade(req)) return proxyWebSocket(ctx, route.proxy).catch((e) => failWith(ctx, e));
      const res = route.handle(ctx);
      if (site.hsts !== undefined && scheme === "https") return withHsts(res, site.hsts, ctx);
      return res instanceof Promise ? res.catch((e) => failWith(ctx, e)) : res;
    } catch (e) {
      return failWith(ctx, e);
    }
  };
}
