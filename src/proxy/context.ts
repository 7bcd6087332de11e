/** The per-request context that every phase reads and writes, and the route shape the pipeline dispatches to. */
import type { CancelSignal } from "../lib/cancel.ts";
import type { ProxyOptions } from "../config/types.ts";
import type { Fields } from "../lib/fields.ts";
import type { Answered } from "../lib/reply.ts";
import type { RouteStats } from "../observability/gateway-metrics.ts";
import type { Http01Tokens } from "../tls/acme/http01.ts";
import type { Tunnel } from "../upstream/h1-upgrade.ts";
import type { Pool } from "../upstream/pool.ts";
import { requestId } from "./request-id.ts";
import type { HostRouter } from "./router.ts";

/** ProxyRoute is a compiled proxy route: its pool and forwarding settings. */
export type ProxyRoute = {
  readonly pool: Pool;
  readonly options: ProxyOptions;
  readonly stripPrefix: string | undefined;
  /** requestBuffer ([limits] request_buffer): request bodies up to this are read whole before an endpoint is chosen. */
  readonly requestBuffer: number;
  /** requestIdleSeconds is set when this route's timeouts outlast the listener's idle timeout, so the request's own idle timeout must be raised. */
  readonly requestIdleSeconds: number | undefined;
};

/** RequestFilter is a step of the request_filter phase: it answers the request itself (a redirect, a refusal) or returns undefined to let it go on. */
export type RequestFilter = (ctx: RequestContext) => Answered | undefined | Promise<Answered | undefined>;

/**
 * Answer is a route's own phase, which makes the response: for a proxy route the cache phase, then upstream_peer and upstream_request_filter (forward); or a
 * static file, or a redirect. It sets ctx.bytesOut for what it answers, and ctx.streamed when the body still flows.
 */
export type Answer = (ctx: RequestContext) => Answered | Promise<Answered>;

/** ResponseFilter is a step of the response_filter phase: it edits the response on its way to the client (HSTS, header rules) and returns it. */
export type ResponseFilter = (ctx: RequestContext, res: Answered) => Answered;

/** CompiledRoute is one route of a site, ready to answer: its phases, stats and limits. */
export type CompiledRoute = {
  readonly name: string;
  readonly prefix: string;
  readonly stats: RouteStats;
  readonly maxBodySize: number;
  /** allowTrace: TRACE requests reach this route; otherwise they get 405. */
  readonly allowTrace: boolean;
  readonly proxy: ProxyRoute | undefined;
  /** filters run in the request_filter phase, once the route is known, in order; the first answer ends the request. */
  readonly filters: readonly RequestFilter[];
  readonly handle: Answer;
  /** responseFilters run in the response_filter phase on whatever the route answered, its errors included. */
  readonly responseFilters: readonly ResponseFilter[];
};

/** Site is a compiled route file: its routes by path prefix, and how it is served over TLS. */
export type Site = {
  readonly name: string;
  lookup(path: string): CompiledRoute | undefined;
  /** secure is true for sites with TLS; others get 421 on the HTTPS listener. */
  readonly secure: boolean;
  /** redirectHttps is set when plain HTTP requests get a 308 to HTTPS. */
  readonly redirectHttps: boolean;
  /** pages puts the site's error page into the answers made before a route is known (404 for an unrouted path). */
  readonly pages: ResponseFilter | undefined;
};

/** Hop is how this gateway describes itself and judges clients: Via pseudonym, trusted proxies. */
export type Hop = { readonly via: string; readonly trusted: (ip: string) => boolean };

/** HandlerView is the part of a config generation the pipeline reads; one is taken per request, so a reload never changes a request's config midway. */
export type HandlerView = { readonly challenges: Http01Tokens; readonly router: HostRouter<Site>; readonly hop: Hop; readonly httpsPortSuffix: string };

/**
 * Downstream is the client side of a request as the pipeline uses it, whatever front end took it (Bun.serve today, the raw front end of front/ next): one
 * object per front end, its methods reading the front end's own objects from the context (source, connection), so nothing is made per request.
 */
