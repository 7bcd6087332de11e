/** The status page rendered from plain data: escaping, empty states, states in words, and the cache numbers read from a metrics exposition. */
import { expect, test } from "bun:test";
import { cacheFromMetrics } from "./status-data.ts";
import { escapeHtml, renderStatus, type StatusData } from "./status-page.ts";

const NOW = Date.parse("2026-12-06T12:00:00Z");

const EMPTY: StatusData = {
  now: NOW,
  version: "0.1.0",
  ready: true,
  configFile: "/etc/gatehouse/config.toml",
  sites: [],
  certificates: [],
  endpoints: [],
  cache: undefined,
  workers: undefined,
  reloads: [],
};

const EVIL = `<b>&"x'</b><script>alert(1)</script>`;
const ESCAPED = "&lt;b&gt;&amp;&quot;x&#39;&lt;/b&gt;&lt;script&gt;alert(1)&lt;/script&gt;";

test("escapeHtml escapes the five characters that matter in content and attributes", () => {
  expect(escapeHtml(`a<b>&"c'`)).toBe("a&lt;b&gt;&amp;&quot;c&#39;");
  expect(escapeHtml(42)).toBe("42");
});

test("every value that comes from config or state is escaped: no markup of its own reaches the page", () => {
  const html = renderStatus({
    ...EMPTY,
    configFile: EVIL,
    sites: [
      {
        name: "shop",
        file: "routes/shop.toml",
        hosts: [EVIL],
        tls: "off",
        maintenance: false,
        routes: [{ name: EVIL, prefix: EVIL, kind: "proxy", targets: [EVIL], cache: true, policies: [EVIL] }],
      },
    ],
    certificates: [{ name: EVIL, source: "acme", names: [EVIL], notAfter: null, plannedRenewal: null, nextCheck: null, failures: 1, lastError: EVIL }],
    endpoints: [
      {
        route: EVIL,
        upstream: EVIL,
        available: false,
        healthy: true,
        inflight: 0,
        ejectedForMs: 1500,
        consecutiveFailures: 3,
        lastError: EVIL,
        lastCheck: { time: new Date(NOW).toISOString(), ok: false, detail: EVIL },
      },
    ],
    cache: { sizeBytes: 0, maxBytes: 0, objects: 0, lookups: { [EVIL]: 1 } },
    reloads: [{ seq: 1, time: new Date(NOW).toISOString(), result: "failure", problems: [EVIL] }],
  });
  expect(html).not.toContain("<script");
  expect(html).not.toContain("<b>");
  // Each place above shows the escaped text (the config file, host, route, prefix, target, policy, cert name, names, error, endpoint, …).
  expect(html.split(ESCAPED).length - 1).toBeGreaterThanOrEqual(14);
  expect(html).toContain("ejected"); // available false, healthy true: a passive ejection, in words
});

test("empty states say so instead of showing empty tables", () => {
  const html = renderStatus({ ...EMPTY, ready: false });
  expect(html).toContain("not ready");
  expect(html).toContain("No sites");
  expect(html).toContain("No certificates: no site uses TLS.");
  expect(html).toContain("No upstream endpoints.");
  expect(html).toContain("No route caches responses");
  expect(html).toContain("no worker processes");
  expect(html).toContain("No reloads yet.");
  expect(html).not.toContain("<table");
  // Self-contained: no scripts, no external resources.
  expect(html).not.toMatch(/<script|<link|src=|https?:\/\//);
  expect(html).toContain('<meta http-equiv="refresh" content="10">');
});

test("states are words, not only colours: certificate days, endpoint health, workers, reload results", () => {
  const html = renderStatus({
    ...EMPTY,
    certificates: [
      {
        name: "a",
        source: "acme",
        names: ["a.example"],
        notAfter: new Date(NOW + 60 * 86_400_000).toISOString(),
        plannedRenewal: null,
        nextCheck: null,
        failures: 0,
        lastError: null,
      },
      {
        name: "b",
        source: "internal",
        names: ["b.example"],
        notAfter: new Date(NOW + 3 * 86_400_000).toISOString(),
        plannedRenewal: null,
        nextCheck: null,
        failures: 0,
        lastError: null,
      },
      {
        name: "d",
        source: "acme",
        names: ["d.example"],
        notAfter: new Date(NOW + 20 * 86_400_000).toISOString(),
        plannedRenewal: new Date(NOW - 86_400_000).toISOString(),
        nextCheck: null,
        failures: 2,
        lastError: "order failed",
      },
      {
        name: "c",
        source: "manual",
        names: ["c.example"],
        notAfter: new Date(NOW - 86_400_000).toISOString(),
        plannedRenewal: null,
        nextCheck: null,
        failures: 0,
        lastError: null,
      },
    ],
    endpoints: [
      {
        route: "r",
        upstream: "http://127.0.0.1:1",
        worker: 0,
        available: true,
        healthy: true,
        inflight: 2,
        ejectedForMs: 0,
        consecutiveFailures: 0,
        lastError: null,
        lastCheck: null,
      },
      {
        route: "r",
        upstream: "http://127.0.0.1:2",
        worker: 1,
        available: false,
        healthy: false,
        inflight: 0,
        ejectedForMs: 0,
        consecutiveFailures: 0,
        lastError: null,
        lastCheck: null,
      },
    ],
    workers: [
      { worker: 0, pid: 100, ready: true, started: new Date(NOW - 3_600_000).toISOString(), restarts: 0 },
      { worker: 1, pid: null, ready: false, started: null, restarts: 4 },
    ],
    reloads: [
      { seq: 1, time: new Date(NOW).toISOString(), result: "success", problems: [] },
      { seq: 0, time: new Date(NOW - 60_000).toISOString(), result: "success", problems: [] },
    ],
  });
  expect(html).toContain("60 days left");
  expect(html).toMatch(/class="b warn">.*3 days left/);
  expect(html).toMatch(/class="b bad">.*expired/);
  expect(html).toMatch(/class="b warn">.*20 days left, renewal due/); // overdue: the planned renewal has passed
  expect(html).toMatch(/class="b bad">.*2 failures.*order failed/);
  expect(html).toMatch(/class="b ok">.*healthy/);
  expect(html).toMatch(/class="b bad">.*unhealthy/);
  expect(html).toContain('<th scope="col">Worker</th>');
  expect(html).toMatch(/class="b bad">.*not ready/);
  expect(html).toContain("reload 1");
  expect(html).toContain(">start<");
  expect(html).toContain("1 h ago");
});

test("cacheFromMetrics sums the cache series whatever other labels they carry", () => {
  const text = [
    "# TYPE gatehouse_cache_size_bytes gauge",
    "gatehouse_cache_size_bytes 2048",
    "gatehouse_cache_objects 3",
    'gatehouse_cache_requests_total{route="a",result="hit"} 3',
    'gatehouse_cache_requests_total{route="b}",result="hit"} 1',
    'gatehouse_cache_requests_total{result="miss"} 4',
    'gatehouse_cache_requests_total{result="bypass"} 10',
    "gatehouse_cache_evictions_total 5",
  ].join("\n");
  const c = cacheFromMetrics(text, 1024 ** 2);
  expect(c).toEqual({ sizeBytes: 2048, maxBytes: 1024 ** 2, objects: 3, lookups: { hit: 4, miss: 4, bypass: 10 } });
  const html = renderStatus({ ...EMPTY, cache: c });
  expect(html).toContain("2.0 KiB of 1.0 MiB");
  expect(html).toContain("50.0 %"); // 4 hits of 8 lookups; bypasses are not counted
});
