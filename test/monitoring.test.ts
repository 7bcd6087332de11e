/** The monitoring assets of docs/monitoring.md: the Prometheus rules pass promtool and their unit tests, the Grafana dashboard's queries are valid PromQL, and every metric and label the rules and the dashboard use is one a running gatehouse exposes. */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, origin, ROOT, startGateway, type TestGateway, tempDir } from "./harness.ts";

const RULES = join(ROOT, "docs/prometheus/gatehouse-rules.yml");
const RULE_TESTS = join(ROOT, "docs/prometheus/gatehouse-rules.test.yml");
const DASHBOARD = join(ROOT, "docs/grafana/gatehouse.json");
const MONITORING_DOC = join(ROOT, "docs/monitoring.md");

/**
 * NOT_IN_TEST_SETUP: metrics the rules or the dashboard use that the gateway started below cannot expose; for these
 * the test only asks that the source registers the name (src/observability/gateway-metrics.ts or src/workers/).
 */
const NOT_IN_TEST_SETUP = new Set([
  // Registered by the supervisor only, with `workers` above 1 (src/workers/worker-set.ts).
  // Not here: process_cpu_seconds_total, process_open_fds, process_max_fds, the `route` label of
  // gatehouse_cache_requests_total and gatehouse_certificate_renewal_planned_timestamp_seconds (added for issue 15
  // item 4) are exposed by every gatehouse, the last one once a TLS site exists (the internal-CA site below), so the
  // running gateway checks them like every other name.
  "gatehouse_workers",
  "gatehouse_worker_restarts_total",
]);

/** DATASOURCE_UID is how a panel names the dashboard's data source variable, so that any Prometheus can be picked at import. */
const DATASOURCE_UID = `\${datasource}`;

/** TARGET_LABELS are added by Prometheus at scrape time, so they are never in the exposition's label sets (`le` is: histograms' `_bucket` series carry it). */
const TARGET_LABELS = new Set(["job", "instance"]);

/** METRIC_NAME finds gatehouse's and the process's metric names in PromQL or prose. */
const METRIC_NAME = /\b(?:gatehouse|process)_[a-z0-9_]*[a-z0-9]\b/g;

type Rule = { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
type RuleFile = { groups: { name: string; rules: Rule[] }[] };
type Target = { expr?: string; legendFormat?: string; refId?: string; datasource?: { uid?: string } };
type Panel = {
  id?: number;
  type?: string;
  title?: string;
  targets?: Target[];
  panels?: Panel[];
  datasource?: { uid?: string };
  gridPos?: Record<string, number>;
};
type Variable = { name: string; type: string; query?: string | { query?: string }; definition?: string };
type Dashboard = {
  schemaVersion: number;
  title: string;
  uid: string;
  panels: Panel[];
  templating: { list: Variable[] };
  annotations?: { list: { expr?: string }[] };
};

/** promtool runs promtool with a bound on its time, and gives its exit code and everything it printed. */
function promtool(...args: string[]): { code: number | null; out: string } {
  const p = Bun.spawnSync(["promtool", ...args], { timeout: 20_000, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString() + p.stderr.toString() };
}

function readRules(): RuleFile {
  return Bun.YAML.parse(readFileSync(RULES, "utf8")) as RuleFile;
}

function readDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD, "utf8")) as Dashboard;
}

/** allPanels lists the dashboard's panels, rows and the panels of collapsed rows included. */
function allPanels(d: Dashboard): Panel[] {
  const out: Panel[] = [];
  const walk = (ps: Panel[]) => {
    for (const p of ps) {
      out.push(p);
      walk(p.panels ?? []);
    }
  };
  walk(d.panels);
  return out;
}