export interface Downstream {
  /** peer is the address of the connecting client (not X-Forwarded-For). */
  peer(ctx: RequestContext): string;
  /**
   * tlsName is the server name (SNI) of the request's TLS connection where the front end knows it (Bun.serve does not): "" when the handshake got the fallback
   * certificate (no SNI, or a name no site serves), undefined when unknown or not TLS.
   */
  tlsName(ctx: RequestContext): string | undefined;
  /** signal aborts when the client goes away before its answer is done. */
  signal(ctx: RequestContext): CancelSignal;
  /** body is the request body as it arrives; null when there is none. */
  body(ctx: RequestContext): ReadableStream<Uint8Array> | null;
  /** keepWaiting raises this request's idle timeout to seconds while it waits for a slow upstream. */
  keepWaiting(ctx: RequestContext, seconds: number): void;
  /** upgrade turns the connection into a WebSocket carrying data, answering with the extra headers; false when it cannot. */
  upgrade(ctx: RequestContext, data: unknown, headers: Record<string, string>): boolean;
  /**
   * pipe, where the front end owns its connections, writes `head` (the 101) and turns the connection into a byte pipe with `upstream`, starting with the bytes
   * `early` the upstream sent after its 101; `done` is called once when the pipe has closed, with the bytes each way. Undefined: use upgrade (WebSockets only).
   */
  readonly pipe?: (ctx: RequestContext, head: string, early: Uint8Array, upstream: Tunnel, done: (bytesIn: number, bytesOut: number) => void) => void;
}

/** RequestContext travels through the phases of one request (src/proxy/pipeline.ts); the logging phase records it once, when the response has ended. */
export type RequestContext = {
  readonly method: string;
  /** headers are the request's fields; the cache's revalidation sets its validators on them (they are this request's own). */
  readonly headers: Fields;
  readonly downstream: Downstream;
  /** source and connection are the front end's own request and connection objects, read only by its Downstream. */
  readonly source: unknown;
  readonly connection: unknown;
  readonly id: string;
  readonly start: number;
  /** peer caches clientOf(ctx): the peer address costs a fifth of a cache hit in Bun (an object per lookup), so it is read on first use only. */
  peer: string | undefined;
  /** client caches trustedClient(ctx) (policy/client-address.ts): the peer, or behind trusted proxies the address their X-Forwarded-For names. */
  client: string | undefined;
  /** user is who basic or forward auth let through, for the access log and the {user} placeholder. */
  user: string | undefined;
  readonly scheme: "http" | "https";
  readonly host: string;
  readonly path: string;
  readonly query: string;
  readonly hop: Hop;
  route: CompiledRoute | undefined;
  upstream: string | undefined;
  upstreamMs: number;
  bytesIn: number;
  /**
   * status and bytesOut are what the client got: status set by the pipeline from the response, bytesOut by the phase that made it (or the end of a streamed
   * body).
   */
  status: number;
  bytesOut: number;
  /** streamed is the response whose body still flows from the upstream (set by forward); when it is the one the client gets, logging waits for its end. */
  streamed: Answered | undefined;
  /** responded is set when the pipeline handed `streamed` to the client: its end then runs the logging phase. */
  responded: boolean;
  /** finished is set by the logging phase (a context made for a background exchange starts finished: it is no client request). */
  finished: boolean;
  error: string | undefined;
  /** cache is the Cache-Status result for the access log (hit, miss, stale, revalidated, bypass). */
  cache: string | undefined;
};

/** clientOf is the address of the connecting peer (not X-Forwarded-For), looked up once per request on first use. */
export function clientOf(ctx: RequestContext): string {
  return (ctx.peer ??= ctx.downstream.peer(ctx));
}

/**
 * newContext starts the context of a request a front end took: its request id (the client's when well formed), the start time, and every phase's state
 * empty. Positional, so that the request path makes one object, not two.
 */
export function newContext(
  method: string,
  headers: Fields,
  downstream: Downstream,
  source: unknown,
  connection: unknown,
  scheme: "http" | "https",
  host: string,
  path: string,
  query: string,
  hop: Hop,
): RequestContext {
  return {
    method,
    headers,
    downstream,
    source,
    connection,
    id: requestId(headers.get("x-request-id")),
    start: performance.now(),
    peer: undefined,
    client: undefined,
    user: undefined,
    scheme,
    host,
    path,
    query,
    hop,
    route: undefined,
    upstream: undefined,
    upstreamMs: 0,
    bytesIn: 0,
    status: 0,
    bytesOut: 0,
    streamed: undefined,
    responded: false,
    finished: false,
    error: undefined,
    cache: undefined,
  };
}
