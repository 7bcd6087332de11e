/** The [[tcp]] routes of the running config: their listeners (kept while their address stays), endpoints and health checks across reloads, certificates for terminate routes, and drains. */
import type { Address, TcpHealth, TcpRoute } from "../config/types.ts";
import { DiscoveryRegistry } from "../upstream/discovery-registry.ts";
import type { DnsDiscovery } from "../upstream/dns-discovery.ts";
import type { ResolverServer } from "../upstream/resolver.ts";
import type { ConnectionLimits } from "../front/connection-limits.ts";
import { assertBindable } from "../front/listeners.ts";
import { type NativeContext, nativeOf } from "../front/tls-contexts.ts";
import { log } from "../observability/log.ts";
import { type TcpEndpoint, TcpEndpointRegistry } from "./endpoints.ts";
import { TcpHealthChecks } from "./health.ts";
import { TcpListener } from "./listener.ts";
import { compileTcpRoute, discoveryUrl, type ListenerState, type LiveTcpRoute } from "./route.ts";
import { forgetTcpRoutes } from "./stats.ts";

/** SiteCertificate is a site's certificate as the certificate registry hands it out (undefined: the site has none yet). */
export type SiteCertificate = { readonly cert: string; readonly key: string; readonly fingerprint: string } | undefined;

/**
 * TcpRoutesOptions: shared listeners join sibling workers' (the supervisor checked the addresses); takeover joins those of the instance this one replaces; caps
 * counts each connection against [limits] (the HTTP listeners' count, so that the caps hold for all public listeners together; none: no caps).
 */
export type TcpRoutesOptions = { readonly shared?: boolean; readonly takeover?: boolean; readonly caps?: ConnectionLimits };

/** TcpPlan is a set of routes prepared for a config: new listeners already bound (not yet given to anyone), the rest to be applied by commit(). */
export type TcpPlan = {
  readonly routes: readonly LiveTcpRoute[];
  /** bound are the listeners this plan bound, by route name. */
  readonly bound: ReadonlyMap<string, TcpListener>;
  readonly trusted: ((ip: string) => boolean) | undefined;
  /** contexts are the native TLS contexts of the terminate routes' sites, by site name. */
  readonly contexts: ReadonlyMap<string, NativeContext>;
  /** byFingerprint are the same contexts by certificate fingerprint, for the next set to reuse. */
  readonly byFingerprint: ReadonlyMap<string, NativeContext>;
};

/** assertTcpFree throws a clear error, naming the route, when its address cannot be bound now (the other listeners' check, assertBindable). */
export function assertTcpFree(route: TcpRoute): void {
  assertBindable(`[[tcp]] "${route.name}" listen = ${route.listen.text}`, route.listen);
}

/** addressKey names a listen address for matching across configs. */
const addressKey = (a: Address) => `${a.hostname}:${a.port}`;

/**
 * TcpRoutes owns the [[tcp]] listeners. prepare() binds what a new config needs and changes nothing live (a bind that fails throws, having closed what it
 * bound); commit() makes it live: kept listeners take the new route for new connections, removed ones stop accepting and their connections drain until the
 * grace deadline. Endpoint state (ejections, health, open counts) lives in a registry across configs and is never written by prepare().
 */
export class TcpRoutes {
  private readonly listeners = new Map<string, TcpListener>();
  private readonly retiring = new Set<TcpListener>();
  private readonly endpoints = new TcpEndpointRegistry();
  private readonly health = new TcpHealthChecks();
  /** byFingerprint are the native TLS contexts of the certificates terminate routes serve, kept while one serves them (a context is made once per certificate). */
  private byFingerprint: ReadonlyMap<string, NativeContext> = new Map();
  /** discovery runs the DNS discoveries of named upstreams ([resolver] servers, tcp+srv://), shared by the configs that keep the route and upstream. */
  private readonly discovery = new DiscoveryRegistry();
  /** preparing are the routes of a plan not yet committed or aborted: their endpoints are kept when DNS changes meanwhile. */
  private preparing: readonly LiveTcpRoute[] = [];
  private takingOver: boolean;
  private timers = new Set<Timer>();

  constructor(private readonly opts: TcpRoutesOptions = {}) {
    this.takingOver = opts.takeover === true;
  }

