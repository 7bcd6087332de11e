import { expect, test } from "bun:test";
import { Endpoint } from "./endpoint.ts";
import { leastRequests, roundRobin } from "./policies.ts";
import { Pool } from "./pool.ts";
import { targetOf, type Target } from "./target.ts";

/** as wraps endpoints into the targets a generation would build (weight 1, no TLS). */
const as = (eps: Endpoint[], weights: number[] = []): Target[] => eps.map((e, i) => targetOf(e, undefined, undefined, weights[i]));

const pool = () => ["a", "b", "c"].map((u) => new Endpoint("r", u));

test("roundRobin cycles and skips ejected and tried endpoints", () => {
  const p = pool();
  const rr = roundRobin();
  expect([0, 1, 2, 3].map(() => rr.select(as(p), 0)!.endpoint.url)).toEqual(["a", "b", "c", "a"]);
  p[1]!.markDown(0, 1000, 60_000, "refused");
  expect([0, 1, 2].map(() => rr.select(as(p), 10)!.endpoint.url)).toEqual(["c", "a", "c"]);
  expect(rr.select(as(p), 2000, [p[0]!, p[2]!])!.endpoint.url).toBe("b");
  expect(rr.select(as(p), 10, [p[0]!, p[2]!])).toBeUndefined();
});

