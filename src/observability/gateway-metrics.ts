/** The gateway's metrics, by the names in the operator contract; one registry per process, surviving reloads. */
import { Counter, Gauge, Histogram, Registry, type Cell, type HistogramCell } from "./metrics.ts";
import { VERSION } from "../version.ts";
import { maxFds, openFds } from "./process-fds.ts";

/** registry is the process-wide metrics registry rendered at /metrics. */
export const registry = new Registry();

export const requestsTotal = registry.register(new Counter("gatehouse_requests_total", "Requests answered, by route and status code.", ["route", "code"]));
export const requestDuration = registry.register(
  new Histogram("gatehouse_request_duration_seconds", "Time from request to the end of the response, by route.", ["route"]),
);
export const upstreamRequests = registry.register(
  new Counter("gatehouse_upstream_requests_total", "Attempts to reach an upstream endpoint, by outcome (response, refused, error, timeout, aborted).", [
    "route",
    "upstream",
    "outcome",
  ]),
);
/** upstreamHealthy is refreshed at scrape time by the collector that the upstream registry installs. */
export const upstreamHealthy = registry.register(
  new Gauge("gatehouse_upstream_healthy", "1 when the endpoint may receive traffic, 0 while it is ejected.", ["route", "upstream"], (g) =>
    healthCollector?.(g),
  ),
);
export const upstreamDuration = registry.register(
  new Histogram("gatehouse_upstream_response_seconds", "Time from sending a request to an endpoint to its response headers, by route and endpoint.", [
    "route",
    "upstream",
  ]),
);
export const retries = registry.register(
  new Counter(
    "gatehouse_upstream_retries_total",
    "Requests sent to another endpoint after one failed without a response (idempotent requests, within the retry budget).",
    ["route"],
  ),
);
export const dnsRefreshes = registry.register(
  new Counter(
    "gatehouse_upstream_dns_events_total",
    "DNS discovery of upstream names: answers that changed the endpoints, and failed refreshes (the last answer stays).",
    ["route", "result"],
  ),
);
export const upstreamEjections = registry.register(
  new Counter("gatehouse_upstream_ejections_total", "Passive ejections of an endpoint (refused connections, or max_fails errors in a row).", [
    "route",
    "upstream",
  ]),
);
export const healthChecks = registry.register(
  new Counter("gatehouse_upstream_health_checks_total", "Active health checks, by result (ok, fail).", ["route", "upstream", "result"]),
);
export const rateLimited = registry.register(new Counter("gatehouse_rate_limited_total", "Requests answered 429 by a rate limit of their route.", ["route"]));
export const accessDenied = registry.register(
  new Counter(
    "gatehouse_access_denied_total",
    "Requests refused by their route's access policy: reason ip (403), basic_auth (401), forward_auth (the auth service's refusal, or 503/504 when it failed).",
    ["route", "reason"],
  ),
);
export const cacheRequests = registry.register(
  new Counter("gatehouse_cache_requests_total", "Cache lookups, by route and result (hit, miss, stale, revalidated, bypass).", ["route", "result"]),
);
export const cacheSize = registry.register(
  new Gauge("gatehouse_cache_size_bytes", "Bytes held by the response cache (bodies, headers and a fixed overhead per object)."),
);
export const cacheObjects = registry.register(new Gauge("gatehouse_cache_objects", "Responses held by the cache."));
export const cacheDiskSize = registry.register(
  new Gauge("gatehouse_cache_disk_size_bytes", "Bytes of files in the cache's disk tier ([cache] dir), shared by the node's workers."),
);
export const cacheDiskDamaged = registry.register(
  new Counter("gatehouse_cache_disk_damaged_total", "Files of the disk tier found damaged (length or CRC-32 not as their head says) and removed."),
);
export const cacheEvictions = registry.register(new Counter("gatehouse_cache_evictions_total", "Responses evicted from the cache to stay within max_size."));
export const certificateExpiry = registry.register(
  new Gauge("gatehouse_certificate_expiry_timestamp_seconds", "notAfter of each served certificate, as a Unix time.", ["name"]),
);
export const certificateRenewal = registry.register(
  new Gauge(
    "gatehouse_certificate_renewal_timestamp_seconds",
    "When the next renewal attempt (or check of the CA's renewal window) of each certificate is due, as a Unix time.",
    ["name"],
  ),
);
export const certificateRenewalPlanned = registry.register(
  new Gauge(
    "gatehouse_certificate_renewal_planned_timestamp_seconds",
    "When each certificate is due for renewal (the CA's ARI window, else renew_fraction of its lifetime), as a Unix time; it stays put while renewals fail.",
    ["name"],
  ),
);
export const certificateExports = registry.register(
  new Counter(
    "gatehouse_certificate_exports_total",
    "Exports of a site's certificate to the files of its [export] table, by result (written; unchanged: the files held it already; failure: a write failed; refused: the certificate failed verification).",
    ["name", "result"],
  ),
);
export const certificateExportRuns = registry.register(
  new Counter(
    "gatehouse_certificate_export_runs_total",
    "Runs of the command of a site's [export] table after its files changed, by result (success: exit status 0; failure; timeout: killed at its timeout).",
    ["name", "result"],
  ),
);
export const certificateExportCurrent = registry.register(
  new Gauge(
    "gatehouse_certificate_export_current",
    "1 when a site's exported files hold the certificate it serves and their command ran; 0 while an export fails (and is retried) or is refused.",
    ["name"],
  ),
);
export const storageUp = registry.register(
  new Gauge(
    "gatehouse_storage_up",
    "1 while the certificate storage answers (always, for certs_dir); 0 while etcd cannot be reached and the local copy serves.",
  ),
);
export const acmeOrders = registry.register(new Counter("gatehouse_acme_orders_total", "ACME orders, by result (success, failure).", ["result"]));
export const tlsSwaps = registry.register(
  new Counter(
    "gatehouse_tls_listener_swaps_total",
    "Times the HTTPS listener was replaced to serve a changed set of certificates (Bun's listener, with listen.http2 = true).",
  ),
);
export const tlsUpdates = registry.register(
  new Counter(
    "gatehouse_tls_certificate_updates_total",
    "Times the HTTPS listener took a changed set of certificates in place, for handshakes from then on (the front end's listener).",
  ),
);
export const configReloads = registry.register(new Counter("gatehouse_config_reloads_total", "Config reloads, by result (success, failure).", ["result"]));
export const configLastReloadSuccess = registry.register(
  new Gauge("gatehouse_config_last_reload_success", "1 when the last reload (or the start) applied its config, 0 when it was rejected."),
);
export const configLastReloadTime = registry.register(new Gauge("gatehouse_config_last_reload_timestamp_seconds", "Unix time of the last reload attempt."));
export const inflightRequests = registry.register(
  new Gauge("gatehouse_inflight_requests", "Requests being answered now, over all listeners.", [], (g) => inflightCollector?.(g)),
);
export const websocketsOpen = registry.register(new Gauge("gatehouse_websockets_open", "Proxied WebSocket connections open now."));
export const tcpConnections = registry.register(
  new Counter("gatehouse_tcp_connections_total", "Connections accepted by the listener of a [[tcp]] route.", ["route"]),
);
export const tcpOpen = registry.register(new Gauge("gatehouse_tcp_connections_open", "Connections of a [[tcp]] route open now.", ["route"]));
export const tcpBytes = registry.register(
  new Counter(
    "gatehouse_tcp_bytes_total",
    "Bytes passed by a [[tcp]] route: in from clients to upstreams, out from upstreams to clients (decrypted, for terminate).",
    ["route", "direction"],
  ),
);
export const tcpUpstreamFailures = registry.register(
  new Counter("gatehouse_tcp_upstream_failures_total", "Connects to an upstream endpoint of a [[tcp]] route that failed (refused, unreachable, timed out).", [
    "route",
  ]),
);
export const tcpRefused = registry.register(
  new Counter(
    "gatehouse_tcp_refused_total",
    "Connections of a [[tcp]] route closed before they reached an upstream, by reason: no_upstream (every endpoint failed or is full), no_sni_match, handshake (no ClientHello, a failed TLS handshake, a bad PROXY preamble, or its timeout), limit ([limits] max_connections or max_connections_per_client).",
    ["route", "reason"],
  ),
);
export const buildInfo = registry.register(new Gauge("gatehouse_build_info", "Always 1; the labels say which build runs.", ["version", "bun"]));
const startTime = registry.register(new Gauge("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds."));
registry.register(
  new Gauge("process_resident_memory_bytes", "Resident memory size in bytes.", [], (g) => {
    g.labels().value = process.memoryUsage.rss();
  }),
);
registry.register(
  new Counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", [], (c) => {
    const u = process.cpuUsage();
    c.labels().value = (u.user + u.system) / 1e6;
  }),
);
registry.register(
  new Gauge("process_open_fds", "Number of open file descriptors.", [], (g) => {
    const n = openFds();
    if (n !== undefined) g.labels().value = n;
  }),
);
registry.register(
  new Gauge("process_max_fds", "Maximum number of open file descriptors (the soft limit, RLIMIT_NOFILE).", [], (g) => {
    const n = maxFds();
    if (n !== undefined) g.labels().value = n;
  }),
);