  /**
   * prepare compiles routes, waits (bounded) for the first DNS answers of names it discovers, and binds the listeners of new addresses; certOf gives a site's
   * certificate (of the certificate plan being prepared), servers are [resolver]'s. It throws, having undone everything, when a listener cannot bind.
   */
  async prepare(
    routes: readonly TcpRoute[],
    certOf: (site: string) => SiteCertificate,
    trusted: ((ip: string) => boolean) | undefined,
    servers: readonly ResolverServer[] = [],
  ): Promise<TcpPlan> {
    const deps = {
      registry: this.endpoints,
      discovery: (route: string, u: Parameters<typeof discoveryUrl>[0]) => this.discovery.get(route, discoveryUrl(u), servers),
      changed: () => this.followDns(),
    };
    const live = routes.map((r) => compileTcpRoute(r, deps));
    this.preparing = live;
    const bound = new Map<string, TcpListener>();
    try {
      await this.discovery.ready(live.flatMap((r) => [...r.discoveries]));
      const { contexts, byFingerprint } = this.contextsFor(routes, certOf);
      const joining = this.opts.shared === true || this.takingOver;
      for (const r of live) {
        if (this.listeners.has(addressKey(r.config.listen))) continue;
        if (!joining) assertTcpFree(r.config);
        bound.set(r.config.name, new TcpListener(r.config.listen, this.stateOf(r, contexts, trusted)));
      }
      return { routes: live, bound, trusted, contexts, byFingerprint };
    } catch (e) {
      this.abort({ routes: live, bound, trusted, contexts: new Map(), byFingerprint: new Map() });
      throw e;
    }
  }

  /**
   * abort closes what a plan bound (with any connection it accepted meanwhile: a bound listener accepts at once) and forgets what it started: DNS followed,
   * endpoints and metric series of routes that are not live (the config it was for is not going live).
   */
  abort(plan: TcpPlan): void {
    for (const l of plan.bound.values()) {
      l.stopAccepting();
      l.cut();
    }
    for (const r of plan.routes) r.dispose();
    this.preparing = [];
    this.discovery.retain(this.followed());
    this.followDns();
    forgetTcpRoutes(new Set([...this.listeners.values(), ...this.retiring].map((l) => l.state.route.config.name)));
  }

  /** followed are the discoveries of the live routes. */
  private followed(): Set<DnsDiscovery> {
    return new Set([...this.listeners.values()].flatMap((l) => [...l.state.route.discoveries]));
  }

  /** followDns keeps the endpoints DNS gave the routes (live, retiring, being prepared) and checks the health of the live ones. */
  private followDns(): void {
    const keep = new Set<TcpEndpoint>();
    for (const r of this.preparing) for (const e of r.endpoints()) keep.add(e);
    for (const l of [...this.listeners.values(), ...this.retiring]) for (const e of l.state.route.endpoints()) keep.add(e);
    this.endpoints.retain(keep);
    this.reconcileHealth([...this.listeners.values()].map((l) => l.state.route));
  }

  private reconcileHealth(routes: readonly LiveTcpRoute[]): void {
    const checks = new Map<TcpEndpoint, TcpHealth>();
    for (const r of routes) if (r.config.health) for (const e of r.endpoints()) checks.set(e, r.config.health);
    this.health.reconcile(checks);
  }

  /** commit makes a prepared plan live; graceMs bounds the drain of the connections of removed routes (shutdown_grace). */
  commit(plan: TcpPlan, graceMs: number): void {
    this.takingOver = false;
    this.preparing = [];
    this.byFingerprint = plan.byFingerprint;
    const replaced = [...this.listeners.values()].map((l) => l.state.route);
    const wanted = new Map<string, TcpListener>();
    for (const r of plan.routes) {
      const key = addressKey(r.config.listen);
      const cur = this.listeners.get(key);
      if (cur !== undefined) {
        // Same address: the listener and its connections stay; new connections get the new route.
        cur.state = this.stateOf(r, plan.contexts, plan.trusted);
        wanted.set(key, cur);
        continue;
      }
      const l = plan.bound.get(r.config.name)!;
      wanted.set(key, l);
      log.info("listening", { listener: "tcp", route: r.config.name, mode: r.config.mode, address: `${l.address.hostname}:${l.port}` });
    }
    for (const [key, l] of this.listeners) if (!wanted.has(key)) this.retire(l, graceMs);
    this.listeners.clear();
    for (const [k, l] of wanted) this.listeners.set(k, l);
    // The routes replaced stop following DNS: their open connections have their endpoints already.
    for (const r of replaced) r.dispose();
    this.discovery.retain(this.followed());
    this.followDns();
    forgetTcpRoutes(new Set(plan.routes.map((r) => r.config.name)));
  }

