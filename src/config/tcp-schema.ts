/** Reading config.toml's [[tcp]] entries (TCP and TLS routes with listeners of their own) into TcpRoute, and checking the sites they name once the route files are read. */
import type { Problem } from "./problems.ts";
import type { Reader } from "./reader.ts";
import { parseAddress } from "./locations.ts";
import { isIP } from "../lib/ip.ts";
import type { Address, SiteConfig, TcpHealth, TcpMode, TcpRoute, TcpSni, TcpUpstream } from "./types.ts";

/** TCP_MODES are the values `mode` takes. */
export const TCP_MODES: readonly TcpMode[] = ["terminate", "passthrough", "plain"];

/** TCP_DEFAULTS are the durations and caps a [[tcp]] entry gets for the keys it leaves out (ms). */
export const TCP_DEFAULTS = {
  idleTimeout: 600_000,
  connectTimeout: 5_000,
  handshakeTimeout: 10_000,
  maxConnectionsPerUpstream: 10_000,
  failCooldown: 10_000,
} as const;

const NAME_RE = /^[a-z0-9_-]{1,64}$/;
/** SERVER_NAME_RE is a server name as [[tcp.sni]] hosts take it: a lowercase DNS name, or a wildcard of one label ("*.example.com"). */
const SERVER_NAME_RE = /^(\*\.)?(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?)+$/;
const UPSTREAM_EXPECTED = '"tcp://HOST:PORT" such as "tcp://10.8.0.5:143" or "tcp://[fd00::5]:143", or "tcp+srv://NAME" (SRV records)';
const LISTEN_EXPECTED = 'HOST:PORT such as "127.0.0.1:993", or ":993" for every address';

/**
 * parseTcpUpstream reads "tcp://HOST:PORT" (an IP address or a host name, a port, nothing else) or "tcp+srv://NAME" (no port: the SRV records give them);
 * undefined when it is neither. A host name is discovered when discoverNames ([resolver] servers are set), an SRV name always.
 */
