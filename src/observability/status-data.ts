/** Gathering the status page's data from a running instance (a gateway or a supervisor): its live config, what its admin state reports, its reload history. */
import { relative } from "node:path";
import type { Config, PathRoute, SiteConfig, TcpRoute, TcpUpstream } from "../config/types.ts";
import { VERSION } from "../version.ts";
import type { AdminState } from "./admin.ts";
import { registry } from "./gateway-metrics.ts";
import type {
  CacheRow,
  CertificateRow,
  EndpointRow,
  ExportRow,
  ReloadRow,
  RouteRow,
  SiteRow,
  StatusData,
  TcpFigures,
  TcpRow,
  WorkerRow,
} from "./status-page.ts";

/** routeRow says what a route does, where to, and which of cache and policies it has on. */
function routeRow(r: PathRoute): RouteRow {
  const a = r.action;
  let targets: string[] = [];
  if (a?.kind === "proxy") targets = a.upstreams.map((u) => (u.discover ? `${u.url} (DNS)` : u.url));
  else if (a?.kind === "static") targets = [a.root];
  else if (a?.kind === "redirect") targets = [`${a.status} → ${a.to}${a.keepPath ? " (+ path)" : ""}`];
  const p = r.policy;
  const policies = p.rateLimits.map((l) => `rate limit ${l.rate} (burst ${l.burst}) per ${l.text}`);
  if (p.access) policies.push("IP access rules");
  if (p.basicAuth) policies.push("basic auth");
  if (p.forwardAuth) policies.push(`forward auth ${p.forwardAuth.url}`);
  if (r.cache?.enabled && r.cache.bypassCookies.length) policies.push(`cache bypass cookies ${r.cache.bypassCookies.join(", ")}`);
  return { name: r.name, prefix: r.prefix, kind: a?.kind ?? "none", targets, cache: r.cache?.enabled ?? false, policies };
}

function siteRow(s: SiteConfig, dir: string): SiteRow {
  return {
    name: s.name,
    file: relative(dir, s.file),
    hosts: s.hosts,
    tls: s.tls.mode,
    maintenance: s.pages.maintenance,
    routes: s.routes.map(routeRow),
    ...(s.certificateOnly ? { certificateOnly: true } : {}),
  };
}

/** Described is the JSON of GET /certificates and GET /upstreams entries, as far as the page reads it. */
type Described = Record<string, unknown>;

const str = (v: unknown): string | null => (typeof v === "string" ? v : null);

/** certificateRow reads one GET /certificates entry. */
function certificateRow(c: Described): CertificateRow {
  return {
    name: String(c.name),
    source: String(c.source),
    names: Array.isArray(c.names) ? c.names.map(String) : [],
    notAfter: str(c.not_after),
    // When the certificate is due (null for manual ones): fixed while renewals fail, so a past time means overdue.
    plannedRenewal: str(c.renewal_planned),
    nextCheck: str(c.next_check),
    failures: Number(c.failures ?? 0),
    lastError: str(c.last_error),
    export: exportRow(c.export),
  };
}

/** exportRow reads the `export` object of a GET /certificates entry; null when the site has no [export]. */
function exportRow(e: unknown): ExportRow | null {
  if (typeof e !== "object" || e === null) return null;
  const x = e as Described;
  return {
    cert: String(x.cert),
    key: String(x.key),
    lastResult: str(x.last_result),
    failures: Number(x.failures ?? 0),
    lastError: str(x.last_error),
    nextRetry: str(x.next_retry),
  };
}

function endpointRow(e: Described): EndpointRow {
  return {
    route: String(e.route),
    upstream: String(e.upstream),
    ...(typeof e.worker === "number" ? { worker: e.worker } : {}),
    available: e.available === true,
    healthy: e.healthy === true,
    inflight: Number(e.inflight ?? 0),
    ejectedForMs: Number(e.ejected_for_ms ?? 0),
    consecutiveFailures: Number(e.consecutive_failures ?? 0),
    lastError: str(e.last_error),
    lastCheck: (e.last_check as EndpointRow["lastCheck"]) ?? null,
  };
}

const SAMPLE_RE = /^(gatehouse_cache_size_bytes|gatehouse_cache_objects|gatehouse_cache_requests_total)(?:\{(.*)\})? (\S+)$/;

/**
 * cacheFromMetrics sums the cache's series of a metrics exposition (this process's, or a supervisor's merged one), whatever other labels (route) they carry;
 * maxBytes is the configured bound of all caches together.
 */
