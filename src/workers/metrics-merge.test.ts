import { expect, test } from "bun:test";
import { MetricsMerger, RETIRED_KEEP_MS, parseExposition, renderExposition } from "./metrics-merge.ts";

const worker = (requests: number, healthy: number, inflight: number, bucket: number) =>
  parseExposition(`# HELP gatehouse_requests_total Requests answered.
# TYPE gatehouse_requests_total counter
gatehouse_requests_total{route="a",code="200"} ${requests}
# HELP gatehouse_request_duration_seconds Time.
# TYPE gatehouse_request_duration_seconds histogram
gatehouse_request_duration_seconds_bucket{route="a",le="0.1"} ${bucket}
gatehouse_request_duration_seconds_bucket{route="a",le="+Inf"} ${requests}
gatehouse_request_duration_seconds_sum{route="a"} 0.5
gatehouse_request_duration_seconds_count{route="a"} ${requests}
# HELP gatehouse_upstream_healthy Healthy.
# TYPE gatehouse_upstream_healthy gauge
gatehouse_upstream_healthy{route="a",upstream="http://10.0.0.1:80"} ${healthy}
# HELP gatehouse_inflight_requests In flight.
# TYPE gatehouse_inflight_requests gauge
gatehouse_inflight_requests ${inflight}
# HELP gatehouse_acme_orders_total Orders.
# TYPE gatehouse_acme_orders_total counter
gatehouse_acme_orders_total{result="success"} 0
`);

const supervisor = parseExposition(`# HELP gatehouse_acme_orders_total Orders.
# TYPE gatehouse_acme_orders_total counter
gatehouse_acme_orders_total{result="success"} 1
# HELP gatehouse_requests_total Requests answered.
# TYPE gatehouse_requests_total counter
`);

test("counters and histograms add up, health is the minimum, ACME comes from the supervisor; one HELP/TYPE per family", () => {
  const m = new MetricsMerger();
  m.update(1, worker(3, 1, 2, 1));
  m.update(2, worker(4, 0, 1, 4));
  const text = renderExposition(m.merge(supervisor, [1, 2]));
  expect(text).toContain('gatehouse_requests_total{route="a",code="200"} 7');
  expect(text).toContain('gatehouse_request_duration_seconds_bucket{route="a",le="0.1"} 5');
  expect(text).toContain('gatehouse_request_duration_seconds_bucket{route="a",le="+Inf"} 7');
  expect(text).toContain('gatehouse_request_duration_seconds_sum{route="a"} 1');
  expect(text).toContain('gatehouse_upstream_healthy{route="a",upstream="http://10.0.0.1:80"} 0');
  expect(text).toContain("gatehouse_inflight_requests 3");
  expect(text).toContain('gatehouse_acme_orders_total{result="success"} 1');
  expect(text.match(/# TYPE gatehouse_requests_total /g)?.length).toBe(1);
  // the supervisor's order first, then what only workers have
  expect(text.indexOf("gatehouse_acme_orders_total")).toBeLessThan(text.indexOf("gatehouse_requests_total"));
});

test("a restarted worker does not make the sums go down; a retired series nobody reports is dropped in the end", () => {
  const m = new MetricsMerger();
  m.update(1, worker(10, 1, 0, 10));
  m.update(2, worker(5, 1, 5, 5));
  m.retire(2); // worker 2 exited; worker 3 replaces it with fresh counters
  m.update(3, worker(1, 1, 0, 1));
  const text = renderExposition(m.merge(supervisor, [1, 3]));
  expect(text).toContain('gatehouse_requests_total{route="a",code="200"} 16');
  expect(text).toContain("gatehouse_inflight_requests 0"); // gauges are not carried over
  const gone = parseExposition("# HELP gatehouse_requests_total x\n# TYPE gatehouse_requests_total counter\n");
  const now = Date.now();
  m.update(1, gone);
  m.update(3, gone);
  expect(renderExposition(m.merge(supervisor, [1, 3], now))).toContain('gatehouse_requests_total{route="a",code="200"} 5');
  expect(renderExposition(m.merge(supervisor, [1, 3], now + RETIRED_KEEP_MS + 1))).not.toContain('gatehouse_requests_total{route="a"');
});

test("parse and render keep the text format as gatehouse writes it", () => {
  const text = '# HELP x_total Help with \\\\ and "quotes".\n# TYPE x_total counter\nx_total{a="1"} 2\n# HELP y Y.\n# TYPE y gauge\ny +Inf\n';
  expect(renderExposition(parseExposition(text))).toBe(text);
});

test("process metrics count every process: CPU and memory add up, open descriptors are the fullest process's against the lowest limit", () => {
  const proc = (cpu: number, rss: number, open: number, max: number) =>
    parseExposition(`# HELP process_cpu_seconds_total CPU.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total ${cpu}
# HELP process_resident_memory_bytes RSS.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes ${rss}
# HELP process_open_fds Open.
# TYPE process_open_fds gauge
process_open_fds ${open}
# HELP process_max_fds Max.
# TYPE process_max_fds gauge
process_max_fds ${max}
`);
  const m = new MetricsMerger();
  m.update(1, proc(2, 100, 50, 1024));
  m.update(2, proc(3, 200, 900, 1024));
  const text = renderExposition(m.merge(proc(0.5, 10, 12, 512), [1, 2]));
  expect(text).toContain("process_cpu_seconds_total 5.5");
  expect(text).toContain("process_resident_memory_bytes 310");
  expect(text).toContain("process_open_fds 900");
  expect(text).toContain("process_max_fds 512");
  // A worker that is restarted takes its CPU time with it into the retired sums: the counter does not go down.
  m.retire(2);
  m.update(3, proc(0.1, 150, 40, 1024));
  expect(renderExposition(m.merge(proc(0.5, 10, 12, 512), [1, 3]))).toContain("process_cpu_seconds_total 5.6");
});
