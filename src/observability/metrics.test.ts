import { expect, test } from "bun:test";
import { Counter, Gauge, Histogram, Registry } from "./metrics.ts";

test("the exposition has HELP, TYPE, escaped labels and cumulative histogram buckets", () => {
  const r = new Registry();
  const c = r.register(new Counter("t_total", "A counter.", ["route"]));
  c.labels('we"ird\\name\n').value += 2;
  const g = r.register(new Gauge("t_gauge", "A gauge.", [], (g) => (g.labels().value = 7)));
  void g;
  const h = r.register(new Histogram("t_seconds", "A histogram.", ["route"], [0.1, 1]));
  const cell = h.labels("a");
  cell.observe(0.05);
  cell.observe(0.5);
  cell.observe(5);
  expect(r.render()).toBe(
    [
      "# HELP t_total A counter.",
      "# TYPE t_total counter",
      't_total{route="we\\"ird\\\\name\\n"} 2',
      "# HELP t_gauge A gauge.",
      "# TYPE t_gauge gauge",
      "t_gauge 7",
      "# HELP t_seconds A histogram.",
      "# TYPE t_seconds histogram",
      't_seconds_bucket{route="a",le="0.1"} 1',
      't_seconds_bucket{route="a",le="1"} 2',
      't_seconds_bucket{route="a",le="+Inf"} 3',
      't_seconds_sum{route="a"} 5.55',
      't_seconds_count{route="a"} 3',
      "",
    ].join("\n"),
  );
});
