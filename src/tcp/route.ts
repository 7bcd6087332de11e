/** A [[tcp]] route as one config compiled it: its endpoints in balancers (the route's upstreams, each [[tcp.sni]] entry's), followed through DNS where named so, its metric cells, and the choice by server name. */
import type { TcpRoute, TcpUpstream } from "../config/types.ts";
import type { ConnectionLimits } from "../front/connection-limits.ts";
import type { NativeContext } from "../front/tls-contexts.ts";
import type { DnsDiscovery } from "../upstream/dns-discovery.ts";
import { Balancer, type TcpEndpoint, type TcpEndpointRegistry } from "./endpoints.ts";
import { type TcpStats, tcpStatsFor } from "./stats.ts";

/** LiveTcpRoute is a compiled [[tcp]] entry; connections take the one live when they are accepted and keep it to their end. */
export type LiveTcpRoute = {
  readonly config: TcpRoute;
  readonly stats: TcpStats;
  /** upstreams balances the route's upstreams (passthrough: the connections no [[tcp.sni]] entry takes; empty: those are closed). */
  readonly upstreams: Balancer;
  /** exact and wildcard map server names ("a.example.com"; ".example.com" for "*.example.com") to their [[tcp.sni]] entry's balancer. */
  readonly exact: ReadonlyMap<string, Balancer>;
  readonly wildcard: ReadonlyMap<string, Balancer>;
  /** discoveries are the DNS discoveries the route's balancers follow. */
  readonly discoveries: ReadonlySet<DnsDiscovery>;
  /** endpoints lists every endpoint the route may connect to now. */
  endpoints(): TcpEndpoint[];
  /** dispose stops following DNS (the route is no longer live, or never was). */
  dispose(): void;
};

/** ListenerState is what a [[tcp]] listener's new connections get: the route, the TLS context of a terminate route, who may send a PROXY preamble, the caps they count in. */
export type ListenerState = {
  readonly route: LiveTcpRoute;
  readonly context: NativeContext | undefined;
  readonly trusted: ((ip: string) => boolean) | undefined;
  /** caps are [limits] max_connections and max_connections_per_client, shared with the HTTP listeners; undefined: no caps. */
  readonly caps: ConnectionLimits | undefined;
};

/** RouteDeps are the registries a route is compiled against, and what to call when DNS changes its endpoints. */
export type RouteDeps = {
  readonly registry: TcpEndpointRegistry;
  /** discovery is the running discovery of an upstream to discover (started on first use). */
  readonly discovery: (route: string, u: TcpUpstream) => DnsDiscovery;
  readonly changed: () => void;
};

/** discoveryUrl is the URL DnsDiscovery takes for a discovered TCP upstream: tcp://NAME:PORT as http://NAME:PORT (A/AAAA), tcp+srv://NAME as srv+http://NAME. */
export function discoveryUrl(u: TcpUpstream): string {
  return u.port === 0 ? `srv+http://${u.host}` : `http://${u.host}:${u.port}`;
}

/** fromDiscovered is the TCP upstream of an address DnsDiscovery found ("http://10.1.2.3:143", "http://[fd00::1]:143"). */
function fromDiscovered(url: string): TcpUpstream {
  const u = new URL(url);
  const port = u.port === "" ? 80 : Number(u.port);
  return { url: `tcp://${u.hostname}:${port}`, host: u.hostname.replace(/^\[(.*)\]$/, "$1"), port, discover: false };
}

/** compileTcpRoute builds a route's balancers from the registry's endpoints (created on first use, never changed here), subscribing to DNS for named ones. */
export function compileTcpRoute(config: TcpRoute, deps: RouteDeps): LiveTcpRoute {
  const balancers: Balancer[] = [];
  const discoveries = new Set<DnsDiscovery>();
  const unsubscribe: (() => void)[] = [];
  const balancer = (list: readonly TcpUpstream[]) => {
    const statics = list.filter((u) => !u.discover).map((u) => deps.registry.get(config.name, u));
    const found = list.filter((u) => u.discover).map((u) => deps.discovery(config.name, u));
    const current = () => {
      const out = [...statics];
      for (const d of found) for (const x of d.endpoints()) out.push(deps.registry.get(config.name, fromDiscovered(x.url)));
      return [...new Set(out)];
    };
    const b = new Balancer(current());
    for (const d of found) {
      discoveries.add(d);
      unsubscribe.push(
        d.onChange(() => {
          b.set(current());
          deps.changed();
        }),
      );
    }
    balancers.push(b);
    return b;
  };
  const exact = new Map<string, Balancer>();
  const wildcard = new Map<string, Balancer>();
  for (const s of config.sni) {
    const b = balancer(s.upstreams);
    for (const h of s.hosts) {
      if (h.startsWith("*.")) wildcard.set(h.slice(1), b);
      else exact.set(h, b);
    }
  }
  return {
    config,
    stats: tcpStatsFor(config.name),
    upstreams: balancer(config.upstreams),
    exact,
    wildcard,
    discoveries,
    endpoints: () => [...new Set(balancers.flatMap((b) => b.endpoints))],
    dispose: () => {
      for (const u of unsubscribe) u();
    },
  };
}

/** pickBySni is the balancer for a ClientHello's server name: an exact [[tcp.sni]] name, then a wildcard of its parent, then the route's upstreams; undefined when none has endpoints. */
export function pickBySni(route: LiveTcpRoute, name: string | undefined): Balancer | undefined {
  if (name !== undefined) {
    const exact = route.exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf(".");
    const wild = dot > 0 ? route.wildcard.get(name.slice(dot)) : undefined;
    if (wild !== undefined) return wild;
  }
  return route.upstreams.endpoints.length > 0 || route.config.upstreams.length > 0 ? route.upstreams : undefined;
}