buildInfo.labels(VERSION, Bun.version).value = 1;
startTime.labels().value = Math.floor(Date.now() / 1000 - performance.now() / 1000);
cacheSize.labels().value = 0;
cacheObjects.labels().value = 0;
cacheEvictions.labels();
websocketsOpen.labels().value = 0;
configReloads.labels("success");
acmeOrders.labels("success");
acmeOrders.labels("failure");
configReloads.labels("failure");

let healthCollector: ((g: Gauge) => void) | undefined;
let inflightCollector: ((g: Gauge) => void) | undefined;

/** setHealthCollector installs the function that fills gatehouse_upstream_healthy at scrape time. */
export function setHealthCollector(fn: (g: Gauge) => void): void {
  healthCollector = fn;
}

/** setInflightCollector installs the function that fills gatehouse_inflight_requests at scrape time. */
export function setInflightCollector(fn: (g: Gauge) => void): void {
  inflightCollector = fn;
}

/** RouteStats are one route's metric cells, looked up once per route and kept by it, so counting a request is a Map hit on the status code. */
export class RouteStats {
  private readonly codes = new Map<number, Cell>();
  private readonly lookups = new Map<string, Cell>();
  readonly duration: HistogramCell;

  constructor(readonly route: string) {
    this.duration = requestDuration.labels(route);
  }