/** variableQuery gives the PromQL inside a query variable: the selector of label_values(SELECTOR, label), the expression of query_result(EXPR). */
function variableQuery(v: Variable): { expr: string; label?: string } | undefined {
  const q = typeof v.query === "string" ? v.query : v.query?.query;
  if (!q) return undefined;
  const lv = /^\s*label_values\((.*),\s*(\w+)\s*\)\s*$/.exec(q);
  if (lv) return { expr: lv[1]!, label: lv[2]! };
  const qr = /^\s*query_result\((.*)\)\s*$/.exec(q);
  return { expr: qr ? qr[1]! : q };
}

/** DashboardQuery is one PromQL expression of the dashboard and the labels its legend names. */
type DashboardQuery = { where: string; expr: string; legendLabels: string[] };

/** dashboardQueries lists every PromQL expression of the dashboard: panel targets, annotation queries, query variables. */
function dashboardQueries(d: Dashboard): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  for (const p of allPanels(d)) {
    for (const t of p.targets ?? []) {
      const legendLabels = [...(t.legendFormat ?? "").matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!);
      out.push({ where: `panel ${JSON.stringify(p.title)} target ${t.refId}`, expr: t.expr ?? "", legendLabels });
    }
  }
  for (const a of d.annotations?.list ?? []) if (a.expr) out.push({ where: "annotation", expr: a.expr, legendLabels: [] });
  for (const v of d.templating.list) {
    const q = v.type === "query" ? variableQuery(v) : undefined;
    if (q) out.push({ where: `variable ${v.name}`, expr: q.expr, legendLabels: q.label ? [q.label] : [] });
  }
  return out;
}

/** GRAFANA_INTERVALS stand for Grafana's built-in variables when an expression is checked outside Grafana. */
const GRAFANA_INTERVALS: Record<string, string> = {
  __rate_interval: "5m",
  __interval: "1m",
  __interval_ms: "60000",
  __range: "1h",
  __range_s: "3600",
  __range_ms: "3600000",
};

/** VARIABLE_REF matches $name, ${name} and ${name:format} (the dashboard does not use the deprecated [[name]]; `[[rate_limit]]` in its prose is TOML). */
const VARIABLE_REF = /\$\{(\w+)(?::\w+)?\}|\$(\w+)/g;

/** substitute replaces Grafana variables by plain values: intervals by durations, the dashboard's own variables by `.*` (they stand in regex matchers). */
function substitute(expr: string): string {
  return expr.replace(VARIABLE_REF, (_all, a?: string, b?: string) => {
    const name = (a ?? b)!;
    return GRAFANA_INTERVALS[name] ?? ".*";
  });
}

/** labelsUsed lists the label names an expression matches on, groups by or joins on (time series labels, not values). */
function labelsUsed(expr: string): string[] {
  const out: string[] = [];
  // Matchers inside selectors: {route=~"…", code!="…"} (values are skipped so that `=` inside them is not read as a matcher).
  for (const sel of expr.matchAll(/\{((?:[^{}"]|"(?:[^"\\]|\\.)*")*)\}/g)) {
    for (const m of sel[1]!.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*(?:"(?:[^"\\]|\\.)*"|%q)/g)) out.push(m[1]!);
  }
  for (const g of expr.matchAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)) {
    out.push(
      ...g[1]!
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean),
    );
  }
  return out;
}

/** Exposition is what /metrics declares: each family's type, and the label names its samples carry (`_bucket`, `_sum`, `_count` under the histogram's name). */
type Exposition = { types: Map<string, string>; labels: Map<string, Set<string>> };

function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const labels = new Map<string, Set<string>>();
  for (const line of text.split("\n")) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) {
      types.set(t[1]!, t[2]!);
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const s = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+/.exec(line);
    if (!s) continue;
    const family = familyOf(s[1]!, types);
    const set = labels.get(family) ?? new Set<string>();
    for (const m of (s[2] ?? "").matchAll(/([a-zA-Z_]\w*)="(?:[^"\\]|\\.)*"/g)) set.add(m[1]!);
    labels.set(family, set);
  }
  return { types, labels };
}

