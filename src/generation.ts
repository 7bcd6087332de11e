/** A generation is one immutable compiled config: build → validate → swap → dispose. Requests take the generation that is live when they arrive and keep it to the end. */
import type { ResponseCache } from "./cache/response-cache.ts";
import type { Config, HealthCheck, PathRoute, ProxyAction, RedirectAction, SiteConfig, StaticAction } from "./config/types.ts";
import { BUILTIN_PREFIX } from "./config/route-schema.ts";
import { cidrMatcher } from "./lib/cidr.ts";
import { SLICE_MS, yieldToRequests } from "./lib/slices.ts";
import { statsFor } from "./observability/gateway-metrics.ts";
import { cachePhase } from "./proxy/cache-phase.ts";
import type { CompiledRoute, HandlerView, ProxyRoute, RequestContext, ResponseFilter, Site } from "./proxy/context.ts";
import { hstsFilter } from "./proxy/hsts.ts";
import { errorPagesFilter } from "./proxy/policy/error-pages.ts";
import { policyPhases } from "./proxy/policy/compile.ts";
import { forward } from "./proxy/forward.ts";
import { HostRouter, PathRouter } from "./proxy/router.ts";
import { directorySource, staticHandler } from "./static/index.ts";
import type { Endpoint, EndpointRegistry } from "./upstream/endpoint.ts";
import { parseAddress } from "./config/locations.ts";
import type { DiscoveryRegistry } from "./upstream/discovery-registry.ts";
import type { DnsDiscovery } from "./upstream/dns-discovery.ts";
import { Pool } from "./upstream/pool.ts";
import { targetOf, type Target } from "./upstream/target.ts";
import type { ResolverServer } from "./upstream/resolver.ts";
import type { Http01Tokens } from "./tls/acme/http01.ts";
import { builtinSource } from "./welcome/builtin.ts";

/**
 * Generation is a compiled config and what it was compiled from; it owns no sockets. dispose() detaches its pools from DNS discovery once a newer generation is
 * live.
 */
export type Generation = {
  readonly id: number;
  readonly config: Config;
  readonly view: HandlerView;
  readonly routeNames: ReadonlySet<string>;
  /** discoveries are the DNS discoveries this generation's pools follow. */
  readonly discoveries: ReadonlySet<DnsDiscovery>;
  /** endpoints lists the upstream endpoints this generation routes to now (shared with older generations where route and URL match). */
  endpoints(): Set<Endpoint>;
  /** health maps the current endpoints of routes with an active health check to that check, with the TLS settings of the endpoint's target. */
  health(): Map<Endpoint, HealthCheck>;
  dispose(): void;
};

/** GenerationDeps are the registries whose state outlives any one generation, and what to call when discovery changes a pool. */
export type GenerationDeps = {
  readonly endpoints: EndpointRegistry;
  readonly discovery: DiscoveryRegistry;
  readonly listenerIdleMs: number;
  readonly cache: ResponseCache;
  readonly poolsChanged: () => void;
  /** challenges are the HTTP-01 tokens the plain HTTP listener answers before any routing. */
  readonly challenges: Http01Tokens;
};

/** Pools is what a generation keeps of its proxy routes: their pools, health checks and discovery subscriptions. */
type Pools = {
  /** list holds each pool with its health check and the Host its checks send when the check names none (the site's first host name). */
  readonly list: { pool: Pool; health: HealthCheck | undefined; host: string | undefined }[];
  readonly discoveries: Set<DnsDiscovery>;
  readonly unsubscribe: (() => void)[];
  readonly servers: readonly ResolverServer[];
  /** requestBuffer is [limits] request_buffer, for the proxy routes. */
  readonly requestBuffer: number;
  /** byAction maps each proxy action compiled so far to its route's pool and settings, for the [[paths]] entries that refine it. */
  readonly byAction: Map<ProxyAction, ProxyRoute>;
};

function proxyRoute(
  route: PathRoute,
  a: ProxyAction,
  deps: GenerationDeps,
  pools: Pools,
  siteHost: string | undefined,
): Pick<CompiledRoute, "proxy" | "handle"> {
  // A [[paths]] entry that refines the site's action (cache rules, policy) shares the site's pool: one set of endpoints, one health state, one set of checks.
  const shared = pools.byAction.get(a);
  const proxy = shared ?? newProxyRoute(route, a, deps, pools, siteHost);
  pools.byAction.set(a, proxy);
  const plain = (ctx: RequestContext) => forward(ctx, proxy);
  return { proxy, handle: route.cache?.enabled ? cachePhase(route.cache, deps.cache, plain) : plain };
}