  /** record counts one finished request. */
  record(status: number, seconds: number): void {
    let c = this.codes.get(status);
    if (!c) {
      c = requestsTotal.labels(this.route, String(status));
      this.codes.set(status, c);
    }
    c.value++;
    this.duration.observe(seconds);
  }

  /** cache counts one cache lookup of the route by its result; the five series appear with the route's first lookup. */
  cache(result: string): void {
    let c = this.lookups.get(result);
    if (!c) {
      for (const r of ["hit", "miss", "stale", "revalidated", "bypass"]) this.lookups.set(r, cacheRequests.labels(this.route, r));
      c = this.lookups.get(result) ?? cacheRequests.labels(this.route, result);
    }
    c.value++;
  }
}

const routeStats = new Map<string, RouteStats>();

/** statsFor returns the route's stats, the same object across reloads while the route name stays. */
export function statsFor(route: string): RouteStats {
  let s = routeStats.get(route);
  if (!s) {
    s = new RouteStats(route);
    routeStats.set(route, s);
  }
  return s;
}

/** forgetEndpoint drops every series of an endpoint that left the config or DNS, so rolling pods do not grow the label sets without bound. */
export function forgetEndpoint(route: string, url: string): void {
  const other = (v: readonly string[]) => !(v[0] === route && v[1] === url);
  for (const m of [upstreamRequests, upstreamDuration, upstreamEjections, healthChecks]) m.retain(other);
}