test("leastRequests prefers the least loaded and spreads ties", () => {
  const p = pool();
  const lr = leastRequests();
  p[0]!.inflight = 5;
  p[1]!.inflight = 1;
  p[2]!.inflight = 3;
  expect(lr.select(as(p), 0)!.endpoint.url).toBe("b");
  p[1]!.inflight = 3;
  p[0]!.inflight = 3;
  const picks = new Set([0, 1, 2].map(() => lr.select(as(p), 0)!.endpoint.url));
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

test('every endpoint unhealthy: "try" picks them anyway (ejected ones too, when none has cooled down), "fail" picks none', () => {
  const eps = pool();
  for (const e of eps) e.healthy = false;
  expect(new Pool(as(eps), "round_robin", "try").select(0)).toBeDefined();
  expect(new Pool(as(eps), "round_robin", "fail").select(0)).toBeUndefined();
  eps[0]!.markDown(0, 1000, 1000, "refused");
  eps[1]!.markDown(0, 1000, 1000, "refused");
  // One has cooled down (never ejected): it is the one tried.
  expect(new Pool(as(eps), "round_robin", "try").select(10)!.endpoint.url).toBe("c");
  eps[2]!.markDown(0, 1000, 1000, "refused");
  expect(new Pool(as(eps), "round_robin", "try").select(10)).toBeDefined();
  expect(new Pool(as(eps), "round_robin", "fail").select(10)).toBeUndefined();
  eps[2]!.healthy = true;
  eps[2]!.markUp();
  expect(new Pool(as(eps), "round_robin", "fail").select(10)!.endpoint.url).toBe("c");
});

test("the retry budget allows a burst, then a fifth of the requests", () => {
  const p = new Pool(as(pool()), "round_robin");
  let n = 0;
  while (p.allowRetry()) n++;
  expect(n).toBe(10);
  for (let i = 0; i < 10; i++) p.select(0);
  expect(p.allowRetry()).toBe(true);
  expect(p.allowRetry()).toBe(false);
});

test("consistent hashing: a key sticks to one endpoint; when that endpoint leaves, only its keys move", () => {
  const eps = ["http://10.0.0.1", "http://10.0.0.2", "http://10.0.0.3", "http://10.0.0.4"].map((u) => new Endpoint("r", u));
  const p = new Pool(as(eps), "hash");
  const keys = Array.from({ length: 400 }, (_, i) => `user-${i}`);
  const first = new Map(keys.map((k) => [k, p.select(0, undefined, k)!.endpoint.url]));
  for (const k of keys) expect(p.select(0, undefined, k)!.endpoint.url).toBe(first.get(k)!);
  const counts = new Map<string, number>();
  for (const u of first.values()) counts.set(u, (counts.get(u) ?? 0) + 1);
  for (const n of counts.values()) expect(n).toBeGreaterThan(50); // spread over all four
  eps[1]!.markDown(0, 1000, 1000, "refused");
  for (const k of keys) {
    const now = p.select(10, undefined, k)!.endpoint.url;
    if (first.get(k) !== "http://10.0.0.2") expect(now).toBe(first.get(k)!);
    else expect(now).not.toBe("http://10.0.0.2");
  }
});

test("weights (SRV): round-robin and hashing give each endpoint its share", () => {
  const eps = ["a", "b"].map((u) => new Endpoint("r", u));
  const weighted = as(eps, [3, 1]);
  const rr = new Pool(weighted, "round_robin");
  const picks = Array.from({ length: 8 }, () => rr.select(0)!.endpoint.url);
  expect(picks.filter((u) => u === "a").length).toBe(6);
  expect(picks.slice(0, 4).filter((u) => u === "b").length).toBe(1); // interleaved, not a, a, a, then b
  const h = new Pool(weighted, "hash");
  const share = Array.from({ length: 4000 }, (_, i) => h.select(0, undefined, `k${i}`)!.endpoint.url).filter((u) => u === "a").length / 4000;
  expect(share).toBeGreaterThan(0.68);
  expect(share).toBeLessThan(0.82);
});

test("slow start: an endpoint that just came back gets a share growing over slow_start", () => {
  const eps = ["old", "new"].map((u) => new Endpoint("r", u));
  const now = performance.now();
  eps[0]!.upSince = now - 60_000;
  eps[1]!.upSince = now;
  const p = new Pool(as(eps), "round_robin", "try", undefined, 10_000);
  const share = (t: number) => Array.from({ length: 2000 }, () => p.select(t)!.endpoint.url).filter((u) => u === "new").length / 2000;
  expect(share(now + 100)).toBeLessThan(0.05);
  const half = share(now + 5000);
  expect(half).toBeGreaterThan(0.15);
  expect(half).toBeLessThan(0.4);
  expect(share(now + 20_000)).toBeGreaterThan(0.45);
});

test("slow start begins when an ejected endpoint's cool-down ends, and a response after it does not restart it", () => {
  const e = new Endpoint("r", "a");
  e.markDown(1000, 500, 5000, "refused");
  expect(e.upSince).toBe(e.downUntil);
  const since = e.upSince;
  e.markUp();
  expect(e.upSince).toBe(since);
  e.markUp();
  expect(e.upSince).toBe(since);
});

test("passive ejection never empties a pool: with every healthy endpoint ejected they are tried anyway, but not while one is available, nor twice", () => {
  const eps = pool();
  eps[0]!.markDown(0, 1000, 1000, "refused");
  eps[1]!.markDown(0, 1000, 1000, "refused");
  const p = new Pool(as(eps), "round_robin");
  // c is available: the ejected ones stay out.
  for (let i = 0; i < 4; i++) expect(p.select(10)!.endpoint.url).toBe("c");
  eps[2]!.markDown(0, 1000, 1000, "refused");
  const picked = new Set<string>();
  for (let i = 0; i < 6; i++) picked.add(p.select(10)!.endpoint.url);
  expect([...picked].sort()).toEqual(["a", "b", "c"]);
  // The endpoints a request already tried are not tried again.
  expect(p.select(10, eps)).toBeUndefined();
  // An endpoint the active checks call unhealthy is not among them while another is healthy.
  eps[0]!.healthy = false;
  for (let i = 0; i < 6; i++) expect(p.select(10)!.endpoint.url).not.toBe("a");
});

test("an endpoint already ejected is not ejected again by failures during its cool-down (tried by the fallback): its cool-down neither grows nor restarts", () => {
  const [e] = pool();
  e!.markDown(0, 1000, 300_000, "refused");
  expect(e!.ejections).toBe(1);
  const until = e!.downUntil;
  for (let t = 10; t < 100; t += 10) e!.markDown(t, 1000, 300_000, "refused");
  for (let t = 100; t < 200; t += 10) e!.markFailed(t, 1, 1000, 300_000, "reset");
  expect([e!.ejections, e!.downUntil]).toEqual([1, until]);
  // Once the cool-down is over, the next failure ejects again, for twice as long.
  e!.markDown(until + 1, 1000, 300_000, "refused");
  expect([e!.ejections, e!.downUntil]).toEqual([2, until + 1 + 2000]);
});