function newProxyRoute(route: PathRoute, a: ProxyAction, deps: GenerationDeps, pools: Pools, siteHost: string | undefined): ProxyRoute {
  const tls = a.options.upstreamTls;
  // Targets carry this generation's settings; the shared Endpoints are never written here (a rejected reload must change nothing).
  const statics = a.upstreams.filter((u) => !u.discover).map((u) => targetOf(deps.endpoints.get(route.name, u.url), tls));
  const names = a.upstreams.filter((u) => u.discover);
  const found = names.map((u) => deps.discovery.get(route.name, u.url, pools.servers));
  // A name's endpoints are its current addresses; an address that leaves DNS leaves the pool (requests in flight keep theirs).
  // They are reached by IP, but TLS verifies (and preserve_host = false sends) the name, as the URL said.
  const current = (): readonly Target[] => {
    if (found.length === 0) return statics;
    const list = [...statics];
    const seen = new Set(statics.map((t) => t.endpoint));
    found.forEach((d, i) => {
      const name = new URL(names[i]!.url.replace(/^srv\+/, "")).host;
      for (const x of d.endpoints()) {
        const e = deps.endpoints.get(route.name, x.url);
        if (seen.has(e)) continue;
        seen.add(e);
        list.push(targetOf(e, x.url.startsWith("https:") ? { ...tls, serverName: tls?.serverName ?? name.replace(/:\d+$/, "") } : tls, name, x.weight));
      }
    });
    return list;
  };
  const pool = new Pool(current(), a.options.loadBalance, a.options.allUnhealthy, a.options.maxInflight, a.options.slowStart);
  for (const d of found) {
    pools.discoveries.add(d);
    pools.unsubscribe.push(
      d.onChange(() => {
        pool.setTargets(current());
        deps.poolsChanged();
      }),
    );
  }
  // Checks ask for the site by name, as clients do (an app's allowed-hosts list refuses a bare address), unless the upstream gets its own name anyway.
  pools.list.push({ pool, health: a.options.health, host: a.options.preserveHost ? siteHost : undefined });
  const longest = Math.max(a.options.responseHeaderTimeout, a.options.idleTimeout);
  const proxy: ProxyRoute = {
    pool,
    options: a.options,
    stripPrefix: a.stripPrefix && route.prefix !== "/" ? route.prefix : undefined,
    requestBuffer: pools.requestBuffer,
    // Bun's listener idle timer also runs while we wait for the upstream; raise it for this request when the route waits longer (Bun's cap is 255 s).
    requestIdleSeconds: longest >= deps.listenerIdleMs ? Math.min(255, Math.ceil(longest / 1000) + 1) : undefined,
  };
  return proxy;
}

function staticRoute(route: PathRoute, a: StaticAction): CompiledRoute["handle"] {
  const source = a.root.startsWith(BUILTIN_PREFIX) ? builtinSource(a.root.slice(BUILTIN_PREFIX.length)) : directorySource(a.root);
  // The root names the site's compressed forms in the process's store, so they outlive a reload.
  const serve = staticHandler(source, { index: [...a.index], cacheControl: a.cacheControl, scope: a.root });
  const cut = a.stripPrefix && route.prefix !== "/" ? route.prefix.length : 0;
  const finish = (ctx: RequestContext, res: Awaited<ReturnType<typeof serve>>) => {
    res.headers.set("x-request-id", ctx.id);
    ctx.bytesOut = Number(res.headers.get("content-length") ?? 0);
    return res;
  };
  return (ctx: RequestContext) => {
    const res = serve(ctx, cut ? ctx.path.slice(cut) || "/" : ctx.path);
    return res instanceof Promise ? res.then((r) => finish(ctx, r)) : finish(ctx, res);
  };
}

function redirectRoute(a: RedirectAction): CompiledRoute["handle"] {
  return (ctx) => {
    const location = a.keepPath ? a.to + ctx.path + ctx.query : a.to;
    return new Response(null, { status: a.status, headers: { location, "x-request-id": ctx.id } });
  };
}

/** NO_FILTERS is the response filters of a site that has none. */
const NO_FILTERS: readonly never[] = [];

function compileRoute(
  route: PathRoute,
  site: SiteConfig,
  deps: GenerationDeps,
  pools: Pools,
  siteFilters: readonly ResponseFilter[],
): CompiledRoute | undefined {
  const a = route.action;
  if (a === undefined) return undefined;
  const { filters, responseFilters } = policyPhases(route, site, siteFilters, (release) => pools.unsubscribe.push(release));
  const base = {
    name: route.name,
    prefix: route.prefix,
    stats: statsFor(route.name),
    maxBodySize: route.maxBodySize,
    allowTrace: route.allowTrace,
    filters,
    responseFilters,
  };
  if (a.kind === "proxy")
    return {
      ...base,
      ...proxyRoute(
        route,
        a,
        deps,
        pools,
        site.hosts.find((h) => !h.startsWith("*.")),
      ),
    };
  if (a.kind === "static") return { ...base, proxy: undefined, handle: staticRoute(route, a) };
  return { ...base, proxy: undefined, handle: redirectRoute(a) };
}