/** familyOf maps a histogram's `_bucket`, `_sum` and `_count` series to the histogram's name. */
function familyOf(name: string, types: Map<string, string>): string {
  const m = /^(.*)_(?:bucket|sum|count)$/.exec(name);
  if (m && types.get(m[1]!) === "histogram") return m[1]!;
  return name;
}

/** sourceText is the text of the files that register gatehouse's metrics. */
function sourceText(): string {
  const files = [join(ROOT, "src/observability/gateway-metrics.ts")];
  for (const f of readdirSync(join(ROOT, "src/workers"))) if (f.endsWith(".ts") && !f.endsWith(".test.ts")) files.push(join(ROOT, "src/workers", f));
  return files.map((f) => readFileSync(f, "utf8")).join("\n");
}

// ---------------------------------------------------------------------------------------------- the rules

test("promtool check rules accepts docs/prometheus/gatehouse-rules.yml, and every alert has for:, a severity and a summary and description", () => {
  const r = promtool("check", "rules", RULES);
  expect(r.out).toContain("SUCCESS");
  expect(r.code).toBe(0);

  const groups = readRules().groups;
  expect(groups.map((g) => g.name)).toEqual(["gatehouse"]);
  const alerts = groups[0]!.rules.filter((rule) => rule.alert);
  expect(alerts.length).toBeGreaterThanOrEqual(9);
  for (const a of alerts) {
    expect({ alert: a.alert, for: typeof a.for }).toEqual({ alert: a.alert, for: "string" });
    expect({ alert: a.alert, severity: a.labels?.severity }).toEqual({ alert: a.alert, severity: expect.stringMatching(/^(critical|warning|info)$/) });
    expect({ alert: a.alert, summary: typeof a.annotations?.summary, description: typeof a.annotations?.description }).toEqual({
      alert: a.alert,
      summary: "string",
      description: "string",
    });
  }
  // The issue's alerts, by what they watch.
  const exprs = alerts.map((a) => a.expr).join("\n");
  for (const watched of [
    'up{job="gatehouse"}',
    "gatehouse_certificate_expiry_timestamp_seconds",
    "gatehouse_certificate_renewal_planned_timestamp_seconds",
    "gatehouse_config_last_reload_success",
    "gatehouse_upstream_healthy",
    'gatehouse_requests_total{code=~"5.."}',
    'gatehouse_acme_orders_total{result="failure"}',
    "gatehouse_worker_restarts_total",
    "process_open_fds",
  ]) {
    expect(exprs).toContain(watched);
  }
  // docs/monitoring.md's table explains every alert.
  const doc = readFileSync(MONITORING_DOC, "utf8");
  for (const a of alerts) expect(doc).toContain(`| \`${a.alert}\` |`);
});

test("promtool test rules passes docs/prometheus/gatehouse-rules.test.yml, which makes every alert fire and stay silent", () => {
  const r = promtool("test", "rules", RULE_TESTS);
  expect(r.out).toContain("SUCCESS");
  expect(r.code).toBe(0);

  // Each alert has an evaluation where it fires and one where it must not (exp_alerts: []).
  type EvalCase = { alertname: string; exp_alerts?: unknown[] };
  const spec = Bun.YAML.parse(readFileSync(RULE_TESTS, "utf8")) as { tests: { alert_rule_test?: EvalCase[] }[] };
  const cases = spec.tests.flatMap((t) => t.alert_rule_test ?? []);
  for (const a of readRules().groups[0]!.rules.filter((rule) => rule.alert)) {
    const mine = cases.filter((c) => c.alertname === a.alert);
    expect({ alert: a.alert, fires: mine.some((c) => (c.exp_alerts ?? []).length > 0) }).toEqual({ alert: a.alert, fires: true });
    expect({ alert: a.alert, silent: mine.some((c) => (c.exp_alerts ?? []).length === 0) }).toEqual({ alert: a.alert, silent: true });
  }
});

// ---------------------------------------------------------------------------------------------- the dashboard

