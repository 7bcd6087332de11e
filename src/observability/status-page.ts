/** The admin listener's status page (GET /status): one self-contained HTML document rendered from a plain StatusData object; no I/O, no scripts. */

/** RouteRow is one route of a site as the page shows it: what it does, where to, and which of cache and policies are on. */
export type RouteRow = {
  readonly name: string;
  readonly prefix: string;
  /** kind is the action: "none" for a site whose own prefix only has [[paths]] under it. */
  readonly kind: "proxy" | "static" | "redirect" | "none";
  /** targets are the upstream URLs, the static root, or the redirect's status and target. */
  readonly targets: readonly string[];
  readonly cache: boolean;
  /** policies are short labels ("rate limit 10/s per client", "basic auth", …). */
  readonly policies: readonly string[];
};

/** SiteRow is one route file. */
export type SiteRow = {
  readonly name: string;
  readonly file: string;
  readonly hosts: readonly string[];
  readonly tls: string;
  readonly maintenance: boolean;
  readonly routes: readonly RouteRow[];
  /** certificateOnly: the site only has a certificate (for its [export]) and serves no HTTP. */
  readonly certificateOnly?: boolean;
};

/** ExportRow is the state of a site's [export]: its files, how the last attempt went (ok, refused, failure, timeout; null: not yet) and the next retry. */
export type ExportRow = {
  readonly cert: string;
  readonly key: string;
  readonly lastResult: string | null;
  readonly failures: number;
  readonly lastError: string | null;
  readonly nextRetry: string | null;
};

/** CertificateRow is one TLS site's certificate (times are ISO 8601, null when unknown). */
export type CertificateRow = {
  readonly name: string;
  readonly source: string;
  readonly names: readonly string[];
  readonly notAfter: string | null;
  /** plannedRenewal is when the certificate is due for renewal (GET /certificates' renewal_planned: in the past when overdue); null for manual ones. */
  readonly plannedRenewal: string | null;
  readonly nextCheck: string | null;
  readonly failures: number;
  readonly lastError: string | null;
  /** export is the site's [export] state; null or absent when it has none. */
  readonly export?: ExportRow | null;
};

/** EndpointRow is one upstream endpoint (of one worker, with workers > 1). */
export type EndpointRow = {
  readonly route: string;
  readonly upstream: string;
  readonly worker?: number;
  readonly available: boolean;
  readonly healthy: boolean;
  readonly inflight: number;
  readonly ejectedForMs: number;
  readonly consecutiveFailures: number;
  readonly lastError: string | null;
  readonly lastCheck: { readonly time: string; readonly ok: boolean; readonly detail: string } | null;
};

/** CacheRow is the response cache's totals: bytes and objects held, the configured bound, and lookups by result (hit, miss, stale, revalidated, bypass). */
export type CacheRow = { readonly sizeBytes: number; readonly maxBytes: number; readonly objects: number; readonly lookups: Readonly<Record<string, number>> };

/** TcpFigures are a [[tcp]] route's live numbers from its gatehouse_tcp_* series: open now, accepted, bytes each way, failed connects, refusals by reason. */
export type TcpFigures = {
  readonly open: number;
  readonly accepted: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly upstreamFailures: number;
  readonly refused: Readonly<Record<string, number>>;
};

/** TcpRow is one [[tcp]] entry: its listener, mode, what it serves (terminate: site; passthrough: [[tcp.sni]] entries), upstream URLs, and its figures. */
export type TcpRow = TcpFigures & {
  readonly name: string;
  readonly listen: string;
  readonly mode: "terminate" | "passthrough" | "plain";
  /** site is the route file whose certificate terminates TLS (terminate only). */
  readonly site?: string;
  /** sni are a passthrough route's [[tcp.sni]] entries: server names and upstream URLs. */
  readonly sni: readonly { readonly hosts: readonly string[]; readonly upstreams: readonly string[] }[];
  /** upstreams are the upstream URLs (passthrough: its `default`, empty without one). */
  readonly upstreams: readonly string[];
  readonly proxyV2: boolean;
};