export function parseTcpUpstream(text: string, discoverNames = false): TcpUpstream | undefined {
  const srv = /^tcp\+srv:\/\/([A-Za-z0-9_.-]+)$/.exec(text);
  if (srv) return { url: text, host: srv[1]!.toLowerCase(), port: 0, discover: true };
  const m = /^tcp:\/\/(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  const host = (m[1] ?? m[2]!).toLowerCase();
  return { url: text, host, port, discover: discoverNames && isIP(host) === 0 };
}

function readUpstreams(r: Reader, key: string, required: boolean, discoverNames: boolean): TcpUpstream[] {
  const list = r.stringList(key);
  if (list === undefined) {
    if (required) r.problem(key, "missing", `a list of upstreams, each ${UPSTREAM_EXPECTED}`);
    return [];
  }
  if (list.length === 0 && required) r.problem(key, "is empty", `at least one upstream, ${UPSTREAM_EXPECTED}`);
  const out: TcpUpstream[] = [];
  list.forEach((s, i) => {
    const u = parseTcpUpstream(s, discoverNames);
    if (u) out.push(u);
    else r.problem(`${key}[${i}]`, `cannot read ${JSON.stringify(s)} as a TCP upstream`, UPSTREAM_EXPECTED);
  });
  if (new Set(out.map((u) => u.url)).size !== out.length) r.problem(key, "lists the same upstream twice", "each upstream once");
  return out;
}

function readHealth(r: Reader): TcpHealth | undefined {
  const h = r.table("health");
  if (!h) return undefined;
  const health: TcpHealth = {
    interval: h.duration("interval", 10_000),
    timeout: h.duration("timeout", 2_000),
    healthyThreshold: h.integer("healthy_threshold", 2, 1, 100),
    unhealthyThreshold: h.integer("unhealthy_threshold", 3, 1, 100),
  };
  if (health.interval < 100) h.problem("interval", "is shorter than 100ms", 'a duration such as "5s"');
  if (health.timeout >= health.interval) h.problem("timeout", "is not shorter than the interval", "a timeout below the interval, so checks do not overlap");
  h.done();
  return health;
}

function readSni(r: Reader, mode: TcpMode, discoverNames: boolean): TcpSni[] {
  const entries = r.tableList("sni");
  if (entries.length > 0 && mode !== "passthrough")
    r.problem("sni[0]", `[[tcp.sni]] entries on a route with mode = "${mode}"`, 'mode = "passthrough", the only mode that picks upstreams by SNI');
  const seen = new Set<string>();
  return entries.map((e) => {
    const hosts = e.stringList("hosts") ?? [];
    if (!e.has("hosts")) e.problem("hosts", "missing", 'server names such as ["imap.example.com", "*.example.com"]');
    hosts.forEach((h, i) => {
      if (!SERVER_NAME_RE.test(h)) e.problem(`hosts[${i}]`, `${JSON.stringify(h)} is not a server name`, 'a lowercase DNS name, or "*.example.com"');
      else if (seen.has(h)) e.problem(`hosts[${i}]`, `${JSON.stringify(h)} is in another [[tcp.sni]] entry of this route too`, "each name once per route");
      seen.add(h);
    });
    const upstreams = readUpstreams(e, "upstreams", true, discoverNames);
    e.done();
    return { hosts, upstreams };
  });
}

/** collide says whether two listen addresses would bind the same port on a common address (a wildcard address takes every address's port). */
function collide(a: Address, b: Address): boolean {
  if (a.port !== b.port) return false;
  const any = (h: string) => h === "0.0.0.0" || h === "::";
  return a.hostname === b.hostname || any(a.hostname) || any(b.hostname);
}

function readOne(r: Reader, entry: number, others: readonly [string, Address][], names: Set<string>, discoverNames: boolean): TcpRoute | undefined {
  const name = r.requiredString("name", "a name of lowercase letters, digits, - and _ (the metrics label)");
  if (name !== undefined) {
    if (!NAME_RE.test(name)) r.problem("name", `${JSON.stringify(name)} is not a route name`, "lowercase letters, digits, - and _ (at most 64)");
    else if (names.has(name)) r.problem("name", `${JSON.stringify(name)} names another [[tcp]] entry too`, "a name used by one [[tcp]] entry only");
    names.add(name);
  }
  const listenText = r.requiredString("listen", LISTEN_EXPECTED);
  const listen = listenText === undefined ? undefined : parseAddress(listenText);
  if (listenText !== undefined && listen === undefined) r.problem("listen", `cannot read ${JSON.stringify(listenText)} as a listen address`, LISTEN_EXPECTED);
  if (listen !== undefined) {
    const clash = others.find(([, a]) => collide(a, listen));
    if (clash) r.problem("listen", `${listen.text} is also ${clash[0]}`, "an address and port no other listener uses");
  }
  const modeGiven = r.has("mode");
  const mode = r.oneOf("mode", TCP_MODES, "plain");
  if (!modeGiven) r.problem("mode", "missing", 'one of "terminate", "passthrough", "plain"');
  const site = r.string("site");
  if (mode === "terminate" && site === undefined)
    r.problem("site", 'missing: mode = "terminate" needs the site whose certificate it serves', 'the name of a route file (without ".toml") with tls on');
  if (mode !== "terminate" && site !== undefined)
    r.problem("site", `is set on a route with mode = "${mode}", which serves no certificate`, 'mode = "terminate", or no site');
  const sni = readSni(r, mode, discoverNames);
  const hasDefault = r.has("default");
  if (hasDefault && mode !== "passthrough") r.problem("default", `is set on a route with mode = "${mode}"`, 'mode = "passthrough", or upstreams');
  // `default` is another word for the upstreams of a passthrough route (the connections no [[tcp.sni]] entry takes); one of the two, not both.
  if (hasDefault && r.has("upstreams")) r.problem("default", "is set beside upstreams, which mean the same", "one of default and upstreams");
  const upstreams = readUpstreams(r, hasDefault ? "default" : "upstreams", mode !== "passthrough" || sni.length === 0, discoverNames);
  const proxy = r.value("send_proxy_protocol");
  if (proxy !== undefined && proxy !== 2)
    r.problem("send_proxy_protocol", `${JSON.stringify(proxy)} is not supported`, "2 (PROXY protocol version 2), or no key");
  const route: TcpRoute = {
    entry,
    name: name ?? "",
    listen: listen ?? { text: "", hostname: "", port: 0 },
    mode,
    site,
    upstreams,
    sni,
    sendProxyProtocol: proxy === 2 ? 2 : undefined,
    idleTimeout: r.duration("idle_timeout", TCP_DEFAULTS.idleTimeout),
    connectTimeout: r.duration("connect_timeout", TCP_DEFAULTS.connectTimeout),
    handshakeTimeout: r.duration("handshake_timeout", TCP_DEFAULTS.handshakeTimeout),
    maxConnectionsPerUpstream: r.integer("max_connections_per_upstream", TCP_DEFAULTS.maxConnectionsPerUpstream, 1, 10_000_000),
    failCooldown: r.duration("fail_cooldown", TCP_DEFAULTS.failCooldown),
    health: readHealth(r),
  };
  for (const key of ["idle_timeout", "connect_timeout", "handshake_timeout"] as const) {
    const ms = key === "idle_timeout" ? route.idleTimeout : key === "connect_timeout" ? route.connectTimeout : route.handshakeTimeout;
    if (ms < 100) r.problem(key, "is shorter than 100ms", 'a duration such as "5s"');
  }
  r.done();
  return listen === undefined ? undefined : route;
}

/**
 * readTcpRoutes reads every [[tcp]] entry; listeners are the addresses of [listen] (by key), which no entry may share; discoverNames ([resolver] servers are
 * set) makes host names in upstreams discovered. Problems go to the reader; an entry without a usable listen address is left out (the config is refused
 * anyway).
 */
export function readTcpRoutes(r: Reader, listeners: Record<string, Address | undefined>, discoverNames = false): TcpRoute[] {
  const taken: [string, Address][] = Object.entries(listeners)
    .filter((e): e is [string, Address] => e[1] !== undefined)
    .map(([k, a]) => [`listen.${k}`, a]);
  const names = new Set<string>();
  const out: TcpRoute[] = [];
  r.tableList("tcp").forEach((t, i) => {
    const route = readOne(t, i, taken, names, discoverNames);
    if (route === undefined) return;
    out.push(route);
    taken.push([`tcp[${i}] (${route.name || "no name"})`, route.listen]);
  });
  return out;
}

/**
 * checkTcpSites finds the problems of terminate routes with the sites they name, once every route file is read: a site that does not exist, or that has no
 * certificate (tls = "off"). lineOf gives the line of a key path of config.toml.
 */
export function checkTcpSites(routes: readonly TcpRoute[], sites: readonly SiteConfig[], file: string, lineOf: (path: string) => number): Problem[] {
  const byName = new Map(sites.map((s) => [s.name, s]));
  const problems: Problem[] = [];
  for (const t of routes) {
    if (t.mode !== "terminate" || t.site === undefined) continue;
    const path = `tcp[${t.entry}].site`;
    const site = byName.get(t.site);
    const at = (message: string, expected: string) => problems.push({ file, line: lineOf(path), path, message, expected });
    if (site === undefined)
      at(
        `no route file ${JSON.stringify(`${t.site}.toml`)} in routes_dir`,
        `the name of a route file whose certificate terminates TLS (${[...byName.keys()].join(", ") || "none exist"})`,
      );
    else if (site.tls.mode === "off")
      at(`site ${JSON.stringify(t.site)} has tls = "off", so no certificate`, 'a site with tls = "acme", "internal" or "manual"');
  }
  return problems;
}