test("the Grafana dashboard parses, every panel has a title and a query on the datasource variable, and every query is valid PromQL", () => {
  const d = readDashboard();
  expect(d.schemaVersion).toBeGreaterThanOrEqual(36);
  expect(d.title).toBe("gatehouse");
  expect(d.uid).toBe("gatehouse");

  const variables = new Map(d.templating.list.map((v) => [v.name, v]));
  expect(variables.get("datasource")).toMatchObject({ type: "datasource", query: "prometheus" });
  expect(variables.get("job")?.type).toBe("query");
  expect(variables.get("instance")?.type).toBe("query");

  const panels = allPanels(d);
  const ids = panels.map((p) => p.id);
  expect(new Set(ids).size).toBe(ids.length);
  for (const p of panels) {
    expect({ id: p.id, title: p.title?.trim() || undefined }).toEqual({ id: p.id, title: expect.any(String) });
    expect({ title: p.title, gridPos: p.gridPos && p.gridPos.x! + p.gridPos.w! <= 24 }).toEqual({ title: p.title, gridPos: true });
    if (p.type === "row") continue; // a row is a heading over the panels below it; it has no query
    expect({ title: p.title, targets: (p.targets ?? []).length > 0 }).toEqual({ title: p.title, targets: true });
    expect({ title: p.title, datasource: p.datasource?.uid }).toEqual({ title: p.title, datasource: DATASOURCE_UID });
    for (const t of p.targets ?? []) {
      expect({ title: p.title, expr: (t.expr ?? "").trim().length > 0 }).toEqual({ title: p.title, expr: true });
      expect({ title: p.title, datasource: t.datasource?.uid }).toEqual({ title: p.title, datasource: DATASOURCE_UID });
    }
  }

  // Every variable the dashboard refers to is one of its own or one of Grafana's ($__rate_interval, …).
  const text = readFileSync(DASHBOARD, "utf8");
  for (const m of text.matchAll(VARIABLE_REF)) {
    const name = (m[1] ?? m[2])!;
    if (name.startsWith("__")) {
      expect(name === "__all" || name in GRAFANA_INTERVALS ? name : `unknown Grafana variable $${name}`).toBe(name);
      continue;
    }
    expect(variables.has(name) ? name : `undefined variable $${name}`).toBe(name);
  }

  // Every expression, with the variables replaced by plain values, as a recording rule: promtool parses each one.
  const queries = dashboardQueries(d);
  expect(queries.length).toBeGreaterThan(30);
  const dir = tempDir("gatehouse-dashboard-");
  try {
    const rules = { groups: [{ name: "dashboard", rules: queries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: substitute(q.expr) })) }] };
    const file = join(dir, "dashboard-rules.yml");
    writeFileSync(file, JSON.stringify(rules, null, 2)); // JSON is YAML
    const r = promtool("check", "rules", file);
    const where = r.code === 0 ? "" : `\n${queries.map((q, i) => `dashboard:query_${i} = ${q.where}`).join("\n")}`;
    expect(r.out + where).toContain(`SUCCESS: ${queries.length} rules found`);
    expect(r.code).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------- against a running gatehouse

