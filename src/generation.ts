/** A generation is one immutable compiled config: build → validate → swap → dispose. Requests take the generation that is live when they arrive and keep it to the end. */
import { cachePhase } from "./cache/cache-phase.ts";
import type { ResponseCache } from "./cache/response-cache.ts";
import type { Config, HealthCheck, PathRoute, ProxyAction, RedirectAction, SiteConfig, StaticAction } from "./config/types.ts";
import { BUILTIN_PREFIX } from "./config/route-schema.ts";
import { cidrMatcher } from "./lib/cidr.ts";
import { statsFor } from "./observability/gateway-metrics.ts";
import type { CompiledRoute, ProxyTarget, RequestContext, Site } from "./proxy/context.ts";
import { finish } from "./proxy/finish.ts";
import { forward } from "./proxy/forward.ts";
import type { HandlerView } from "./proxy/handler.ts";
import { HostRouter, PathRouter } from "./proxy/router.ts";
import { directorySource, staticHandler } from "./static/index.ts";
import type { Endpoint, EndpointRegistry } from "./upstream/endpoint.ts";
import { Pool } from "./upstream/pool.ts";
import { builtinSource } from "./welcome/builtin.ts";

/** Generation is a compiled config and what it was compiled from; it owns no sockets, so dropping it is enough to dispose of it. */
export type Generation = {
  readonly id: number;
  readonly config: Config;
  readonly view: HandlerView;
  /** endpoints are the upstream endpoints this generation routes to (shared with older generations where route and URL match). */
  readonly endpoints: ReadonlySet<Endpoint>;
  /** health maps the endpoints of routes with an active health check to that check. */
  readonly health: ReadonlyMap<Endpoint, HealthCheck>;
  readonly routeNames: ReadonlySet<string>;
};

/** GenerationDeps are the registries whose state outlives any one generation. */
export type GenerationDeps = { readonly endpoints: EndpointRegistry; readonly listenerIdleMs: number; readonly cache: ResponseCache };

function proxyRoute(route: PathRoute, a: ProxyAction, deps: GenerationDeps, used: Set<Endpoint>, health: Map<Endpoint, HealthCheck>): Pick<CompiledRoute, "proxy" | "handle"> {
  const endpoints = a.upstreams.map((u) => deps.endpoints.get(route.name, u.url));
  for (const e of endpoints) {
    used.add(e);
    if (a.options.health) health.set(e, a.options.health);
  }
  const longest = Math.max(a.options.responseHeaderTimeout, a.options.idleTimeout);
  const target: ProxyTarget = {
    pool: new Pool(endpoints, a.options.loadBalance, a.options.allUnhealthy),
    options: a.options,
    stripPrefix: a.stripPrefix && route.prefix !== "/" ? route.prefix : undefined,
    // Bun's listener idle timer also runs while we wait for the upstream; raise it for this request when the route waits longer (Bun's cap is 255 s).
    requestIdleSeconds: longest >= deps.listenerIdleMs ? Math.min(255, Math.ceil(longest / 1000) + 1) : undefined,
  };
  const plain = (ctx: RequestContext) => forward(ctx, target);
  return { proxy: target, handle: route.cache?.enabled ? cachePhase(route.cache, deps.cache, plain) : plain };
}

function staticRoute(route: PathRoute, a: StaticAction): CompiledRoute["handle"] {
  const source = a.root.startsWith(BUILTIN_PREFIX) ? builtinSource(a.root.slice(BUILTIN_PREFIX.length)) : directorySource(a.root);
  const serve = staticHandler(source, { index: [...a.index], cacheControl: a.cacheControl });
  const cut = a.stripPrefix && route.prefix !== "/" ? route.prefix.length : 0;
  return (ctx: RequestContext) => {
    const res = serve(ctx.req, cut ? ctx.path.slice(cut) || "/" : ctx.path);
    res.headers.set("x-request-id", ctx.id);
    finish(ctx, res.status, Number(res.headers.get("content-length") ?? 0), undefined);
    return res;
  };
}

function redirectRoute(a: RedirectAction): CompiledRoute["handle"] {
  return (ctx) => {
    const location = a.keepPath ? a.to + ctx.path + ctx.query : a.to;
    finish(ctx, a.status, 0, undefined);
    return new Response(null, { status: a.status, headers: { location, "x-request-id": ctx.id } });
  };
}

function compileRoute(route: PathRoute, deps: GenerationDeps, used: Set<Endpoint>, health: Map<Endpoint, HealthCheck>): CompiledRoute | undefined {
  const a = route.action;
  if (a === undefined) return undefined;
  const base = { name: route.name, prefix: route.prefix, stats: statsFor(route.name), maxBodySize: route.maxBodySize };
  if (a.kind === "proxy") return { ...base, ...proxyRoute(route, a, deps, used, health) };
  if (a.kind === "static") return { ...base, proxy: undefined, handle: staticRoute(route, a) };
  return { ...base, proxy: undefined, handle: redirectRoute(a) };
}

function compileSite(site: SiteConfig, deps: GenerationDeps, used: Set<Endpoint>, health: Map<Endpoint, HealthCheck>, names: Set<string>, https: boolean): Site {
  const [root, ...subs] = site.routes;
  const paths = new PathRouter<CompiledRoute>(root ? compileRoute(root, deps, used, health) : undefined);
  if (root?.action) names.add(root.name);
  for (const r of subs) {
    const c = compileRoute(r, deps, used, health);
    if (c) {
      paths.add(r.prefix, c);
      names.add(r.name);
    }
  }
  const h = site.tls.hsts;
  const hsts = h ? `max-age=${h.maxAge}${h.includeSubDomains ? "; includeSubDomains" : ""}${h.preload ? "; preload" : ""}` : undefined;
  const secure = site.tls.mode !== "off" && https;
  return { name: site.name, lookup: (path) => paths.lookup(path), secure, redirectHttps: secure && site.tls.redirect, hsts };
}

/** buildGeneration compiles a validated Config; it touches no sockets, so a failure leaves nothing to clean up. */
export function buildGeneration(config: Config, deps: GenerationDeps, id: number): Generation {
  const router = new HostRouter<Site>();
  const used = new Set<Endpoint>();
  const health = new Map<Endpoint, HealthCheck>();
  const names = new Set<string>();
  for (const site of config.sites) {
    const compiled = compileSite(site, deps, used, health, names, config.global.listen.https !== undefined);
    for (const host of site.hosts) router.add(host, compiled);
  }
  const p = config.global.proxy;
  const via = `1.1 ${p.via}`;
  // Redirects name the port clients reach HTTPS on: behind a port forward (443 → 8443) that is not the listener's own.
  const hp = config.global.listen.publicHttpsPort ?? config.global.listen.https?.port;
  const view = { router, hop: { via, trusted: cidrMatcher(p.trustedProxies) }, httpsPortSuffix: hp === undefined || hp === 443 ? "" : `:${hp}` };
  return { id, config, view, endpoints: used, health, routeNames: names };
}
