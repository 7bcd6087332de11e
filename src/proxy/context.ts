/** The per-request context that every phase reads and writes, and the route shape the pipeline dispatches to. */
import type { Server } from "bun";
import type { ProxyOptions } from "../config/types.ts";
import type { RouteStats } from "../observability/gateway-metrics.ts";
import type { Pool } from "../upstream/pool.ts";

/** ProxyTarget is a compiled proxy route: its pool and forwarding settings. */
export type ProxyTarget = {
  readonly pool: Pool;
  readonly options: ProxyOptions;
  readonly stripPrefix: string | undefined;
  /** requestIdleSeconds is set when this route's timeouts outlast the listener's idle timeout, so the request's own idle timeout must be raised. */
  readonly requestIdleSeconds: number | undefined;
};

/** CompiledRoute is one route of a site, ready to answer: its handler, stats and limits. */
export type CompiledRoute = {
  readonly name: string;
  readonly prefix: string;
  readonly stats: RouteStats;
  readonly maxBodySize: number;
  readonly proxy: ProxyTarget | undefined;
  readonly handle: (ctx: RequestContext) => Response | Promise<Response>;
};

/** Site is a compiled route file: its routes by path prefix, and how it is served over TLS. */
export type Site = {
  readonly name: string;
  lookup(path: string): CompiledRoute | undefined;
  /** secure is true for sites with TLS; others get 421 on the HTTPS listener. */
  readonly secure: boolean;
  /** redirectHttps is set when plain HTTP requests get a 308 to HTTPS. */
  readonly redirectHttps: boolean;
  /** hsts is the Strict-Transport-Security value for HTTPS responses, when the site has one. */
  readonly hsts: string | undefined;
};

/** Hop is how this gateway describes itself and judges clients: Via pseudonym, trusted proxies. */
export type Hop = { readonly via: string; readonly trusted: (ip: string) => boolean };

/** RequestContext travels through the phases of one request; `finish` must be called exactly once, when the response has ended. */
export type RequestContext = {
  readonly req: Request;
  readonly server: Server<unknown>;
  readonly id: string;
  readonly start: number;
  /** peer caches clientOf(ctx): the peer address costs a fifth of a cache hit in Bun (an object per lookup), so it is read on first use only. */
  peer: string | undefined;
  readonly scheme: "http" | "https";
  readonly host: string;
  readonly path: string;
  readonly query: string;
  readonly hop: Hop;
  route: CompiledRoute | undefined;
  upstream: string | undefined;
  upstreamMs: number;
  bytesIn: number;
  finished: boolean;
  error: string | undefined;
  /** hold and held: see finish(); set by the cache phase around the upstream exchange. */
  hold: boolean;
  held: { readonly status: number; readonly bytesOut: number; readonly problem: string | undefined } | undefined;
  /** cache is the Cache-Status result for the access log (hit, miss, stale, revalidated, bypass). */
  cache: string | undefined;
};

/** clientOf is the address of the connecting peer (not X-Forwarded-For), looked up once per request on first use. */
export function clientOf(ctx: RequestContext): string {
  return (ctx.peer ??= ctx.server.requestIP(ctx.req)?.address ?? "");
}
