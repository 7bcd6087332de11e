/** Upstream discovery through DNS: an upstream named by a host name (A + AAAA) or by an SRV name (RFC 2782), re-resolved when its TTL runs out, keeping the last good answer while DNS fails. */
import { readFileSync } from "node:fs";
import * as net from "../lib/ip.ts";
import { normalizeName } from "../lib/dns-wire.ts";
import { ResolveError, resolve, type RecordOf, type RecordType, type ResolveResult, type ResolverServer } from "./resolver.ts";

/**
 * DiscoveredEndpoint is one address to send requests to: url like "http://10.1.2.3:8080" or "http://[fd00::1]:8080", and weight (1 for A/AAAA, the SRV weight
 * otherwise, 0 counted as 1).
 */
export type DiscoveredEndpoint = { readonly url: string; readonly weight: number };

/**
 * DnsDiscoveryOptions bounds refreshes: the answer's TTL clamped to [minTtlMs (1000), maxTtlMs (300000)], failRetryMs (5000) after a failure, timeoutMs (2000)
 * per server and question.
 */
export type DnsDiscoveryOptions = { readonly minTtlMs?: number; readonly maxTtlMs?: number; readonly failRetryMs?: number; readonly timeoutMs?: number };

/** DiscoveryTarget is what an upstream URL asks for: A + AAAA of host, used with port; or SRV of name, whose records give targets and ports. */
export type DiscoveryTarget =
  | { readonly kind: "host"; readonly scheme: "http" | "https"; readonly host: string; readonly port: number }
  | { readonly kind: "srv"; readonly scheme: "http" | "https"; readonly name: string };

const EXAMPLE = `expected "http://web.default.svc.cluster.local:8080" (A/AAAA of a host name) or "srv+http://_http._tcp.web.default.svc.cluster.local" (SRV; https and srv+https too)`;

/**
 * parseDiscoveryUrl reads an upstream URL for DNS discovery: http(s)://HOST[:PORT] resolves HOST's A and AAAA (port defaults by scheme); srv+http(s)://NAME
 * resolves NAME's SRV records. Host names are fully qualified (no resolv.conf search list). Throws an Error saying what was expected.
 */
export function parseDiscoveryUrl(upstream: string): DiscoveryTarget {
  const bad = (why: string): never => {
    throw new Error(`upstream ${JSON.stringify(upstream)} ${why}: ${EXAMPLE}`);
  };
  let u: URL;
  try {
    u = new URL(upstream);
  } catch {
    return bad("is not a URL");
  }
  const srv = u.protocol.startsWith("srv+");
  const scheme = u.protocol.slice(srv ? 4 : 0, -1);
  if (scheme !== "http" && scheme !== "https") return bad(`has scheme ${u.protocol.slice(0, -1)}`);
  if (u.username || u.password) bad("has user info");
  if ((u.pathname !== "" && u.pathname !== "/") || u.search || u.hash) bad("has a path, query or fragment");
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  if (net.isIP(host)) bad("names an ip address; dns discovery needs a host name (list addresses as static upstreams)");
  let name = "";
  try {
    name = normalizeName(host);
  } catch (err) {
    bad(`has a host that is not a dns name (${(err as Error).message})`);
  }
  if (name === "") bad("has no host name");
  if (srv) return u.port ? bad("has a port; with srv the records give the ports") : { kind: "srv", scheme, name };
  return { kind: "host", scheme, host: name, port: u.port ? Number(u.port) : scheme === "https" ? 443 : 80 };
}