  /** certificates serves the terminate routes' sites' certificates as they are now (after a renewal), from the next handshake on; open connections keep theirs. */
  certificates(certOf: (site: string) => SiteCertificate): void {
    const routes = [...this.listeners.values()].map((l) => l.state.route.config);
    let loaded: ReturnType<TcpRoutes["contextsFor"]>;
    try {
      loaded = this.contextsFor(routes, certOf);
    } catch (e) {
      log.error("cannot load a certificate for a tcp route; the old one keeps serving", { error: String((e as Error).message ?? e) });
      return;
    }
    const contexts = loaded.contexts;
    this.byFingerprint = loaded.byFingerprint;
    for (const l of this.listeners.values()) l.state = this.stateOf(l.state.route, contexts, l.state.trusted);
  }

  /** describe lists the TCP endpoints for the admin API. */
  describe(now: number): unknown[] {
    return this.endpoints.describe(now);
  }

  /** stopAccepting closes every listening socket (shutdown); open connections go on, and checks stop. */
  stopAccepting(): void {
    this.health.stopAll();
    for (const l of this.listeners.values()) l.state.route.dispose();
    this.discovery.retain(new Set());
    for (const l of this.listeners.values()) {
      l.stopAccepting();
      this.retiring.add(l);
    }
    this.listeners.clear();
  }

  /** drained resolves once every connection of every listener has closed. */
  async drained(): Promise<void> {
    await Promise.all([...this.retiring, ...this.listeners.values()].map((l) => l.drained()));
  }

  /** open counts the connections open now. */
  open(): number {
    let n = 0;
    for (const l of [...this.retiring, ...this.listeners.values()]) n += l.conns.size;
    return n;
  }

  /** closeAll cuts every connection and closes every listener now. */
  closeAll(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const l of [...this.retiring, ...this.listeners.values()]) {
      l.stopAccepting();
      l.cut();
    }
    this.retiring.clear();
    this.listeners.clear();
  }

  /** retire stops a removed route's listener; its connections go on until they end or graceMs has passed, then are cut. */
  private retire(l: TcpListener, graceMs: number): void {
    l.stopAccepting();
    this.retiring.add(l);
    log.info("listener closed", { listener: "tcp", route: l.state.route.config.name, address: l.address.text, open: l.conns.size, grace_ms: graceMs });
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (l.conns.size > 0)
        log.warn("grace period over; closing the remaining connections of a removed tcp route", { route: l.state.route.config.name, open: l.conns.size });
      l.cut();
    }, graceMs);
    timer.unref();
    this.timers.add(timer);
    void l.drained().then(() => {
      clearTimeout(timer);
      this.timers.delete(timer);
      this.retiring.delete(l);
    });
  }

  private stateOf(route: LiveTcpRoute, contexts: ReadonlyMap<string, NativeContext>, trusted: ListenerState["trusted"]): ListenerState {
    return { route, context: route.config.site === undefined ? undefined : contexts.get(route.config.site), trusted, caps: this.opts.caps };
  }

  /**
   * contextsFor loads the native context of every terminate route's site certificate (by site name), reusing those whose certificate is unchanged; it throws
   * when a certificate cannot be loaded.
   */
  private contextsFor(
    routes: readonly TcpRoute[],
    certOf: (site: string) => SiteCertificate,
  ): { contexts: Map<string, NativeContext>; byFingerprint: Map<string, NativeContext> } {
    const contexts = new Map<string, NativeContext>();
    const byFingerprint = new Map<string, NativeContext>();
    for (const r of routes) {
      if (r.mode !== "terminate" || r.site === undefined || contexts.has(r.site)) continue;
      const c = certOf(r.site);
      if (c === undefined) continue;
      const ctx = byFingerprint.get(c.fingerprint) ?? this.byFingerprint.get(c.fingerprint) ?? nativeOf(c.cert, c.key);
      byFingerprint.set(c.fingerprint, ctx);
      contexts.set(r.site, ctx);
    }
    return { contexts, byFingerprint };
  }
}