/** WorkerRow is one worker slot (GET /workers). */
export type WorkerRow = {
  readonly worker: number;
  readonly pid: number | null;
  readonly ready: boolean;
  readonly started: string | null;
  readonly restarts: number;
};

/** ReloadRow is one (re)load outcome; seq 0 is the start. */
export type ReloadRow = { readonly seq: number; readonly time: string; readonly result: "success" | "failure"; readonly problems: readonly string[] };

/** StatusData is everything the page shows; cache undefined: no route caches; workers undefined: one process, no supervisor. */
export type StatusData = {
  /** now is the time of rendering (epoch ms): days left and ages count from it. */
  readonly now: number;
  readonly version: string;
  readonly ready: boolean;
  readonly configFile: string | undefined;
  readonly sites: readonly SiteRow[];
  readonly certificates: readonly CertificateRow[];
  readonly endpoints: readonly EndpointRow[];
  /** tcp are the [[tcp]] routes; absent or empty: none. */
  readonly tcp?: readonly TcpRow[];
  readonly cache: CacheRow | undefined;
  readonly workers: readonly WorkerRow[] | undefined;
  /** reloads are the last outcomes, newest first. */
  readonly reloads: readonly ReloadRow[];
};

const DAY = 86_400_000;
/** EXPIRING_DAYS: a manual certificate (no renewal planned) with fewer days left is flagged. */
const EXPIRING_DAYS = 14;

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** escapeHtml makes text safe in HTML content and quoted attribute values. */
export function escapeHtml(text: string | number): string {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

const esc = escapeHtml;

type Tone = "ok" | "warn" | "bad" | "off";

/** badge is a status label: coloured, and always its word, so that it does not rely on colour (WCAG 1.4.1). */
function badge(tone: Tone, label: string): string {
  const mark = { ok: "✓", warn: "!", bad: "✗", off: "–" }[tone];
  return `<span class="b ${tone}"><span aria-hidden="true">${mark}</span> ${esc(label)}</span>`;
}

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  for (; n >= 1024 && i < units.length - 1; i++) n /= 1024;
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** when shows an ISO time as UTC to the second, with how far it is from now. */
function when(iso: string | null, now: number): string {
  if (!iso) return "–";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return esc(iso);
  const d = t - now;
  const a = Math.abs(d);
  const span =
    a < 60_000
      ? `${Math.round(a / 1000)} s`
      : a < 3_600_000
        ? `${Math.round(a / 60_000)} min`
        : a < 2 * DAY
          ? `${Math.round(a / 3_600_000)} h`
          : `${Math.round(a / DAY)} d`;
  const rel = d >= 0 ? `in ${span}` : `${span} ago`;
  return `<time datetime="${esc(iso)}">${esc(new Date(t).toISOString().replace("T", " ").slice(0, 19))} UTC</time> <small>(${rel})</small>`;
}

function list(items: readonly string[], sep = "<br>"): string {
  return items.length ? items.map(esc).join(sep) : "–";
}

function table(head: readonly string[], rows: readonly string[], cls = ""): string {
  return `<table${cls ? ` class="${cls}"` : ""}><thead><tr>${head.map((h) => `<th scope="col">${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

function row(cells: readonly string[]): string {
  return `<tr>${cells.map((c) => `<td>${c}</td>`).join("")}</tr>`;
}

function empty(text: string): string {
  return `<p class="empty">${esc(text)}</p>`;
}

function siteSection(s: SiteRow): string {
  const routes = s.routes.map((r) =>
    row([
      esc(r.name),
      `<code>${esc(r.prefix)}</code>`,
      esc(r.kind),
      list(r.targets),
      r.cache ? badge("ok", "cached") : badge("off", "no cache"),
      list(r.policies),
    ]),
  );
  const state = s.maintenance ? ` ${badge("warn", "maintenance")}` : "";
  if (s.certificateOnly)
    return `<h3 id="site-${esc(s.name)}">${esc(s.name)}</h3><p class="meta">hosts ${list(s.hosts, ", ")} · tls ${esc(s.tls)} · certificate only, serves no HTTP · <code>${esc(s.file)}</code></p>`;
  return `<h3 id="site-${esc(s.name)}">${esc(s.name)}${state}</h3><p class="meta">hosts ${list(s.hosts, ", ")} · tls ${esc(s.tls)} · <code>${esc(s.file)}</code></p>${table(
    ["Route", "Prefix", "Action", "Targets", "Cache", "Policies"],
    routes,
    "routes",
  )}`;
}

function certificateRow(c: CertificateRow, now: number): string {
  const left = c.notAfter ? Math.floor((Date.parse(c.notAfter) - now) / DAY) : undefined;
  // A managed certificate is in trouble once its planned renewal has passed (whatever its lifetime); a manual one when it nears its end.
  const due = c.plannedRenewal ? Date.parse(c.plannedRenewal) <= now : left !== undefined && left < EXPIRING_DAYS;
  const state =
    left === undefined
      ? badge("bad", "no certificate")
      : Date.parse(c.notAfter!) <= now
        ? badge("bad", "expired")
        : due
          ? badge("warn", `${left} days left${c.plannedRenewal ? ", renewal due" : ""}`)
          : badge("ok", `${left} days left`);
  const error = c.lastError ? `${badge("bad", `${c.failures} failure${c.failures === 1 ? "" : "s"}`)} ${esc(c.lastError)}` : "–";
  return row([
    esc(c.name),
    esc(c.source),
    list(c.names),
    when(c.notAfter, now),
    state,
    when(c.plannedRenewal, now),
    when(c.nextCheck, now),
    error,
    exportCell(c.export, now),
  ]);
}

/** exportCell says whether a site's exported files are current, or why not and when the next try is. */
function exportCell(e: ExportRow | null | undefined, now: number): string {
  if (!e) return "–";
  const files = `<code>${esc(e.cert)}</code>`;
  if (e.lastResult === "ok") return `${badge("ok", "exported")} ${files}`;
  if (e.lastResult === null) return `${badge("off", "pending")} ${files}`;
  if (e.lastResult === "refused") return `${badge("bad", "refused")} ${esc(e.lastError ?? "")}`;
  const failures = `${e.failures} failure${e.failures === 1 ? "" : "s"}`;
  return `${badge("bad", failures)} ${esc(e.lastError ?? "")}; next try ${when(e.nextRetry, now)}`;
}

function endpointRow(e: EndpointRow, now: number, workers: boolean): string {
  const state = !e.healthy ? badge("bad", "unhealthy") : !e.available ? badge("warn", "ejected") : badge("ok", "healthy");
  const ejected = e.ejectedForMs > 0 ? `for ${Math.ceil(e.ejectedForMs / 1000)} s more` : "–";
  const check = e.lastCheck ? `${e.lastCheck.ok ? badge("ok", "ok") : badge("bad", "failed")} ${esc(e.lastCheck.detail)} ${when(e.lastCheck.time, now)}` : "–";
  const cells = [
    esc(e.route),
    `<code>${esc(e.upstream)}</code>`,
    state,
    esc(e.inflight),
    ejected,
    esc(e.consecutiveFailures),
    e.lastError ? esc(e.lastError) : "–",
    check,
  ];
  if (workers) cells.splice(2, 0, esc(e.worker ?? "–"));
  return row(cells);
}

function tcpRow(t: TcpRow): string {
  const urls = (us: readonly string[], label = "") => `${label && `<small>${esc(label)}:</small> `}${us.map((u) => `<code>${esc(u)}</code>`).join("<br>")}`;
  const serves =
    t.mode === "terminate"
      ? `certificate of <a href="#site-${esc(t.site ?? "")}">${esc(t.site ?? "")}</a>`
      : t.mode === "passthrough"
        ? [...t.sni.map((e) => list(e.hosts, ", ")), t.upstreams.length ? "other names: default" : "other names: closed"].join("<br>")
        : "–";
  const groups =
    t.mode === "passthrough"
      ? [...t.sni.map((e) => urls(e.upstreams, e.hosts.join(", "))), ...(t.upstreams.length ? [urls(t.upstreams, "default")] : [])]
      : [urls(t.upstreams)];
  const refused = Object.entries(t.refused).filter(([, n]) => n > 0);
  return row([
    esc(t.name),
    `<code>${esc(t.listen)}</code>`,
    esc(t.mode),
    serves,
    groups.filter(Boolean).join("<br>") || "–",
    t.proxyV2 ? "v2" : "no",
    esc(t.open),
    esc(t.accepted),
    `in ${bytes(t.bytesIn)}<br>out ${bytes(t.bytesOut)}`,
    esc(t.upstreamFailures),
    refused.length ? refused.map(([r, n]) => `${esc(r)} ${esc(n)}`).join("<br>") : "0",
  ]);
}

/** HIT_RESULTS are the lookups answered from the cache (a revalidation's 304 included); bypasses are not lookups the cache could answer. */
const HIT_RESULTS = ["hit", "stale", "revalidated"];

function cacheSection(c: CacheRow | undefined): string {
  if (!c) return empty("No route caches responses (no [cache] table).");
  const lookups = Object.entries(c.lookups);
  const answerable = lookups.filter(([r]) => r !== "bypass").reduce((n, [, v]) => n + v, 0);
  const hits = lookups.filter(([r]) => HIT_RESULTS.includes(r)).reduce((n, [, v]) => n + v, 0);
  const ratio = answerable > 0 ? `${((100 * hits) / answerable).toFixed(1)} %` : "– (no lookups yet)";
  const fill = c.maxBytes > 0 ? ` of ${bytes(c.maxBytes)} (${((100 * c.sizeBytes) / c.maxBytes).toFixed(1)} %)` : "";
  return `<dl class="cache"><dt>Size</dt><dd>${bytes(c.sizeBytes)}${fill}</dd><dt>Objects</dt><dd>${esc(c.objects)}</dd><dt>Hit ratio</dt><dd>${ratio} <small>(hit, stale and revalidated of all lookups but bypasses)</small></dd><dt>Lookups</dt><dd>${
    lookups.map(([r, v]) => `${esc(r)} ${esc(v)}`).join(" · ") || "–"
  }</dd></dl>`;
}

function workerRow(w: WorkerRow, now: number): string {
  return row([esc(w.worker), esc(w.pid ?? "–"), w.ready ? badge("ok", "ready") : badge("bad", "not ready"), when(w.started, now), esc(w.restarts)]);
}

function reloadRow(r: ReloadRow, now: number): string {
  const result = r.result === "success" ? badge("ok", "success") : badge("bad", "failure");
  const problems = r.problems.length ? `<ul class="problems">${r.problems.map((p) => `<li><code>${esc(p)}</code></li>`).join("")}</ul>` : "–";
  return row([when(r.time, now), r.seq === 0 ? "start" : `reload ${esc(r.seq)}`, result, problems]);
}

const STYLE = `
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1400px;padding:1em 1.5em;color:#1b1f24;background:#fff}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin:1.6em 0 .4em;border-bottom:1px solid #d0d7de}h3{font-size:1em;margin:1em 0 .2em}
table{border-collapse:collapse;width:100%;margin:.3em 0}th,td{text-align:left;vertical-align:top;padding:.25em .6em;border-bottom:1px solid #eaeef2}
th{background:#f6f8fa;font-weight:600}code{font:12px ui-monospace,monospace;overflow-wrap:break-word}small,.meta{color:#57606a}.meta{margin:0 0 .3em}
.b{display:inline-block;padding:0 .45em;border-radius:.6em;font-size:.9em;font-weight:600;white-space:nowrap;border:1px solid}
.ok{color:#116329;background:#dafbe1;border-color:#4ac26b}.warn{color:#7d4e00;background:#fff8c5;border-color:#d4a72c}
.bad{color:#a40e26;background:#ffebe9;border-color:#ff8182}.off{color:#57606a;background:#f6f8fa;border-color:#d0d7de}
.empty{color:#57606a;font-style:italic}.problems{margin:0;padding-left:1.1em}dl.cache{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dd{margin:0}dt{font-weight:600}
nav a{margin-right:1em}td{overflow-wrap:break-word}
.routes{table-layout:fixed}.routes th:nth-child(1){width:16%}.routes th:nth-child(2){width:10%}.routes th:nth-child(3){width:8%}.routes th:nth-child(4){width:28%}.routes th:nth-child(5){width:10%}
.tcp{table-layout:fixed}.tcp th:nth-child(1){width:8%}.tcp th:nth-child(2){width:11%}.tcp th:nth-child(3){width:10%}.tcp th:nth-child(4){width:12%}.tcp th:nth-child(5){width:16%}
.tcp th:nth-child(6){width:6%}.tcp th:nth-child(7){width:5%}.tcp th:nth-child(8){width:7%}.tcp th:nth-child(9){width:8%}.tcp th:nth-child(10){width:7%}.tcp th:nth-child(11){width:10%}`;

/** renderStatus renders the whole page; every value from config or state is HTML-escaped, and the page reloads itself every 10 s. */
export function renderStatus(d: StatusData): string {
  const multi = d.workers !== undefined;
  const sites = d.sites.length ? d.sites.map(siteSection).join("") : empty("No sites: the routes directory has no route file.");
  const certs = d.certificates.length
    ? table(
        ["Site", "Source", "Names", "Expires", "Days left", "Renewal planned", "Next check", "Last error", "Export"],
        d.certificates.map((c) => certificateRow(c, d.now)),
      )
    : empty("No certificates: no site uses TLS.");
  const endpointHead = ["Route", "Endpoint", "State", "In flight", "Ejected", "Failures in a row", "Last error", "Last health check"];
  if (multi) endpointHead.splice(2, 0, "Worker");
  const endpoints = d.endpoints.length
    ? table(
        endpointHead,
        d.endpoints.map((e) => endpointRow(e, d.now, multi)),
      )
    : empty("No upstream endpoints.");
  const tcp = d.tcp?.length
    ? table(
        ["Route", "Listen", "Mode", "Serves", "Upstreams", "Sends PROXY", "Open", "Accepted", "Bytes", "Upstream failures", "Refused"],
        d.tcp.map(tcpRow),
        "tcp",
      )
    : empty("No TCP routes (no [[tcp]] entries).");
  const workers = d.workers?.length
    ? table(
        ["Worker", "Pid", "State", "Started", "Restarts"],
        d.workers.map((w) => workerRow(w, d.now)),
      )
    : empty("One process (workers = 1): no worker processes.");
  const reloads = d.reloads.length
    ? table(
        ["Time", "What", "Result", "Problems"],
        d.reloads.map((r) => reloadRow(r, d.now)),
      )
    : empty("No reloads yet.");
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="10"><title>gatehouse status</title><style>${STYLE}</style></head>
<body><header><h1>gatehouse status ${d.ready ? badge("ok", "ready") : badge("bad", "not ready")}</h1>
<p class="meta">version ${esc(d.version)} · config <code>${esc(d.configFile ?? "(none)")}</code> · rendered ${esc(new Date(d.now).toISOString().replace("T", " ").slice(0, 19))} UTC · refreshes every 10 s</p>
<nav><a href="#sites">Sites</a><a href="#certificates">Certificates</a><a href="#endpoints">Endpoints</a><a href="#tcp">TCP routes</a><a href="#cache">Cache</a><a href="#workers">Workers</a><a href="#reloads">Reloads</a></nav></header>
<main><section id="sites"><h2>Sites and routes</h2>${sites}</section>
<section id="certificates"><h2>Certificates</h2>${certs}</section>
<section id="endpoints"><h2>Upstream endpoints</h2>${endpoints}</section>
<section id="tcp"><h2>TCP routes</h2>${tcp}</section>
<section id="cache"><h2>Cache</h2>${cacheSection(d.cache)}</section>
<section id="workers"><h2>Workers</h2>${workers}</section>
<section id="reloads"><h2>Last reloads</h2>${reloads}</section></main></body></html>
`;
}