/** parseResolvConf returns the nameserver lines of a resolv.conf (port 53); search, ndots and options are ignored. */
export function parseResolvConf(text: string): ResolverServer[] {
  const out: ResolverServer[] = [];
  for (const line of text.split("\n")) {
    const [key, value] = line
      .replace(/[#;].*$/, "")
      .trim()
      .split(/\s+/);
    if (key === "nameserver" && value && net.isIP(value.replace(/%.*$/, ""))) out.push({ host: value, port: 53 });
  }
  return out;
}

/** systemResolvers reads the nameservers of /etc/resolv.conf once; when it is missing or has none, 127.0.0.1:53, as resolv.conf(5) says. */
export function systemResolvers(path = "/etc/resolv.conf"): ResolverServer[] {
  let servers: ResolverServer[] = [];
  try {
    servers = parseResolvConf(readFileSync(path, "utf8"));
  } catch {
    /* missing: use the default */
  }
  return servers.length > 0 ? servers : [{ host: "127.0.0.1", port: 53 }];
}

const endpointUrl = (scheme: string, address: string, port: number): string => `${scheme}://${net.isIPv6(address) ? `[${address}]` : address}:${port}`;

/**
 * DnsDiscovery keeps the endpoints of one upstream URL in step with DNS. endpoints() is a cached array (no I/O); a background
 * timer re-resolves when the smallest TTL, clamped to [minTtlMs, maxTtlMs], runs out.
 * - A failed lookup (TIMEOUT, NETWORK, SERVFAIL, REFUSED, ...) keeps that lookup's last good answer, is reported once per refresh
 *   through onError (the first failure), and the next refresh comes after failRetryMs. Stale answers are kept for as long as DNS fails.
 * - NXDOMAIN and NODATA are answers: the name has no addresses, so the list empties (the operator scaled to zero or removed the
 *   name); they are cached for the SOA's negative TTL (RFC 2308 §5), clamped like any TTL.
 * - SRV (RFC 2782): each target's A and AAAA are resolved; each address gets its record's port and weight (0 counts as 1, so it
 *   keeps a small share next to weighted peers); only the lowest-priority group that has addresses is used (higher priorities
 *   are fallbacks); a target of "." means no service. The same URL from two records keeps the larger weight.
 */
export class DnsDiscovery {
  /** ready settles (never rejects) after the first refresh, good or failed, or on stop(). */
  readonly ready: Promise<void>;
  readonly target: DiscoveryTarget;
  readonly servers: readonly ResolverServer[];
  private readonly minTtlMs: number;
  private readonly maxTtlMs: number;
  private readonly failRetryMs: number;
  private readonly timeoutMs: number;
  private current: readonly DiscoveredEndpoint[] = Object.freeze([]);
  private currentKey = "";
  private answers = new Map<string, ResolveResult>();
  private readonly changeListeners = new Set<(endpoints: readonly DiscoveredEndpoint[]) => void>();
  private readonly errorListeners = new Set<(error: ResolveError) => void>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private started = false;
  private stopped = false;
  private settle: () => void = () => {};

  /**
   * constructor checks the URL (parseDiscoveryUrl) and options, throwing an Error for people; servers [] means /etc/resolv.conf's. Nothing is resolved before
   * start().
   */
  constructor(
    readonly upstream: string,
    servers: readonly ResolverServer[] = [],
    options: DnsDiscoveryOptions = {},
  ) {
    this.target = parseDiscoveryUrl(upstream);
    this.servers = servers.length > 0 ? [...servers] : systemResolvers();
    this.minTtlMs = options.minTtlMs ?? 1000;
    this.maxTtlMs = options.maxTtlMs ?? 300_000;
    this.failRetryMs = options.failRetryMs ?? 5000;
    this.timeoutMs = options.timeoutMs ?? 2000;
    for (const [k, v] of Object.entries({ minTtlMs: this.minTtlMs, maxTtlMs: this.maxTtlMs, failRetryMs: this.failRetryMs, timeoutMs: this.timeoutMs })) {
      if (!Number.isFinite(v) || v <= 0) throw new Error(`dns discovery option ${k} is ${v}: expected a positive number of milliseconds`);
    }
    if (this.minTtlMs > this.maxTtlMs) throw new Error(`dns discovery option minTtlMs (${this.minTtlMs}) is above maxTtlMs (${this.maxTtlMs})`);
    this.ready = new Promise((r) => {
      this.settle = r;
    });
  }

  /** start runs the first refresh now and keeps refreshing in the background; calling it again does nothing. */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    void this.cycle();
  }

  /** stop cancels the refresh timer; a refresh in flight finishes without publishing. ready settles. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.settle();
  }

  /** endpoints returns the current list, sorted by url; the same frozen array until the set changes. */
  endpoints(): readonly DiscoveredEndpoint[] {
    return this.current;
  }

  /**
   * onChange calls listener with the new list whenever the set of URLs or weights changes (not on a refresh that finds the same); returns an unsubscribe
   * function. A listener that throws is ignored.
   */
  onChange(listener: (endpoints: readonly DiscoveredEndpoint[]) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /**
   * onError calls listener once per failed refresh with the first lookup's ResolveError (rcode, server, question); returns an unsubscribe function. A listener
   * that throws is ignored.
   */
  onError(listener: (error: ResolveError) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  /** cycle refreshes and schedules the next; it never throws, since it runs from a timer. */
  private async cycle(): Promise<void> {
    let delay = this.failRetryMs;
    try {
      delay = await this.refresh();
    } catch (err) {
      this.emit(this.errorListeners, new ResolveError(this.upstream, [{ server: "", rcode: "INTERNAL", detail: String(err) }]));
    }
    this.settle();
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.cycle(), delay);
    this.timer.unref?.();
  }

  /** refresh resolves everything the target needs, publishes the list and returns the delay before the next refresh. */
  private async refresh(): Promise<number> {
    const prev = this.answers;
    const next = new Map<string, ResolveResult>();
    const inflight = new Map<string, Promise<readonly unknown[]>>();
    const failures: ResolveError[] = [];
    const lookup = <T extends RecordType>(name: string, type: T): Promise<readonly RecordOf<T>[]> => {
      const key = `${name} ${type}`;
      const p =
        inflight.get(key) ??
        resolve(name, type, this.servers, this.timeoutMs).then(
          (r) => {
            next.set(key, r);
            return r.records;
          },
          (err: unknown) => {
            failures.push(err instanceof ResolveError ? err : new ResolveError(key, [{ server: "", rcode: "INTERNAL", detail: String(err) }]));
            const old = prev.get(key);
            if (old) next.set(key, old);
            return old?.records ?? [];
          },
        );
      inflight.set(key, p);
      return p as Promise<readonly RecordOf<T>[]>;
    };
    const scheme = this.target.scheme;
    const addresses = async (host: string, port: number, weight: number): Promise<DiscoveredEndpoint[]> => {
      const [a, aaaa] = await Promise.all([lookup(host, "A"), lookup(host, "AAAA")]);
      return [...a, ...aaaa].map((r) => ({ url: endpointUrl(scheme, r.address, port), weight }));
    };
    let found: DiscoveredEndpoint[];
    if (this.target.kind === "host") {
      found = await addresses(this.target.host, this.target.port, 1);
    } else {
      const records = (await lookup(this.target.name, "SRV")).filter((r) => r.target !== "");
      const groups = await Promise.all(records.map(async (r) => ({ priority: r.priority, list: await addresses(r.target, r.port, Math.max(1, r.weight)) })));
      const usable = groups.filter((g) => g.list.length > 0);
      const best = Math.min(...usable.map((g) => g.priority));
      found = usable.filter((g) => g.priority === best).flatMap((g) => g.list);
    }
    if (this.stopped) return this.failRetryMs;
    this.answers = next;
    this.publish(found);
    if (failures.length > 0) {
      this.emit(this.errorListeners, failures[0]!);
      return this.failRetryMs;
    }
    const ttlMs = Math.min(...[...next.values()].map((r) => r.ttl * 1000));
    return Math.min(this.maxTtlMs, Math.max(this.minTtlMs, ttlMs));
  }

  /** publish dedupes (larger weight wins) and sorts found, and tells listeners when it differs from the current list. */
  private publish(found: readonly DiscoveredEndpoint[]): void {
    const byUrl = new Map<string, number>();
    for (const e of found) byUrl.set(e.url, Math.max(e.weight, byUrl.get(e.url) ?? 0));
    const list = [...byUrl].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([url, weight]) => Object.freeze({ url, weight }));
    const key = list.map((e) => `${e.url} ${e.weight}`).join("\n");
    if (key === this.currentKey) return;
    this.currentKey = key;
    this.current = Object.freeze(list);
    this.emit(this.changeListeners, this.current);
  }

  private emit<A>(listeners: ReadonlySet<(arg: A) => void>, arg: A): void {
    for (const l of listeners) {
      try {
        l(arg);
      } catch {
        /* a listener's bug must not stop the refresh timer */
      }
    }
  }
}