export function cacheFromMetrics(text: string, maxBytes: number): CacheRow {
  let sizeBytes = 0;
  let objects = 0;
  const lookups: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m = SAMPLE_RE.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (!Number.isFinite(v)) continue;
    if (m[1] === "gatehouse_cache_size_bytes") sizeBytes += v;
    else if (m[1] === "gatehouse_cache_objects") objects += v;
    else {
      const result = /(?:^|,)result="([^"]*)"/.exec(m[2] ?? "")?.[1];
      if (result !== undefined) lookups[result] = (lookups[result] ?? 0) + v;
    }
  }
  return { sizeBytes, maxBytes, objects, lookups };
}

const TCP_RE = /^gatehouse_tcp_(connections_total|connections_open|bytes_total|upstream_failures_total|refused_total)\{(.*)\} (\S+)$/;

const label = (labels: string, name: string): string | undefined => new RegExp(`(?:^|,)${name}="([^"]*)"`).exec(labels)?.[1];

/**
 * tcpFromMetrics reads the gatehouse_tcp_* series of a metrics exposition (this process's, or a supervisor's merged one: sums over workers) per route name;
 * a route without series (no connection yet in this process) is absent.
 */
export function tcpFromMetrics(text: string): Map<string, TcpFigures> {
  type Mutable = { -readonly [K in keyof TcpFigures]: TcpFigures[K] } & { refused: Record<string, number> };
  const out = new Map<string, Mutable>();
  for (const line of text.split("\n")) {
    const m = TCP_RE.exec(line);
    if (!m) continue;
    const route = label(m[2]!, "route");
    const v = Number(m[3]);
    if (route === undefined || !Number.isFinite(v)) continue;
    let f = out.get(route);
    if (!f) out.set(route, (f = { open: 0, accepted: 0, bytesIn: 0, bytesOut: 0, upstreamFailures: 0, refused: {} }));
    if (m[1] === "connections_total") f.accepted += v;
    else if (m[1] === "connections_open") f.open += v;
    else if (m[1] === "upstream_failures_total") f.upstreamFailures += v;
    else if (m[1] === "bytes_total") {
      const d = label(m[2]!, "direction");
      if (d === "in") f.bytesIn += v;
      else if (d === "out") f.bytesOut += v;
    } else {
      const reason = label(m[2]!, "reason");
      if (reason !== undefined) f.refused[reason] = (f.refused[reason] ?? 0) + v;
    }
  }
  return out;
}

const NO_FIGURES: TcpFigures = { open: 0, accepted: 0, bytesIn: 0, bytesOut: 0, upstreamFailures: 0, refused: {} };

const tcpUrls = (us: readonly TcpUpstream[]): string[] => us.map((u) => (u.discover && u.url.startsWith("tcp://") ? `${u.url} (DNS)` : u.url));

/** tcpRow is one [[tcp]] entry as the page shows it, with its figures (zero when it has no series yet). */
function tcpRow(t: TcpRoute, figures: TcpFigures | undefined): TcpRow {
  return {
    name: t.name,
    listen: t.listen.text,
    mode: t.mode,
    ...(t.mode === "terminate" && t.site !== undefined ? { site: t.site } : {}),
    sni: t.sni.map((e) => ({ hosts: e.hosts, upstreams: tcpUrls(e.upstreams) })),
    upstreams: tcpUrls(t.upstreams),
    proxyV2: t.sendProxyProtocol === 2,
    ...(figures ?? NO_FIGURES),
  };
}

/**
 * gatherStatus collects the status page's data: sites, routes and [[tcp]] entries from config, certificates, endpoints and workers from state, the cache
 * and the [[tcp]] figures from state's metrics (merged over workers under a supervisor) or this process's registry; called per GET /status, never on the
 * request path.
 */
export async function gatherStatus(state: AdminState, config: Config | undefined, reloads: readonly ReloadRow[]): Promise<StatusData> {
  const now = Date.now();
  const g = config?.global;
  const sites = (config?.sites ?? []).map((s) => siteRow(s, g?.dir ?? "."));
  const workers = state.workers?.() as WorkerRow[] | undefined;
  const metrics = state.metrics ? await state.metrics() : registry.render();
  const cache = cacheFromMetrics(metrics, (g?.cache.maxSize ?? 0) * Math.max(1, workers?.length ?? 1));
  const tcpFigures = tcpFromMetrics(metrics);
  const tcp = (g?.tcp ?? []).map((t) => tcpRow(t, tcpFigures.get(t.name)));
  const caching = sites.some((s) => s.routes.some((r) => r.cache));
  return {
    now,
    version: VERSION,
    ready: state.ready(),
    configFile: g?.file,
    sites,
    certificates: (state.certificates() as Described[]).map(certificateRow),
    endpoints: ((await state.upstreams()) as Described[]).map(endpointRow),
    tcp,
    cache: caching || cache.objects > 0 ? cache : undefined,
    workers,
    reloads,
  };
}
