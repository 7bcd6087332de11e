import { expect, test } from "bun:test";
import { Endpoint } from "./endpoint.ts";
import { leastRequests, roundRobin } from "./policies.ts";
import { Pool } from "./pool.ts";

const pool = () => ["a", "b", "c"].map((u) => new Endpoint("r", u));

test("roundRobin cycles and skips ejected and tried endpoints", () => {
  const p = pool();
  const rr = roundRobin();
  expect([0, 1, 2, 3].map(() => rr.select(p, 0)!.url)).toEqual(["a", "b", "c", "a"]);
  p[1]!.markDown(0, 1000, 60_000, "refused");
  expect([0, 1, 2].map(() => rr.select(p, 10)!.url)).toEqual(["c", "a", "c"]);
  expect(rr.select(p, 2000, [p[0]!, p[2]!])!.url).toBe("b");
  expect(rr.select(p, 10, [p[0]!, p[2]!])).toBeUndefined();
});

test("leastRequests prefers the least loaded and spreads ties", () => {
  const p = pool();
  const lr = leastRequests();
  p[0]!.inflight = 5;
  p[1]!.inflight = 1;
  p[2]!.inflight = 3;
  expect(lr.select(p, 0)!.url).toBe("b");
  p[1]!.inflight = 3;
  p[0]!.inflight = 3;
  const picks = new Set([0, 1, 2].map(() => lr.select(p, 0)!.url));
  expect(picks.size).toBe(3);
});

test("an endpoint that answers again is cleared of its cool-down", () => {
  const e = new Endpoint("r", "a");
  e.markDown(0, 1000, 60_000, "refused");
  expect(e.available(500)).toBe(false);
  e.markUp();
  expect(e.available(500)).toBe(true);
});

test("the cool-down doubles with each ejection in a row, up to the maximum; max_fails errors in a row eject", () => {
  const e = new Endpoint("r", "a");
  e.markDown(0, 1000, 5000, "refused");
  expect(e.downUntil).toBe(1000);
  e.markDown(1000, 1000, 5000, "refused");
  expect(e.downUntil).toBe(3000);
  e.markDown(3000, 1000, 5000, "refused");
  expect(e.downUntil).toBe(7000);
  e.markDown(7000, 1000, 5000, "refused");
  expect(e.downUntil).toBe(12_000);
  e.markUp();
  const f = new Endpoint("r", "b");
  f.markFailed(0, 3, 1000, 5000, "ECONNRESET");
  f.markFailed(0, 3, 1000, 5000, "ECONNRESET");
  expect(f.available(1)).toBe(true);
  f.markFailed(0, 3, 1000, 5000, "ECONNRESET");
  expect(f.available(1)).toBe(false);
});

test("every endpoint unhealthy: \"try\" picks them anyway, \"fail\" picks none; a passive cool-down still counts", () => {
  const eps = pool();
  for (const e of eps) e.healthy = false;
  expect(new Pool(eps, "round_robin", "try").select(0)).toBeDefined();
  expect(new Pool(eps, "round_robin", "fail").select(0)).toBeUndefined();
  for (const e of eps) e.markDown(0, 1000, 1000, "refused");
  expect(new Pool(eps, "round_robin", "try").select(10)).toBeUndefined();
  eps[2]!.healthy = true;
  eps[2]!.markUp();
  expect(new Pool(eps, "round_robin", "fail").select(10)!.url).toBe("c");
});

test("the retry budget allows a burst, then a fifth of the requests", () => {
  const p = new Pool(pool(), "round_robin");
  let n = 0;
  while (p.allowRetry()) n++;
  expect(n).toBe(10);
  for (let i = 0; i < 10; i++) p.select(0);
  expect(p.allowRetry()).toBe(true);
  expect(p.allowRetry()).toBe(false);
});
