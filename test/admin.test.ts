import { afterAll, beforeAll, expect, test } from "bun:test";
import { origin, startGateway, type TestGateway } from "./harness.ts";

const up = origin(() => new Response("ok"));
let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway({ routes: { site: `hosts = ["site.example"]\nupstreams = ["http://127.0.0.1:${up.port}"]\n` } });
});

afterAll(async () => {
  await gw.cleanup();
  up.stop(true);
});

test("/healthz and /readyz answer 200 on a running gateway; other admin paths 404", async () => {
  expect((await fetch(`${gw.admin}/healthz`)).status).toBe(200);
  expect((await fetch(`${gw.admin}/readyz`)).status).toBe(200);
  expect((await fetch(`${gw.admin}/nope`)).status).toBe(404);
});

test("the admin paths are not served on the public listener", async () => {
  const res = await fetch(`${gw.base}/metrics`, { headers: { host: "unknown.example" } });
  expect(res.status).toBe(404);
  expect(await res.text()).not.toContain("gatehouse_requests_total");
});

test("/metrics counts requests by route and code, keeps labels bounded, and passes promtool", async () => {
  for (let i = 0; i < 3; i++) await gw.request("site.example");
  for (let i = 0; i < 5; i++) await gw.request(`random-${i}.example`);
  const res = await fetch(`${gw.admin}/metrics`);
  expect(res.headers.get("content-type")).toContain("text/plain");
  const text = await res.text();
  expect(text).toContain('gatehouse_requests_total{route="site",code="200"} 3');
  // Unknown hosts share one label value instead of adding a series per Host header.
  expect(text).toContain(`gatehouse_requests_total{route="-",code="404"} 6`); // 5 here + 1 in the test above
  expect(text).not.toContain("random-");
  expect(text).toContain('gatehouse_request_duration_seconds_count{route="site"} 3');
  expect(text).toMatch(/gatehouse_build_info\{version="[^"]+",bun="[^"]+"\} 1/);
  expect(text).toContain('gatehouse_config_reloads_total{result="success"} 0');
  expect(text).toContain("gatehouse_config_last_reload_success 1");
  for (const name of [
    "gatehouse_upstream_requests_total",
    "gatehouse_upstream_healthy",
    "gatehouse_cache_requests_total",
    "gatehouse_cache_size_bytes",
    "gatehouse_certificate_expiry_timestamp_seconds",
    "gatehouse_acme_orders_total",
  ]) {
    expect(text).toContain(`# TYPE ${name} `);
  }
  const promtool = Bun.spawnSync(["promtool", "check", "metrics"], { stdin: new TextEncoder().encode(text) });
  expect(promtool.stderr.toString() + promtool.stdout.toString()).toBe("");
  expect(promtool.exitCode).toBe(0);
});

test("the usual process metrics are there and true: CPU seconds, open and maximum file descriptors (issue 15, item 4)", async () => {
  const text = await (await fetch(`${gw.admin}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
  expect(text).toContain("# TYPE process_cpu_seconds_total counter");
  expect(value("process_cpu_seconds_total")).toBeGreaterThan(0);
  const status = require("node:fs").readFileSync(`/proc/${gw.proc.pid}/limits`, "utf8") as string;
  const soft = Number(/Max open files\s+(\d+)/.exec(status)?.[1]);
  expect(value("process_max_fds")).toBe(soft);
  // The gateway's own descriptors, counted in /proc as the test sees them (a scrape opens one more for the listing at most).
  const open = require("node:fs").readdirSync(`/proc/${gw.proc.pid}/fd`).length as number;
  expect(Math.abs(value("process_open_fds") - open)).toBeLessThanOrEqual(3);
  expect(value("process_resident_memory_bytes")).toBeGreaterThan(10 * 1024 * 1024);
});
