/** The request_filter phase's first steps, before any route runs: CONNECT refused, ACME HTTP-01 answers, Host → site → route (400, 421, 404), the redirect to HTTPS, TRACE unless the route allows it. */
import type { Answered } from "../lib/reply.ts";
import { CHALLENGE_PREFIX } from "../tls/acme/http01.ts";
import type { HandlerView, RequestContext } from "./context.ts";
import { failWith, GatewayError } from "./errors.ts";
import { HOST_INVALID } from "./router.ts";
import { challengeRoute } from "./unrouted.ts";

/** ALLOW is the Allow field of a 405 for CONNECT or TRACE: the methods a route may be asked (RFC 9110 §10.2.1). */
const ALLOW = { allow: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS" };

/**
 * routeRequest finds the request's route (ctx.route) in the view, or answers it: a challenge token, a bad or unknown Host, a redirect to HTTPS, an unknown
 * path. A few Map hits; undefined when the route's phases should run.
 */
export function routeRequest(ctx: RequestContext, v: HandlerView): Answered | undefined {
  const { scheme, path } = ctx;
  // A gateway is no forward proxy: CONNECT is answered here, never sent on (RFC 9110 §9.3.6).
  if (ctx.method === "CONNECT") return failWith(ctx, new GatewayError(405, "CONNECT is not served here", "downstream"), ALLOW);
  if (scheme === "http") {
    // RFC 8555 §8.3: the CA fetches the key authorization over plain HTTP, whatever the site does.
    const challenge = v.challenges.answer(path);
    if (challenge !== undefined) {
      // Counted and logged under a route of their own, not among the unrouted requests.
      ctx.route = challengeRoute();
      return challenge;
    }
  }
  const site = v.router.lookup(ctx.host);
  if (site === HOST_INVALID) return failWith(ctx, new GatewayError(400, "invalid Host header", "downstream"));
  if (site === undefined || (scheme === "https" && !site.secure)) {
    // RFC 9110 §15.5.20: over TLS the connection was made for a name we do not serve.
    return failWith(
      ctx,
      scheme === "https" ? new GatewayError(421, "no site for this host", "downstream") : new GatewayError(404, "no site for this host", "downstream"),
    );
  }
  // RFC 9110 §7.4: a TLS connection is for the site its handshake named; a request for another site on it is misdirected (a certificate for one
  // name must not carry requests for another that the client never checked it against).
  if (scheme === "https") {
    const sni = ctx.downstream.tlsName(ctx);
    // The router's lookup is a memoised Map hit, normalizing as it does for Host: no string work of our own.
    if (sni !== undefined && (sni === "" || v.router.lookup(sni) !== site))
      return failWith(ctx, new GatewayError(421, "this connection was made for another site (its TLS server name)", "downstream"));
  }
  const route = site.lookup(path);
  if (scheme === "http" && site.redirectHttps && !path.startsWith(CHALLENGE_PREFIX)) {
    // The Host passed the router's check (a name or bracketed address, an optional port), so it is safe in Location.
    ctx.route = route;
    const colon = ctx.host.lastIndexOf(":");
    const host = colon > ctx.host.lastIndexOf("]") ? ctx.host.slice(0, colon) : ctx.host;
    return new Response(null, { status: 308, headers: { location: `https://${host}${v.httpsPortSuffix}${path}${ctx.query}`, "x-request-id": ctx.id } });
  }
  if (route === undefined) {
    const res = failWith(ctx, new GatewayError(404, "no route for this path", "downstream"));
    return site.pages === undefined ? res : site.pages(ctx, res);
  }
  ctx.route = route;
  // TRACE echoes the request, credentials included (RFC 9110 §9.3.8): only a route that asks for it gets it.
  if (ctx.method === "TRACE" && !route.allowTrace) return failWith(ctx, new GatewayError(405, "TRACE is not allowed on this route", "downstream"), ALLOW);
  return undefined;
}
