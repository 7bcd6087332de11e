import { expect, test } from "bun:test";
import { Endpoint } from "./endpoint.ts";
import { leastRequests, roundRobin } from "./policies.ts";

const pool = () => ["a", "b", "c"].map((u) => new Endpoint("r", u));

test("roundRobin cycles and skips ejected and tried endpoints", () => {
  const p = pool();
  const rr = roundRobin();
  expect([0, 1, 2, 3].map(() => rr.select(p, 0)!.url)).toEqual(["a", "b", "c", "a"]);
  p[1]!.markDown(0, 1000, "refused");
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
  e.markDown(0, 1000, "refused");
  expect(e.available(500)).toBe(false);
  e.markUp();
  expect(e.available(500)).toBe(true);
});