function compileSite(site: SiteConfig, deps: GenerationDeps, pools: Pools, names: Set<string>, https: boolean): Site {
  const h = site.tls.hsts;
  const hsts = h ? `max-age=${h.maxAge}${h.includeSubDomains ? "; includeSubDomains" : ""}${h.preload ? "; preload" : ""}` : undefined;
  const responseFilters = hsts === undefined ? NO_FILTERS : [hstsFilter(hsts)];
  const [root, ...subs] = site.routes;
  const paths = new PathRouter<CompiledRoute>(root ? compileRoute(root, site, deps, pools, responseFilters) : undefined);
  if (root?.action) names.add(root.name);
  for (const r of subs) {
    const c = compileRoute(r, site, deps, pools, responseFilters);
    if (c) {
      paths.add(r.prefix, c);
      names.add(r.name);
    }
  }
  const secure = site.tls.mode !== "off" && https;
  const pages = errorPagesFilter(site.pages);
  return { name: site.name, lookup: (path) => paths.lookup(path), secure, redirectHttps: secure && site.tls.redirect, pages };
}

type Build = { readonly router: HostRouter<Site>; readonly pools: Pools; readonly names: Set<string> };

function startBuild(config: Config): Build {
  const servers = config.global.resolver.servers.map((t) => parseAddress(t)!).map((a) => ({ host: a.hostname, port: a.port }));
  return {
    router: new HostRouter<Site>(),
    pools: { list: [], discoveries: new Set(), unsubscribe: [], servers, requestBuffer: config.global.limits.requestBuffer, byAction: new Map() },
    names: new Set<string>(),
  };
}

function addSite(b: Build, site: SiteConfig, deps: GenerationDeps, https: boolean): void {
  // A certificate-only site serves no HTTP: its hosts get what unknown hosts get (421 or 404), or a wildcard site's answer where one covers them; HTTP-01
  // challenges are answered before any site.
  if (site.certificateOnly) return;
  const compiled = compileSite(site, deps, b.pools, b.names, https);
  for (const host of site.hosts) b.router.add(host, compiled);
}

function endBuild(b: Build, config: Config, deps: GenerationDeps, id: number): Generation {
  const { router, pools, names } = b;
  const p = config.global.proxy;
  const via = `1.1 ${p.via}`;
  // Redirects name the port clients reach HTTPS on: behind a port forward (443 → 8443) that is not the listener's own.
  const hp = config.global.listen.publicHttpsPort ?? config.global.listen.https?.port;
  const view = {
    challenges: deps.challenges,
    router,
    hop: { via, trusted: cidrMatcher(p.trustedProxies) },
    httpsPortSuffix: hp === undefined || hp === 443 ? "" : `:${hp}`,
  };
  return {
    id,
    config,
    view,
    routeNames: names,
    discoveries: pools.discoveries,
    endpoints: () => new Set(pools.list.flatMap((p) => p.pool.targets.map((t) => t.endpoint))),
    health: () => {
      const m = new Map<Endpoint, HealthCheck>();
      // Each endpoint is checked with its target's TLS settings (a discovered name verified as such).
      for (const p of pools.list)
        if (p.health) for (const t of p.pool.targets) m.set(t.endpoint, { ...p.health, host: p.health.host ?? p.host ?? t.hostHeader, tls: t.tls });
      return m;
    },
    dispose: () => {
      for (const u of pools.unsubscribe) u();
    },
  };
}

/** buildGeneration compiles a validated Config; it touches no sockets, so a failure leaves nothing to clean up. */
export function buildGeneration(config: Config, deps: GenerationDeps, id: number): Generation {
  const b = startBuild(config);
  for (const site of config.sites) addSite(b, site, deps, config.global.listen.https !== undefined);
  return endBuild(b, config, deps, id);
}

/**
 * buildGenerationAsync is buildGeneration for a running gateway: it gives way to requests every few milliseconds. On failure it disposes of what it subscribed
 * to.
 */
export async function buildGenerationAsync(config: Config, deps: GenerationDeps, id: number): Promise<Generation> {
  const b = startBuild(config);
  let slice = performance.now();
  try {
    for (const site of config.sites) {
      addSite(b, site, deps, config.global.listen.https !== undefined);
      if (performance.now() - slice > SLICE_MS) {
        await yieldToRequests();
        slice = performance.now();
      }
    }
  } catch (e) {
    for (const u of b.pools.unsubscribe) u();
    throw e;
  }
  return endBuild(b, config, deps, id);
}