/** exposedMetrics starts a gatehouse whose routes use every feature the dashboard draws, sends requests through it, and returns its /metrics text. */
async function exposedMetrics(): Promise<string> {
  const up = origin(() => new Response("hello", { headers: { "cache-control": "max-age=60" } }));
  let gw: TestGateway | undefined;
  try {
    const deadPort = freePort(); // nothing listens here: attempts are refused, so retries and ejections get series
    gw = await startGateway({
      listenExtra: `https = "127.0.0.1:${freePort()}"`,
      routes: {
        // A plain site with upstreams and health checks, the cache, a rate limit and an IP rule.
        shop: `hosts = ["shop.example"]
tls = "off"
upstreams = ["http://127.0.0.1:${up.port}", "http://127.0.0.1:${deadPort}"]
[health]
interval = "200ms"
timeout = "100ms"
[cache]
[[rate_limit]]
rate = "1/m"
burst = 5
[[paths]]
prefix = "/private/"
[paths.access]
allow = ["10.0.0.0/8"]
`,
        // A TLS site with the internal CA, so the certificate series exist; its [export] (into the config's directory) gives the export series.
        secure: `hosts = ["secure.example"]
tls = "internal"
upstreams = ["http://127.0.0.1:${up.port}"]
[export]
cert = "secure-chain.pem"
key = "secure-key.pem"
`,
      },
    });
    // Each answer is read before the next request, so the series exist when /metrics is read.
    const get = async (host: string, path: string) => (await gw!.request(host, path, { signal: AbortSignal.timeout(5000) })).status;
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push(await get("shop.example", "/page")); // a cache miss, hits, then 429s
    statuses.push(await get("shop.example", "/private/x")); // 403
    statuses.push(await get("secure.example", "/")); // redirect to HTTPS
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429, 403, 308]);
    const res = await fetch(`${gw.admin}/metrics`, { signal: AbortSignal.timeout(5000) });
    expect(res.status).toBe(200);
    return await res.text();
  } finally {
    await gw?.cleanup();
    up.stop(true);
  }
}

test("every metric name and label the rules and the dashboard use is one gatehouse exposes", async () => {
  const exposition = parseExposition(await exposedMetrics());
  // The setup did produce the series the label checks below need.
  for (const name of [
    "gatehouse_cache_requests_total",
    "gatehouse_rate_limited_total",
    "gatehouse_access_denied_total",
    "gatehouse_certificate_expiry_timestamp_seconds",
  ]) {
    expect({ name, sampled: exposition.labels.has(name) }).toEqual({ name, sampled: true });
  }

  const rules = readRules().groups.flatMap((g) => g.rules);
  const dashboard = readDashboard();
  const rulesText = readFileSync(RULES, "utf8");
  const dashboardText = readFileSync(DASHBOARD, "utf8");

  // 1. Names: all of them, in expressions, annotations, descriptions and comments alike.
  const names = new Set([...rulesText.matchAll(METRIC_NAME), ...dashboardText.matchAll(METRIC_NAME)].map((m) => familyOf(m[0], exposition.types)));
  expect(names.size).toBeGreaterThan(25);
  const source = sourceText();
  for (const name of names) {
    if (NOT_IN_TEST_SETUP.has(name)) {
      expect({ name, inSource: source.includes(`"${name}"`) }).toEqual({ name, inSource: true });
    } else {
      expect({ name, exposed: exposition.types.has(name) }).toEqual({ name, exposed: true });
    }
  }

  // 2. Labels: each label an expression matches on, groups by, or names in its legend or annotations must be carried by
  // one of the metrics the expression reads. Checked where every metric of the expression has samples here.
  const checks: { where: string; expr: string; extra: string[] }[] = [
    ...dashboardQueries(dashboard).map((q) => ({ where: q.where, expr: q.expr, extra: q.legendLabels })),
    ...rules.map((r) => ({
      where: `rule ${r.alert ?? r.record}`,
      expr: r.expr,
      extra: [
        ...Object.values(r.annotations ?? {})
          .join("\n")
          .matchAll(/\$labels\.(\w+)/g),
      ].map((m) => m[1]!),
    })),
  ];
  let checked = 0;
  for (const c of checks) {
    const metrics = [...new Set([...c.expr.matchAll(METRIC_NAME)].map((m) => familyOf(m[0], exposition.types)))];
    if (metrics.length === 0 || !metrics.every((m) => exposition.labels.has(m))) continue;
    const carried = new Set(metrics.flatMap((m) => [...exposition.labels.get(m)!]));
    for (const label of [...labelsUsed(c.expr), ...c.extra]) {
      if (TARGET_LABELS.has(label)) continue;
      expect({ where: c.where, label, carried: carried.has(label) }).toEqual({ where: c.where, label, carried: true });
    }
    checked++;
  }
  // Most expressions are checked: a setup that lost its series would make this test vacuous.
  expect(checked).toBeGreaterThan(checks.length * 0.7);
});
